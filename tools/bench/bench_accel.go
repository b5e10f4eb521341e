package main

import "time"

// Acceleration figures, measured inside the WAN emulator's standard world
// (tools/wanemu/worlds/standard.yaml): direct user -> core against user ->
// edge -> core through a tunnel, in the same run. They need root (network
// namespaces and TUN devices).
func init() {
	for _, tunnel := range []string{"quic", "kcp"} {
		register(benchmark{
			name: "accel-" + tunnel,
			summary: "Longlink (longlink dev + relay -egress + edge, core/sdk clients) through the edge over " + tunnel +
				" vs direct to the core in the emulated standard world: connect+login p50/p99 (the edge answers logins with signed tokens), connect+login+first message acked p50/p99, message RTT p50/p99; " +
				"then through the edge over TCP, over Link over QUIC with copies of small packets and without (quic_plain), taking turns (accel_access_*: message p99 over the propagation floor)",
			// 90 s of messages give each path ~3,000 samples on a quiet
			// machine (1,100–1,600 under load): the p99 then rests on 10–30 of
			// them (the direct path's moved by ±25 % with 30 s). The three
			// access variants take turns, 270 s of messages in all.
			limit: 22 * time.Minute,
			argv:  []string{"go", "run", "./tools/wanemu/accel", "-impl", "longlink", "-tunnel", tunnel, "-msg-for", "90s", "-timeout", "20m"},
		})
		register(benchmark{
			name: "accel-standin-" + tunnel,
			summary: "stand-in edge+" + tunnel + " tunnel vs direct in the emulated standard world: " +
				"connect+login p50/p99, message RTT p50/p99, bulk (standin_* figures)",
			limit: 10 * time.Minute,
			argv:  []string{"go", "run", "./tools/wanemu/accel", "-tunnel", tunnel, "-timeout", "8m"},
		})
	}
	register(benchmark{
		name: "accel-fec",
		summary: "KCP tunnels with FEC (10+3 shards) and without, side by side on an emulated backbone with 170 ms RTT and 3% loss each way " +
			"(real edge and egress, stand-in client and server): goodput, message RTT p50/p99, backbone bytes per payload byte and per message",
		limit: 10 * time.Minute,
		argv:  []string{"go", "run", "./tools/wanemu/accel", "-mode", "fec", "-msg-for", "30s", "-bulk-for", "10s", "-rounds", "3", "-timeout", "9m"},
	})
	register(benchmark{
		name: "accel-disjoint",
		summary: "one lossy relay (bursty loss on relay-a's backbone, relay-b clean and 24 ms longer; real edges, relays and egress, stand-in client and server): " +
			"message RTT p50/p99 through an edge with one copy per stream, two copies on two lanes of relay-a, and a disjoint pair (small records through relay-b too), same run; edge-to-relay bytes per message",
		limit: 14 * time.Minute,
		argv:  []string{"go", "run", "./tools/wanemu/accel", "-mode", "disjoint", "-msg-for", "30s", "-rounds", "3", "-timeout", "13m"},
	})
	register(benchmark{
		name: "accel-access-tail",
		summary: "where the last 1 % of messages through the edge is late (issue 17 part 7), world standard-disjoint.yaml: TCP, QUIC with and without copies, and both through an edge with disjoint copies via relay_b, in turns; " +
			"each message cut at the service's stamp, and a core-loopback probe sending at the same time (late messages shared with the core's late moments)",
		limit: 16 * time.Minute,
		argv: []string{"go", "run", "./tools/wanemu/accel", "-impl", "longlink", "-tunnel", "quic", "-disjoint", "-core-probe",
			"-local=false", "-bulk-for", "0", "-msg-for", "60s", "-connects", "60", "-timeout", "15m"},
	})
	register(benchmark{
		name: "rum-steering",
		summary: "steering by what users measure in the emulator (worlds/rum.yaml): the geo-nearer edge on a 200 ms, 2%-loss path, a farther one on 30 ms; " +
			"core/sdk clients' connect+login p50/p99 before and after a few clients' reports (real LBS, edges, core)",
		limit: 10 * time.Minute,
		argv:  []string{"go", "run", "./tools/wanemu/accel", "-mode", "rum", "-connects", "40", "-timeout", "9m"},
	})
	register(benchmark{
		name:    "wanemu-ceiling",
		summary: "WAN emulator's own limit: one TCP stream over a perfect emulated link vs namespace loopback",
		limit:   3 * time.Minute,
		argv:    []string{"go", "run", "./tools/wanemu/accel", "-mode", "ceiling", "-timeout", "2m"},
	})
}
