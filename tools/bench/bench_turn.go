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
		name:    "turn-allocations",
		summary: "TURN allocations held at once (up to the 20,000 open-files limit) and memory per allocation, longlink vs coturn",
		limit:   8 * time.Minute,
		argv:    []string{"go", "run", "./edge/turn/internal/turnbench", "allocations"},
	})
}
