// Command reachsim replays Longlink's entry point choice at internet scale
// (lbs/sim): the LBS's real selection engine and RUM table, the edges'
// relay path choice and the SDK's racing over a synthetic matrix of 100
// edges, 10 relays and 1M users, and prints per policy (geo only, RUM
// only, both) the share of users within 1.2× of their best possible RTT as
// RESULT lines.
//
//	go run ./tools/reachsim [-users 1000000] [-edges 100] [-relays 10] [-seed 1]
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/longlink/longlink/lbs/sim"
)

func main() {
	var o sim.Options
	flag.IntVar(&o.Users, "users", 1_000_000, "users")
	flag.IntVar(&o.Edges, "edges", 100, "edges")
	flag.IntVar(&o.Relays, "relays", 10, "relays")
	flag.IntVar(&o.PerPrefix, "per-prefix", 50, "users per /24")
	flag.Float64Var(&o.BadPeering, "bad-peering", 0.2, "share of (ISP, edge) pairs with a poor path")
	flag.Float64Var(&o.Mislocated, "mislocated", 0.05, "share of prefixes the geo database places wrongly")
	flag.Float64Var(&o.ReportShare, "report-share", 1, "share of connects the SDK reports")
	flag.DurationVar(&o.PassDuration, "pass", 20*time.Minute, "virtual time over which every user connects once")
	flag.Uint64Var(&o.Seed, "seed", 1, "world seed")
	limit := flag.Duration("limit", 10*time.Minute, "give up after this long")
	flag.Parse()
	go func() {
		time.Sleep(*limit)
		fmt.Fprintln(os.Stderr, "reachsim: stopped after", *limit)
		os.Exit(1)
	}()
	start := time.Now()
	res, err := sim.Run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reachsim:", err)
		os.Exit(1)
	}
	o = res.Options
	fmt.Printf("# world: %d users in %d /24 prefixes, %d edges, %d relays, %d ISPs; bad peering %.0f%% of (ISP, edge) pairs, %.0f%% of prefixes mislocated; seed %d\n",
		o.Users, res.Prefixes, o.Edges, o.Relays, o.ISPs, 100*o.BadPeering, 100*o.Mislocated, o.Seed)
	fmt.Printf("# users whose best edge is the geo-nearest: %.1f%%\n", 100*res.BestNearest)
	fmt.Printf("# %-5s %14s %14s %22s %18s %9s %9s %7s\n", "policy", "within pass 1", "within pass 2", "ratio p50/p90/p99", "connect p50/p99", "steered", "prefixes", "time")
	for _, p := range res.Policies {
		fmt.Printf("# %-5s %13.1f%% %13.1f%% %8.2f/%5.2f/%5.2f %9.0f/%5.0f ms %8.1f%% %9d %6.1fs\n", p.Policy, 100*p.Within[0], 100*p.Within[1],
			p.RatioP50, p.RatioP90, p.RatioP99, p.ConnectP50, p.ConnectP99, 100*p.Steered, p.Prefixes, p.Elapsed.Seconds())
	}
	for _, p := range res.Policies {
		fmt.Printf("RESULT reachsim_%s_within_1_2x %.1f %%\n", p.Policy, 100*p.Within[1])
	}
	for _, p := range res.Policies {
		fmt.Printf("RESULT reachsim_%s_within_1_2x_first_pass %.1f %%\n", p.Policy, 100*p.Within[0])
		fmt.Printf("RESULT reachsim_%s_ratio_p90 %.2f x\n", p.Policy, p.RatioP90)
		fmt.Printf("RESULT reachsim_%s_connect_p99 %.0f ms\n", p.Policy, p.ConnectP99)
	}
	fmt.Printf("RESULT reachsim_best_is_nearest %.1f %%\n", 100*res.BestNearest)
	fmt.Printf("RESULT reachsim_seconds %.1f s\n", time.Since(start).Seconds())
}
