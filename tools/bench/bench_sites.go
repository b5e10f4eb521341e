package main

import "time"

// Two-site figures (issue 15): core/clustertest.StartSites — sites a and b
// (and a JetStream witness w) in network namespaces joined by the WAN
// emulator at 1 ms each way, a NATS super-cluster, PostgreSQL primary in a
// with a synchronous standby in b. The sites' processes run on CPU 0; the
// benchmark's process (and site-failover's loadgen client workers) on CPU 1.
func init() {
	env := []string{"LONGLINK_BENCH_RESULT=1", "LONGLINK_INTEGRATION=1"}
	pinned := func(test string, timeout string) []string {
		return []string{"sh", "-c", `pin=""
if command -v taskset >/dev/null; then pin="taskset -c ${LONGLINK_BENCH_CLIENT_CPUS-1}"; fi
exec $pin go test -count=1 -timeout ` + timeout + ` -run '^$' -bench '^` + test + `$' -benchtime 1x -v ./core/e2e/`}
	}
	register(benchmark{
		name: "site-failover",
		summary: "LONGLINK_BENCH_SITE_CLIENTS (5000) SDK clients in 4 loadgen processes, half at home in each site, and a durable 1:1 load; every process of site a " +
			"SIGKILLed at once, b's standby promoted at once: time to the promotion, to the first send served by b, to 99% and all of a's clients logged in again, acked lost, and the timeline",
		limit: 20 * time.Minute,
		argv:  pinned("BenchmarkSiteFailover", "20m"),
		env:   env,
	})
	register(benchmark{
		name: "site-sync-cost",
		summary: "durable 1:1 at 200 msg/s from site a: send → ack and send → delivery p50/p99 with b's standby synchronous and asynchronous (1 ms each way), " +
			"switched every 8 s window in one deployment, 8 rounds in alternating order; the added ack p50 with its 95% interval",
		limit: 15 * time.Minute,
		argv:  pinned("BenchmarkSiteSyncCost", "15m"),
		env:   env,
	})
}
