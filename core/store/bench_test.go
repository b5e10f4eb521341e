package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
)

// BenchmarkAppendP2P measures durable 1:1 appends from many concurrent
// senders (group commit): run with -cpu and -benchtime to taste.
func BenchmarkAppendP2P(b *testing.B) {
	for _, d := range storetest.Drivers {
		b.Run(d, func(b *testing.B) {
			st, _ := storetest.Open(b, d)
			ctx := context.Background()
			const users = 200
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
					from, to := fmt.Sprintf("u%d", i%users), fmt.Sprintf("u%d", (i+1)%users)
					if _, err := st.AppendMessage(ctx, p2p(from, to, fmt.Sprint(i))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
