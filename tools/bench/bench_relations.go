package main

import "time"

// Relationships (REL): the cost of the blacklist check inside the store's
// group commit. Same-run baseline: the same appends with an empty blacklist.
func init() {
	register(benchmark{
		name: "store-append-blacklist",
		summary: "durable 1:1 appends/s into SQLite with the blacklist checked both ways inside the commit: " +
			"empty blacklist vs. 1,000 users blocking 50 accounts each (none of them their correspondents)",
		limit: 5 * time.Minute,
		argv:  []string{"go", "test", "-count=1", "-run", "^$", "-bench", "^BenchmarkAppendP2PBlacklist$", "-benchtime", "20000x", "./core/store/"},
		env:   []string{"LONGLINK_BENCH_RESULT=1"},
	})
}
