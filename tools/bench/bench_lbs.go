package main

import "time"

// LBS figures. The DNS and HTTP ones run `lbs/internal/lbsbench`, which
// starts a single-member LBS as a child process pinned to CPU 0 (GOMAXPROCS=1)
// and the load pinned to CPU 1 with taskset. DNS: a Go UDP generator whose
// queries carry client subnets (ECS) drawn from a synthetic geo database of
// many networks, and dnsperf (an independent client, one ECS per run);
// baselines: bare Go UDP echo responders under both. HTTP: its own HTTP/1.1
// keep-alive generator, baseline bare net/http.
func init() {
	register(benchmark{
		name:    "lbs-dns",
		summary: "DNS answers/s per core with geographic selection: queries with ECS from 100,000 /24s of a 16,384-network geo database (Go generator; geo cache hit ratio), and with dnsperf's one ECS; baselines: bare Go UDP echo under both",
		limit:   5 * time.Minute,
		argv:    []string{"go", "run", "./lbs/internal/lbsbench", "dns", "-seconds", "15"},
	})
	register(benchmark{
		name:    "lbs-http",
		summary: "SDK HTTP answers/s (/v1/lbs, varied client geography) with the server on one core and the load generator on the other; p50/p99",
		limit:   3 * time.Minute,
		argv:    []string{"go", "run", "./lbs/internal/lbsbench", "http", "-seconds", "15"},
	})
	register(benchmark{
		name:    "lbs-selection",
		summary: "one selection (policy chain with a cached geo lookup) p50/p99 from go test -bench",
		limit:   3 * time.Minute,
		argv:    []string{"go", "test", "-run", "^$", "-bench", "^BenchmarkSelection$", "-benchtime", "300000x", "./lbs/"},
	})
	register(benchmark{
		name:    "reach-sim",
		summary: "internet scale, simulated (lbs/sim): the real selection engine and RUM table, relay path choice and SDK racing over 100 edges, 10 relays, 1M users; share within 1.2x of the best RTT per policy (geo, rum, both)",
		limit:   30 * time.Minute,
		argv:    []string{"go", "run", "./tools/reachsim", "-users", "1000000", "-limit", "28m"},
	})
	register(benchmark{
		name:    "lbs-leader-loss",
		summary: "3-member LBS cluster: leader killed under HTTP+DNS query load; failed answers and time until writes succeed",
		limit:   3 * time.Minute,
		argv:    []string{"go", "test", "-count=1", "-run", "^TestLeaderLoss$", "-v", "./lbs/"},
		env:     []string{"LONGLINK_INTEGRATION=1"},
	})
}
