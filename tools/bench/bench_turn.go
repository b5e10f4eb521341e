package main

import "time"

// TURN relay figures, side by side with coturn's turnserver under the same
// turnutils_uclient load (edge/turn/internal/turnbench).
func init() {
	register(benchmark{
		name:    "turn-relay",
		summary: "TURN relayed packets/s, Mbit/s, CPU and loss at 160 B and 1000 B, longlink vs coturn (servers on CPU 0, load on CPU 1)",
		limit:   6 * time.Minute,
		argv:    []string{"go", "run", "./edge/turn/internal/turnbench", "relay"},
	})
	register(benchmark{
		name: "turn-overload",
		summary: "TURN through saturation, longlink vs coturn at each offered rate in turn (servers on CPU 0; 50 allocations and the echo peer " +
			"in one batched load process on CPU 1): relayed pkt/s, relayed pkt per CPU-second, round-trip loss, Jain's fairness index over " +
			"the allocations, RTT p50/p99, and the curve (goal: at and beyond saturation ≥ coturn per CPU-second, loss no worse)",
		limit: 6 * time.Minute,
		argv:  []string{"sh", "-c", `exec go run ./edge/turn/internal/turnbench overload -rates "${TURN_RATES-5000,15000,30000,60000,90000}"`},
		plot: &plotSpec{title: "TURN under overload: relayed packets against offered (server on one core, 160 B)",
			x: "offered relayed packets/s (both legs)", y: "packets", solid: "per CPU-second", dashed: "relayed/s"},
	})
	register(benchmark{
		name:    "turn-allocations",
		summary: "TURN allocations held at once (up to the 20,000 open-files limit) and memory per allocation, longlink vs coturn",
		limit:   8 * time.Minute,
		argv:    []string{"go", "run", "./edge/turn/internal/turnbench", "allocations"},
	})
}
