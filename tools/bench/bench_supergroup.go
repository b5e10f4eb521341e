package main

import "time"

// Super-groups: read diffusion, one publish per group subject, gateway
// fan-out. Builds `longlink` and the load generator, starts `longlink core`
// pinned to CPU 0 and holds the online members in two worker processes
// pinned to CPU 1.
func init() {
	register(benchmark{
		name: "supergroup-send",
		summary: "time from a send to the LAST online member's push in a 100,000-member super-group with 5,000 online " +
			"(2 worker processes), p50/p99 over 100 sends at 2/s; baseline: the same send in an ordinary 500-member " +
			"group, all online, 50 sends at 10/s (goal p99 < 1 s)",
		limit: 3 * time.Minute,
		argv: []string{"sh", "-c", `set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
go build -o "$d/longlink" ./cmd/longlink
go build -o "$d/loadgen" ./tools/loadgen
"$d/loadgen" supergroup -bin "$d/longlink" -members 100000 -online 5000 -workers 2 \
  -sends 100 -interval 500ms -base-sends 50 -base-interval 100ms -server-cpu 0 -client-cpu 1`},
	})
}
