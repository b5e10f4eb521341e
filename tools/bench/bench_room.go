package main

import "time"

// The chatroom fan-out figure (issue #7): one room, members spread over
// three gateway processes on one bus (a process here may open at most
// 20,000 files) with the bus, services and store in a fourth, load in four
// worker processes, messages at a fixed rate.
func init() {
	register(benchmark{
		name: "room-fanout",
		summary: "45,000 members in one room on three gateway processes (bus, services and store in a fourth), " +
			"4 load processes, 100 msg/s into the room: deliveries/s, server CPU µs per delivery (/proc of the four server processes), " +
			"p99 delivery latency (goal ≤ 0.5 µs, p99 ≤ 200 ms)",
		limit: 10 * time.Minute, // the crowd alone takes 1.5 to 5.5 minutes to enter on a busy machine
		argv: []string{"sh", "-c", `set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
go build -o "$d/longlink" ./cmd/longlink
go build -o "$d/loadgen" ./tools/loadgen
"$d/loadgen" room -bin "$d/longlink" -members 45000 -gateways 3 -workers 4 -rate 100 -duration 12s -warmup 4s \
  -server-cpu "${ROOM_SERVER_CPU-0}" -client-cpu "${ROOM_CLIENT_CPU-1}"`},
	})
}
