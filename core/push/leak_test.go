package push

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/pkg/config"
)

// TestNoGoroutineLeak runs the whole component (reporter, registry, push
// workers, a delivery over the default HTTP client), stops it and expects
// the goroutine count to come back.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		got := make(chan struct{}, 1)
		hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got <- struct{}{} }))
		defer hook.Close()
		bcfg := bus.Default()
		bcfg.Listen = ""
		bcfg.StoreDir = t.TempDir()
		b, err := bus.New(bcfg, bus.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		scfg := store.Default()
		scfg.Path = filepath.Join(t.TempDir(), "leak.db")
		st, err := store.Open(ctx, scfg, store.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.PutPushToken(ctx, store.PushToken{AppKey: "a", Account: "bob", DeviceID: "d", Provider: imapi.ProviderWebhook, Token: "t"}); err != nil {
			t.Fatal(err)
		}
		pcfg := DefaultPresence()
		pcfg.MemoryStorage = true
		reg, err := NewRegistry(pcfg, RegistryDeps{JetStream: b.JetStream()})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := NewReporter(pcfg, ReporterDeps{JetStream: b.JetStream(), Gateway: "gw"})
		if err != nil {
			t.Fatal(err)
		}
		cfg := Default()
		cfg.Presence = pcfg
		cfg.MemoryStorage = true
		cfg.Apps = []AppConfig{{AppKey: "a", Webhook: &WebhookConfig{URL: hook.URL, Secret: config.NewSecret("0123456789abcdef-secret")}}}
		p, err := New(cfg, Deps{NATS: b.Conn(), Store: st, Presence: reg})
		if err != nil {
			t.Fatal(err)
		}
		for _, start := range []func(context.Context) error{reg.Start, rep.Start, p.Start} {
			if err := start(ctx); err != nil {
				t.Fatal(err)
			}
		}
		rep.SessionOpened(buswire.Session{AppKey: "a", Account: "alice", SessionID: "s"})
		p.MessageStored("a", &imapi.Message{MsgID: "m1", ConvID: "p:alice:bob", ConvType: imapi.ConvP2P, From: "alice", To: "bob",
			Type: "text", Body: []byte(`{"text":"hi"}`), Time: time.Now().UnixMilli()}, []string{"bob"})
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatal("no notification")
		}
		for _, stop := range []func(context.Context) error{p.Shutdown, rep.Shutdown, reg.Shutdown} {
			if err := stop(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		hook.Close()
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
