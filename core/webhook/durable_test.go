package webhook_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/webhook"
	"github.com/longlink/longlink/pkg/config"
)

// An event that could not be delivered before a node stopped is delivered
// by the next instance on the same durable consumer; the event helpers
// carry the message and the session.
func TestDurableAcrossRestart(t *testing.T) {
	ctx := context.Background()
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
	defer func() { _ = b.Shutdown(context.Background()) }()
	r := newReceiver(t)
	down := true
	r.status = func(webhook.Event, int) int {
		r.mu.Lock()
		defer r.mu.Unlock()
		if down {
			return http.StatusBadGateway
		}
		return http.StatusOK
	}
	cfg := webhook.Default()
	cfg.Backoff = []config.Duration{config.Duration(300 * time.Millisecond)}
	cfg.Apps = []webhook.AppConfig{app(r.srv.URL)}
	start := func() *webhook.Webhooks {
		w, err := webhook.New(cfg, webhook.Deps{JetStream: b.JetStream(), Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return w
	}
	w1 := start()
	msg := &imapi.Message{MsgID: "m42", ConvID: "p:alice:bob", From: "alice", To: "bob", Seq: 7, Type: "text", Body: json.RawMessage(`{"text":"hi"}`), Time: 1764038400000}
	ev, err := webhook.MessageEvent(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w1.Publish(ctx, appKey, ev); err != nil {
		t.Fatal(err)
	}
	// The same message published again (a retried send) is deduplicated.
	if err := w1.Publish(ctx, appKey, ev); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.attempts("msg-m42") == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := w1.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	r.mu.Lock()
	down = false
	r.mu.Unlock()
	w2 := start()
	defer func() { _ = w2.Shutdown(context.Background()) }()
	got := r.wait(t, 5*time.Second)
	var m imapi.Message
	if err := json.Unmarshal(got.Data, &m); err != nil || got.ID != "msg-m42" || m.Seq != 7 || m.From != "alice" {
		t.Fatalf("delivered %+v (%v)", got, err)
	}
	sev, err := webhook.SessionEvent(webhook.KindLogin, &buswire.Session{AppKey: appKey, Account: "bob", DeviceType: "pc", ClientIP: "192.0.2.1"}, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Publish(ctx, appKey, sev); err != nil {
		t.Fatal(err)
	}
	got = r.wait(t, 5*time.Second)
	var sd webhook.SessionData
	if err := json.Unmarshal(got.Data, &sd); err != nil || got.Kind != webhook.KindLogin || sd.Account != "bob" || sd.ClientIP != "192.0.2.1" {
		t.Fatalf("login event %+v (%v)", got, err)
	}
	select {
	case dup := <-r.ch:
		t.Fatalf("duplicate delivery %+v", dup)
	case <-time.After(300 * time.Millisecond):
	}
}
