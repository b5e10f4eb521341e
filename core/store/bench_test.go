package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
)

// BenchmarkAppendP2P measures durable 1:1 appends from 128 concurrent
// senders: group-committed on SQLite and PostgreSQL, and on SQLite with
// one message per transaction (MaxBatch 1) as the baseline that shows what
// group commit buys. With LONGLINK_BENCH_RESULT set it prints RESULT lines
// for tools/bench.
func BenchmarkAppendP2P(b *testing.B) {
	for _, tc := range []struct {
		name, driver string
		maxBatch     int
	}{
		{"sqlite", store.DriverSQLite, 0},
		{"sqlite-unbatched", store.DriverSQLite, 1},
		{"postgres", store.DriverPostgres, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := storetest.Config(b, tc.driver)
			// The commit rate itself: 128 closed-loop senders keep the
			// queue full, which early shedding would refuse.
			cfg.MaxQueueDelay = -1
			if tc.maxBatch > 0 {
				cfg.MaxBatch = tc.maxBatch
			}
			st, err := store.Open(context.Background(), cfg, store.Deps{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			ctx := context.Background()
			const users = 1000
			for i := range users {
				if err := st.CreateUser(ctx, store.User{AppKey: app, Account: fmt.Sprintf("u%d", i)}); err != nil {
					b.Fatal(err)
				}
			}
			var n atomic.Int64
			b.SetParallelism(64)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					from, to := fmt.Sprintf("u%d", i%users), fmt.Sprintf("u%d", (i*7+1)%users)
					if _, err := st.AppendMessage(ctx, p2p(from, to, fmt.Sprint(i))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			rate := float64(b.N) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "msgs/s")
			if b.N >= 1000 && storetest.BenchResults() {
				fmt.Printf("\nRESULT store_append_%s_msgs_per_s %.0f msgs/s\n", underscore(tc.name), rate)
			}
		})
	}
}

func underscore(s string) string {
	out := []byte(s)
	for i, c := range out {
		if c == '-' {
			out[i] = '_'
		}
	}
	return string(out)
}
