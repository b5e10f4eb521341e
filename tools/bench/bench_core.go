package main

import "time"

// The IM core's Link figures. Both build `longlink` and the load generator,
// start `longlink core` as its own process pinned to CPU 0 and drive it from
// load generator processes pinned to CPU 1 (taskset).
func init() {
	register(benchmark{
		name: "link-idle-memory",
		summary: "server RSS per idle authenticated Link connection at 5,000, 10,000 and 19,000 connections " +
			"(4 load generator processes, sources 127.0.0.2-5; read after the connections sat idle, then a GC), " +
			"then per idle logged-in WebLink session (Socket.IO over WebSocket) on a server of its own; " +
			"baselines in the same run: bare epoll and goroutine-per-connection Go echo servers holding the same connections " +
			"(goal ≤ 4 KiB/conn at 19,000)",
		limit: 20 * time.Minute,
		argv: []string{"sh", "-c", `set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
go build -o "$d/longlink" ./cmd/longlink
go build -o "$d/loadgen" ./tools/loadgen
"$d/loadgen" idle -bin "$d/longlink" -levels "${IDLE_LEVELS-5000,10000,19000}" -workers 4 -server-cpu 0 -client-cpu 1 -baseline`},
	})
	register(benchmark{
		name: "reconnect-storm",
		summary: "19,000 Go SDK clients (4 worker processes on CPU 1) logged in to one core (CPU 0); the core is killed with SIGKILL " +
			"and started again on its data: seconds until 99% and all are logged in again, logins/s on the core, server CPU per login, " +
			"logins refused or failed; baseline in the same run: CPU per Noise handshake and handshakes/s of one core " +
			"(goal 99% within 10 s, nothing shed that the server could serve)",
		limit: 20 * time.Minute,
		argv: []string{"sh", "-c", `set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
go build -o "$d/longlink" ./cmd/longlink
go build -o "$d/loadgen" ./tools/loadgen
"$d/loadgen" storm -bin "$d/longlink" -clients "${STORM_CLIENTS-19000}" -workers 4 -server-cpu 0 -client-cpu 1 -limit 300s`},
	})
	register(benchmark{
		name: "link-messages",
		summary: "durable 1:1 messages end to end through the Go SDK, a sweep of offered loads (100 conversations, SQLite synchronous=full, " +
			"server on CPU 0, SDK load on CPU 1): the highest load whose p99 send→delivery latency is within 20 ms with all of it delivered, " +
			"and the curve; baseline in the same run: the same sweep over bare TCP + NATS request/reply + SQLite group commit " +
			"(goal ≥ 10,000 msg/s at p99 ≤ 20 ms)",
		limit: 30 * time.Minute,
		argv: []string{"sh", "-c", `set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
go build -o "$d/longlink" ./cmd/longlink
go build -o "$d/loadgen" ./tools/loadgen
pin=""
if command -v taskset >/dev/null; then pin="taskset -c 1"; fi
$pin "$d/loadgen" messages -bin "$d/longlink" -rate "${LINK_MESSAGES_RATES-1000,2000,4000,6000,8000,10000,12000,14000}" \
  -pairs 100 -duration 10s -warmup 3s -server-cpu 0 -goal-p99 20ms -baseline \
  -metrics longlink_store_batch_seconds_sum,longlink_store_batch_seconds_count,longlink_store_batch_size_sum`},
		plot: &plotSpec{title: "Durable 1:1 messages: latency against offered load (server on one core)",
			x: "offered load (msg/s)", y: "send → delivery latency (ms)", goalY: 20, goalX: 10000,
			legend: "dotted: goal (p99 ≤ 20 ms at 10,000 msg/s)"},
	})
}
