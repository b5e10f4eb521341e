package push

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/push/pushtest"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

const dedupeSecret = "0123456789abcdef-secret"

// startDedupe runs the component on an embedded bus with the app's
// webhook provider pointed at a stand-in.
func startDedupe(t *testing.T, ctx context.Context) (*Push, *pushtest.Hook, jetstream.JetStream) {
	t.Helper()
	hook := pushtest.NewHook(t, dedupeSecret)
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
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	scfg := store.Default()
	scfg.Path = filepath.Join(t.TempDir(), "dedupe.db")
	st, err := store.Open(ctx, scfg, store.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	pcfg := DefaultPresence()
	pcfg.MemoryStorage = true
	reg, err := NewRegistry(pcfg, RegistryDeps{JetStream: b.JetStream()})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Shutdown(context.Background()) })
	cfg := Default()
	cfg.Presence = pcfg
	cfg.MemoryStorage = true
	cfg.Backoff = []config.Duration{config.Duration(50 * time.Millisecond)}
	cfg.Apps = []AppConfig{{AppKey: "a", Webhook: &WebhookConfig{URL: hook.Srv.URL, Secret: config.NewSecret(dedupeSecret)}}}
	p, err := New(cfg, Deps{NATS: b.Conn(), Store: st, Presence: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p, hook, p.js
}

func dedupeNotification(id, token string) *Notification {
	return &Notification{ID: id, AppKey: "a", Account: "bob", DeviceID: "d1", Provider: imapi.ProviderWebhook, Token: token,
		Title: "t", Body: "b", Time: time.Now().UnixMilli()}
}

// fakeMsg is a JetStream message handed to handleSend directly, so a test
// can deliver the same stream message again as JetStream would after a
// lost ack or a crashed worker.
type fakeMsg struct {
	jetstream.Msg
	data      []byte
	seq       uint64
	delivered uint64
	acks      atomic.Int32
	naks      atomic.Int32
}

func (m *fakeMsg) Data() []byte { return m.data }
func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}, NumDelivered: m.delivered}, nil
}
func (m *fakeMsg) Ack() error                       { m.acks.Add(1); return nil }
func (m *fakeMsg) NakWithDelay(time.Duration) error { m.naks.Add(1); return nil }
func (m *fakeMsg) Term() error                      { return nil }

// The same send delivered again (its ack was lost, or its worker died
// after the provider answered): the provider is called once. The send's
// own retry after a transient failure still goes out.
func TestSendRedeliveredOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, hook, _ := startDedupe(t, ctx)
	hook.SetAnswer(func(token string, n int) int {
		if token == "flaky" && n == 1 {
			return 503
		}
		return 200
	})
	deliver := func(n *Notification, seq, delivered uint64) *fakeMsg {
		b, _ := json.Marshal(n)
		m := &fakeMsg{data: b, seq: seq, delivered: delivered}
		p.handleSend(ctx, m)
		return m
	}
	n := dedupeNotification("m1.bob.d1", "tok")
	if m := deliver(n, 7, 1); m.acks.Load() != 1 {
		t.Fatal("first delivery not acked")
	}
	if m := deliver(n, 7, 2); m.acks.Load() != 1 { // the redelivery after a lost ack
		t.Fatal("redelivery not acked")
	}
	if got := hook.Requests("tok"); got != 1 {
		t.Fatalf("provider called %d times for one send delivered twice", got)
	}
	if d := testutil.ToFloat64(p.m.deliveries.WithLabelValues(imapi.ProviderWebhook, "duplicate")); d != 1 {
		t.Fatalf("duplicates counted: %v", d)
	}

	f := dedupeNotification("m2.bob.d1", "flaky")
	if m := deliver(f, 9, 1); m.naks.Load() != 1 {
		t.Fatal("a 503 is not retried")
	}
	if m := deliver(f, 9, 2); m.acks.Load() != 1 {
		t.Fatal("the retry not acked")
	}
	if got := hook.Requests("flaky"); got != 2 {
		t.Fatalf("provider called %d times, want 2 (503, then the retry)", got)
	}
}

// Copies of one send queued past JetStream's duplicate window (a side-work
// job or push task redelivered minutes later publishes them again, with
// the same send id): one provider call.
func TestSendCopiesOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, hook, js := startDedupe(t, ctx)
	b, _ := json.Marshal(dedupeNotification("m3.bob.d1", "tok3"))
	for i := range 3 {
		// Distinct Nats-Msg-Ids: the window no longer dedupes them.
		if _, err := js.Publish(ctx, p.sendSubject("a"), b, jetstream.WithMsgID("copy-"+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	// Two copies are counted duplicates as soon as the first has claimed
	// the send, which may be before its provider call lands: wait for both.
	dups := func() float64 {
		return testutil.ToFloat64(p.m.deliveries.WithLabelValues(imapi.ProviderWebhook, "duplicate"))
	}
	waittest.Until(t, 10*time.Second, "two duplicates and one provider call", func() bool {
		return dups() >= 2 && hook.Requests("tok3") >= 1
	})
	if got := hook.Requests("tok3"); got != 1 {
		t.Fatalf("provider called %d times for three copies", got)
	}
}
