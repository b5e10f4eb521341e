package main

import "time"

func init() {
	register(benchmark{
		name: "relay",
		summary: "tunnel overhead on loopback: added latency per hop p50/p99 vs direct TCP, one stream through one hop " +
			"(QUIC, KCP backbone profile) vs raw TCP, CPU seconds per GB",
		limit: 5 * time.Minute,
		argv:  []string{"go", "run", "./relay/internal/relaybench"},
	})
}
