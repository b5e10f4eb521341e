package main

import "time"

// The chatroom fan-out figure (issue #7, #16): one room, members spread over
// three gateway processes on one bus (a process here may open at most
// 20,000 files) with the bus, services and store in a fourth, load in four
// worker processes, messages at a fixed rate. The room grows in stages,
// each a point of the sweep; every member counts what it receives.
func init() {
	register(benchmark{
		name: "room-fanout",
		summary: "one room on three gateway processes (bus, services and store in a fourth), 100 msg/s into it, " +
			"a sweep of room sizes (2,000 to 45,000 members; offered deliveries/s = members × 100): deliveries/s and latency of every " +
			"delivery counted by the members themselves, server CPU µs per delivery and per frame (/proc of the four server processes, " +
			"pinned to CPU 0 while measured, the load to CPU 1), the largest room whose p99 is within 200 ms, and the curve; " +
			"baseline in the same run: a plain TCP fan-out of the same frames to the same number of sockets from three processes " +
			"(goal ≤ 0.5 µs per delivery, ≥ 2 M deliveries/s per gateway core at p99 ≤ 200 ms)",
		limit: 25 * time.Minute, // the crowd alone takes 1.5 to 5.5 minutes to enter on a busy machine
		argv: []string{"sh", "-c", `set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
go build -o "$d/longlink" ./cmd/longlink
go build -o "$d/loadgen" ./tools/loadgen
"$d/loadgen" room -bin "$d/longlink" -members 45000 -stages "${ROOM_STAGES-2000,4000,8000,16000,30000,45000}" \
  -gateways 3 -workers 4 -rate 100 -duration 8s -warmup 3s -baseline \
  -server-cpu "${ROOM_SERVER_CPU-0}" -client-cpu "${ROOM_CLIENT_CPU-1}"`},
		plot: &plotSpec{title: "Chatroom fan-out: latency against offered deliveries (servers on one core)",
			x: "offered deliveries/s (members × 100 msg/s)", y: "message → member latency (ms)", goalY: 200, goalX: 2000000,
			legend: "dotted: goal (p99 ≤ 200 ms at 2 M deliveries/s per gateway core)"},
	})
}
