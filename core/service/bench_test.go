package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
	"github.com/longlink/longlink/pkg/config"
)

// BenchmarkSendP2P measures durable 1:1 sends through the bus request path
// (what a gateway does) into the service and the store, with 256
// concurrent senders over 1000 users, and reports throughput and latency
// percentiles. The store runs with its defaults (fsync on every commit)
// but no early shedding: a closed group of senders bounds its own queue.
func BenchmarkSendP2P(b *testing.B) {
	for _, d := range storetest.Drivers {
		b.Run(d, func(b *testing.B) { benchSend(b, d) })
	}
}

func benchSend(b *testing.B, driver string) {
	ctx := context.Background()
	bcfg := bus.Default()
	bcfg.Listen = ""
	bcfg.JetStream = false
	bs, err := bus.New(bcfg, bus.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	if err := bs.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer bs.Shutdown(ctx)
	// The capacity of the path: 256 closed-loop senders bound their own
	// queue, which early shedding (for open overload; link-messages) would
	// otherwise cut into with refusals and resends.
	scfg := storetest.Config(b, driver)
	scfg.MaxQueueDelay = -1
	st, err := store.Open(ctx, scfg, store.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	cfg := service.Default()
	cfg.Apps = []service.AppConfig{{AppKey: appKey, Secret: config.NewSecret("0123456789abcdef-secret")}}
	svc, err := service.New(cfg, service.Deps{NATS: bs.Conn(), Store: st})
	if err != nil {
		b.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer svc.Shutdown(ctx)
	const users = 1000
	for i := range users {
		if err := st.CreateUser(ctx, store.User{AppKey: appKey, Account: fmt.Sprint("u", i)}); err != nil {
			b.Fatal(err)
		}
	}
	// A second connection plays the gateway, as in production.
	gw, err := bs.Connect("gateway")
	if err != nil {
		b.Fatal(err)
	}
	defer gw.Close()
	subject := buswire.ServiceSubject(buswire.DefaultCluster, imapi.OpSend)
	body := json.RawMessage(`{"text":"hello, this is a benchmark message"}`)
	var next, shed atomic.Int64
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	b.SetParallelism(128)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			i := next.Add(1)
			from, to := fmt.Sprint("u", i%users), fmt.Sprint("u", (i*7+1)%users)
			req, _ := json.Marshal(&imapi.SendReq{ConvType: imapi.ConvP2P, To: to, ClientMsgID: fmt.Sprint(i), Body: body})
			data, _ := json.Marshal(&buswire.Request{Session: buswire.Session{AppKey: appKey, Account: from, SessionID: "s"}, Body: req})
			start := time.Now()
			for {
				m, err := gw.Request(subject, data, 10*time.Second)
				if err != nil {
					b.Error(err)
					return
				}
				var r buswire.Reply
				if err := json.Unmarshal(m.Data, &r); err != nil {
					b.Errorf("reply %s %v", m.Data, err)
					return
				}
				if r.Code == imapi.ErrUnavailable {
					// Shed by the store (over its queue budget): resend
					// after a pause, as the SDK does (it waits longer).
					shed.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				if r.Code != imapi.OK {
					b.Errorf("reply %s", m.Data)
					return
				}
				break
			}
			local = append(local, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "msgs/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
		b.ReportMetric(float64(shed.Load())/float64(len(lat)), "shed/msg")
		if b.N >= 1000 && storetest.BenchResults() {
			fmt.Printf("\nRESULT services_send_%s_msgs_per_s %.0f msgs/s\n", driver, float64(len(lat))/b.Elapsed().Seconds())
			fmt.Printf("RESULT services_send_%s_p50_ms %.2f ms\n", driver, float64(lat[len(lat)/2].Microseconds())/1000)
			fmt.Printf("RESULT services_send_%s_p99_ms %.2f ms\n", driver, float64(lat[len(lat)*99/100].Microseconds())/1000)
			fmt.Printf("RESULT services_send_%s_shed_per_msg %.4f ratio\n", driver, float64(shed.Load())/float64(len(lat)))
		}
	}
}
