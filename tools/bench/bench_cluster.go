package main

import "time"

// Cluster figures (issue 14): real processes from core/clustertest — 3
// nats-server with JetStream clustered, PostgreSQL, gateway and service
// processes of the longlink binary — and SDK clients in the test process.
func init() {
	env := []string{"LONGLINK_BENCH_RESULT=1", "LONGLINK_INTEGRATION=1"}
	register(benchmark{
		name: "cluster-send",
		summary: "durable 1:1 msg/s at p99 ≤ 20 ms (send → delivery) through a gateway process onto 1, 2 and 3 service processes " +
			"on PostgreSQL, and 1 on SQLite as the baseline, offered load swept (also at p99 ≤ 200 ms and ≤ 1 s); CPU µs per message by process kind at the highest sustained load; curve in docs/bench/cluster-send.svg",
		limit: 40 * time.Minute,
		argv:  []string{"go", "test", "-count=1", "-timeout", "40m", "-run", "^$", "-bench", "^BenchmarkClusterSend$", "-benchtime", "1x", "-v", "./core/e2e/"},
		env:   env,
	})
	register(benchmark{
		name: "cluster-failover",
		summary: "a steady durable 1:1 load (500 msg/s) on 2 gateways, 3 service processes, 3 NATS servers, PostgreSQL: per fault " +
			"(SIGKILL/SIGSTOP 10 s a service node, SIGKILL a NATS server, SIGKILL a gateway) the p99 added latency of the sends in flight, " +
			"the longest time without an ack, the time until throughput is back to 95%, acked messages lost",
		limit: 20 * time.Minute,
		argv:  []string{"go", "test", "-count=1", "-timeout", "20m", "-run", "^$", "-bench", "^BenchmarkClusterFailover$", "-benchtime", "1x", "-v", "./core/e2e/"},
		env:   env,
	})
}
