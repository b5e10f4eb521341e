package main

import "time"

// Offline push figures (PUSH): the whole offline path in one process —
// task on JetStream, expansion against SQLite, per-device send, signed
// POST to a local push webhook — for a burst of 5,000 offline recipients;
// and the presence check made for every recipient of every message.
func init() {
	register(benchmark{
		name:    "push-offline",
		summary: "offline notifications/s and p50/p99 from MessageStored to a local push webhook (JetStream file storage, SQLite), a burst of 5,000",
		limit:   3 * time.Minute,
		argv:    []string{"go", "test", "-count=1", "-run", "^$", "-bench", "^(BenchmarkOfflinePush|BenchmarkPresenceOnline)$", "-benchtime", "5000x", "./core/push/"},
		env:     []string{"LONGLINK_BENCH_RESULT=1"},
	})
}
