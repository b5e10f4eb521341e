package push

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/longlink/longlink/core/bus/bustest"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
	"github.com/longlink/longlink/pkg/config"
)

// BenchmarkOfflinePush measures the offline path end to end in one
// process: MessageStored for an offline recipient → task on JetStream
// (file storage) → expansion (tokens, settings, badge from SQLite) → send
// on JetStream → signed POST to a local push webhook. Figures: delivered
// notifications per second and the p50/p99 time from MessageStored to the
// webhook's answer.
func BenchmarkOfflinePush(b *testing.B) {
	ctx := context.Background()
	bs := bustest.Embedded(b)
	scfg := store.Default()
	scfg.Path = filepath.Join(b.TempDir(), "bench.db")
	st, err := store.Open(ctx, scfg, store.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const users = 1000
	for i := range users {
		if err := st.PutPushToken(ctx, store.PushToken{AppKey: "bench", Account: fmt.Sprint("u", i), DeviceID: "d",
			Provider: imapi.ProviderWebhook, Token: fmt.Sprint("t", i)}); err != nil {
			b.Fatal(err)
		}
	}
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var lat []time.Duration
	done := make(chan struct{}, 1<<16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var n HookPayload
		_ = json.Unmarshal(body, &n)
		mu.Lock()
		if t, ok := sent[n.Data["msg_id"]]; ok {
			lat = append(lat, time.Since(t))
			delete(sent, n.Data["msg_id"])
		}
		mu.Unlock()
		done <- struct{}{}
	}))
	defer hook.Close()

	pcfg := DefaultPresence()
	reg, err := NewRegistry(pcfg, RegistryDeps{JetStream: bs.JetStream()})
	if err != nil {
		b.Fatal(err)
	}
	if err := reg.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = reg.Shutdown(ctx) }()
	cfg := Default()
	cfg.Workers = 32
	cfg.Apps = []AppConfig{{AppKey: "bench", Webhook: &WebhookConfig{URL: hook.URL, Secret: config.NewSecret("bench-push-secret-0123456789")}}}
	p, err := New(cfg, Deps{NATS: bs.Conn(), Store: st, Presence: reg})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = p.Shutdown(ctx) }()

	body := json.RawMessage(`{"text":"hello, this is a benchmark message"}`)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprint("m", i)
		now := time.Now()
		mu.Lock()
		sent[id] = now
		mu.Unlock()
		to := fmt.Sprint("u", i%users)
		p.MessageStored("bench", &imapi.Message{MsgID: id, ConvID: imapi.P2PConvID("sender", to), ConvType: imapi.ConvP2P,
			From: "sender", To: to, Type: "text", Body: body, Time: now.UnixMilli()}, []string{to})
	}
	for range b.N {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			b.Fatal("notifications stopped arriving")
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	rate := float64(len(lat)) / b.Elapsed().Seconds()
	p50, p99 := float64(lat[len(lat)/2].Microseconds())/1000, float64(lat[len(lat)*99/100].Microseconds())/1000
	b.ReportMetric(rate, "notifications/s")
	b.ReportMetric(p50, "p50_ms")
	b.ReportMetric(p99, "p99_ms")
	if b.N >= 1000 && storetest.BenchResults() {
		fmt.Printf("\nRESULT push_offline_notifications_per_s %.0f notifications/s\n", rate)
		fmt.Printf("RESULT push_offline_p50_ms %.2f ms\n", p50)
		fmt.Printf("RESULT push_offline_p99_ms %.2f ms\n", p99)
	}
}

// BenchmarkPresenceOnline is the cost of the check made for every
// recipient of every message, with 100,000 sessions in the registry.
func BenchmarkPresenceOnline(b *testing.B) {
	// Filled directly: the bucket's watch is not what is measured.
	reg, err := NewRegistry(DefaultPresence(), RegistryDeps{JetStream: unusedJetStream{}})
	if err != nil {
		b.Fatal(err)
	}
	reg.leases["gw"] = time.Now()
	names := make([]string, 100000)
	for i := range names {
		names[i] = fmt.Sprint("u", i)
		reg.accounts[accountKey("app", names[i])] = []presentSession{{id: "s", gateway: "gw"}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if !reg.Online("app", names[i%len(names)]) {
			b.Fatal("offline")
		}
	}
}

// unusedJetStream satisfies the registry's dependency in a benchmark that
// never starts it.
type unusedJetStream struct {
	jetstream.JetStream
}
