package service_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
	"github.com/longlink/longlink/pkg/config"
)

// TestNoGoroutineLeak starts a bus, a store and a service, serves traffic,
// shuts everything down, and expects the goroutine count to come back.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		ctx := context.Background()
		bcfg := bus.Default()
		bcfg.Listen = ""
		bcfg.JetStream = false
		b, err := bus.New(bcfg, bus.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		cfg := storetest.Config(t, store.DriverSQLite)
		st, err := store.Open(ctx, cfg, store.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		scfg := service.Default()
		scfg.Apps = []service.AppConfig{{AppKey: appKey, Secret: config.NewSecret("0123456789abcdef-secret")}}
		svc, err := service.New(scfg, service.Deps{NATS: b.Conn(), Store: st})
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Start(ctx); err != nil {
			t.Fatal(err)
		}
		e := &env{t: t, nc: b.Conn(), st: st, svc: svc, clock: &clock{}}
		users, err := service.Seed(ctx, st, appKey, []service.SeedUser{{Account: "alice"}, {Account: "bob"}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens = map[string]string{"alice": users[0].Token, "bob": users[1].Token}
		alice := e.offline("alice")
		for i := range 50 {
			alice.send("bob", string(rune('a'+i%26))+string(rune('a'+i/26)), "x")
		}
		if code := alice.call(imapi.OpConvList, nil, nil); code != imapi.OK {
			t.Fatalf("conv list: %v", code)
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := svc.Shutdown(sctx); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Shutdown(sctx); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after shutdown:\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
