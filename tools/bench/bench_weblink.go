package main

import "time"

func init() {
	register(benchmark{
		name: "weblink",
		summary: "WebLink vs the reference Node.js socket.io v4 server: memory per idle WebSocket " +
			"connection at 19,000 connections, echo p50/p99 and echoes/s with 100 busy connections",
		limit: 8 * time.Minute,
		argv:  []string{"go", "run", "./core/weblink/internal/wlbench"},
	})
}
