package main

import "time"

// The IM core's Link figures. Both build `longlink` and the load generator,
// start `longlink core` as its own process pinned to CPU 0 and drive it from
// load generator processes pinned to CPU 1 (taskset).
func init() {
	register(benchmark{
		name: "link-idle-memory",
		summary: "server RSS per idle authenticated Link connection at 5,000, 10,000 and 19,000 connections " +
			"(4 load generator processes, sources 127.0.0.2-5); the slope is the figure (goal ≤ 8 KiB/conn)",
		limit: 10 * time.Minute,
		argv: []string{"sh", "-c", `set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
go build -o "$d/longlink" ./cmd/longlink
go build -o "$d/loadgen" ./tools/loadgen
"$d/loadgen" idle -bin "$d/longlink" -levels 5000,10000,19000 -workers 4 -server-cpu 0 -client-cpu 1`},
	})
	register(benchmark{
		name: "link-messages",
		summary: "durable 1:1 messages end to end through the Go SDK at fixed offered loads of 1,000 and 10,000 msg/s " +
			"(100 conversations, SQLite synchronous=full): throughput and p50/p99 send→delivery latency " +
			"(goal ≥ 10,000 msg/s, p99 ≤ 20 ms)",
		limit: 5 * time.Minute,
		argv: []string{"sh", "-c", `set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
go build -o "$d/longlink" ./cmd/longlink
go build -o "$d/loadgen" ./tools/loadgen
pin=""
if command -v taskset >/dev/null; then pin="taskset -c 1"; fi
$pin "$d/loadgen" messages -bin "$d/longlink" -rate 1000,10000 -pairs 100 -duration 20s -warmup 5s -server-cpu 0 \
  -metrics longlink_store_batch_seconds_sum,longlink_store_batch_seconds_count,longlink_store_batch_size_sum`},
	})
}
