package main

import "time"

// IM core service figures (SERVICES): durable 1:1 sends through the bus
// request path into the app service and the store, in one process, with
// 256 concurrent senders; and the store's group-committed appends, with one
// message per transaction as the same-run baseline.
func init() {
	register(benchmark{
		name:    "services-send",
		summary: "durable 1:1 sends/s and p50/p99 through NATS request → service → SQLite group commit (fsync per commit), in-process",
		limit:   5 * time.Minute,
		argv:    []string{"go", "test", "-count=1", "-run", "^$", "-bench", "^BenchmarkSendP2P$/^sqlite$", "-benchtime", "60000x", "./core/service/"},
		env:     []string{"LONGLINK_BENCH_RESULT=1"},
	})
	register(benchmark{
		name:    "store-append",
		summary: "durable 1:1 appends/s into the store (SQLite and PostgreSQL group commit); baseline: SQLite with one message per transaction",
		limit:   5 * time.Minute,
		argv:    []string{"go", "test", "-count=1", "-run", "^$", "-bench", "^BenchmarkAppendP2P$", "-benchtime", "20000x", "./core/store/"},
		env:     []string{"LONGLINK_BENCH_RESULT=1"},
	})
}
