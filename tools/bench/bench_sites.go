package main

import "time"

// Two-site figures (issue 15): core/clustertest.StartSites — sites a and b
// (and a JetStream witness w) in network namespaces joined by the WAN
// emulator at 1 ms each way, a NATS super-cluster, PostgreSQL primary in a
// with a synchronous standby in b — and SDK clients in the test process.
func init() {
	env := []string{"LONGLINK_BENCH_RESULT=1", "LONGLINK_INTEGRATION=1"}
	register(benchmark{
		name: "site-failover",
		summary: "LONGLINK_BENCH_SITE_CLIENTS (5000) SDK clients, half at home in each site, and a durable 1:1 load; every process of site a " +
			"SIGKILLed at once, b's standby promoted at once: time to the first send served by b, to 99% and all of a's clients logged in again, acked lost",
		limit: 20 * time.Minute,
		argv:  []string{"go", "test", "-count=1", "-timeout", "20m", "-run", "^$", "-bench", "^BenchmarkSiteFailover$", "-benchtime", "1x", "-v", "./core/e2e/"},
		env:   env,
	})
	register(benchmark{
		name:    "site-sync-cost",
		summary: "durable 1:1 at 200 msg/s from site a: send → ack and send → delivery p50/p99 with b's standby asynchronous and synchronous (1 ms each way), same run",
		limit:   15 * time.Minute,
		argv:    []string{"go", "test", "-count=1", "-timeout", "15m", "-run", "^$", "-bench", "^BenchmarkSiteSyncCost$", "-benchtime", "1x", "-v", "./core/e2e/"},
		env:     env,
	})
}
