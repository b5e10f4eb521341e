package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/webhook"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/metricstest"
)

const (
	appKey = "app1"
	secret = "webhook-secret-0123456789"
)

// receiver is an httptest endpoint that verifies signatures and answers
// with the status the test chooses for each attempt.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []webhook.Event
	hdr []http.Header
	bad int // requests whose signature failed
	// status answers attempt n (1-based) of an event; nil: 200.
	status func(ev webhook.Event, attempt int) int
	ch     chan webhook.Event
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{ch: make(chan webhook.Event, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := webhook.Verify(secret, req.Header.Get(webhook.SignatureHeader), body); err != nil {
			r.mu.Lock()
			r.bad++
			r.mu.Unlock()
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev webhook.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		attempt := 0
		_, _ = fmtSscan(req.Header.Get(webhook.AttemptHeader), &attempt)
		code := http.StatusOK
		if r.status != nil {
			code = r.status(ev, attempt)
		}
		r.mu.Lock()
		r.got = append(r.got, ev)
		r.hdr = append(r.hdr, req.Header.Clone())
		r.mu.Unlock()
		w.WriteHeader(code)
		if code == http.StatusOK {
			r.ch <- ev
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func fmtSscan(s string, n *int) (int, error) {
	v := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errors.New("not a number")
		}
		v = v*10 + int(c-'0')
	}
	*n = v
	return 1, nil
}

func (r *receiver) wait(t *testing.T, d time.Duration) webhook.Event {
	t.Helper()
	select {
	case ev := <-r.ch:
		return ev
	case <-time.After(d):
		t.Fatal("no successful delivery in time")
		return webhook.Event{}
	}
}

func (r *receiver) attempts(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.got {
		if ev.ID == id {
			n++
		}
	}
	return n
}

type env struct {
	w   *webhook.Webhooks
	reg *prometheus.Registry
}

func newEnv(t *testing.T, mut func(*webhook.Config)) *env {
	t.Helper()
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
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	cfg := webhook.Default()
	cfg.MaxAttempts = 3
	cfg.Backoff = []config.Duration{config.Duration(100 * time.Millisecond), config.Duration(200 * time.Millisecond)}
	cfg.DeliveryTimeout = config.Duration(2 * time.Second)
	cfg.Workers = 2
	if mut != nil {
		mut(&cfg)
	}
	reg := prometheus.NewRegistry()
	w, err := webhook.New(cfg, webhook.Deps{JetStream: b.JetStream(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := w.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return &env{w: w, reg: reg}
}

func metricValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var v float64
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
			return v
		}
	}
	return 0
}

func app(url string) webhook.AppConfig {
	return webhook.AppConfig{AppKey: appKey, URL: url, Secret: config.NewSecret(secret)}
}

func TestSignedDelivery(t *testing.T) {
	r := newReceiver(t)
	a := app(r.srv.URL)
	a.Events = []webhook.Kind{webhook.KindMessage, webhook.KindLogin}
	e := newEnv(t, func(c *webhook.Config) { c.Apps = []webhook.AppConfig{a} })
	ctx := context.Background()
	data := json.RawMessage(`{"msg_id":"m1","from":"alice","body":{"text":"hi"}}`)
	if err := e.w.Publish(ctx, appKey, webhook.Event{Kind: webhook.KindMessage, Data: data}); err != nil {
		t.Fatal(err)
	}
	ev := r.wait(t, 5*time.Second)
	if ev.Kind != webhook.KindMessage || ev.AppKey != appKey || ev.ID == "" || ev.Time == 0 || string(ev.Data) != string(data) {
		t.Fatalf("delivered %+v", ev)
	}
	r.mu.Lock()
	h := r.hdr[0]
	r.mu.Unlock()
	if h.Get(webhook.EventIDHeader) != ev.ID || h.Get(webhook.AttemptHeader) != "1" {
		t.Fatalf("headers %v", h)
	}
	// Not subscribed (logout) and unknown apps publish nothing.
	if err := e.w.Publish(ctx, appKey, webhook.Event{Kind: webhook.KindLogout, Data: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := e.w.Publish(ctx, "other", webhook.Event{Kind: webhook.KindLogin, Data: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := e.w.Publish(ctx, appKey, webhook.Event{Kind: webhook.KindLogin, Data: json.RawMessage(`{"account":"bob"}`)}); err != nil {
		t.Fatal(err)
	}
	if ev := r.wait(t, 5*time.Second); ev.Kind != webhook.KindLogin {
		t.Fatalf("second delivery %+v", ev)
	}
	if got := metricValue(t, e.reg, "longlink_webhook_events_skipped_total"); got != 2 {
		t.Fatalf("skipped %v, want 2", got)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bad != 0 || len(r.got) != 2 {
		t.Fatalf("bad signatures %d, deliveries %d", r.bad, len(r.got))
	}
	// Oversized events are refused at Publish.
	big := json.RawMessage(`"` + strings.Repeat("x", 70<<10) + `"`)
	if err := e.w.Publish(ctx, appKey, webhook.Event{Kind: webhook.KindMessage, Data: big}); err == nil {
		t.Fatal("oversized event accepted")
	}
}

func TestRetryThenSuccess(t *testing.T) {
	r := newReceiver(t)
	r.status = func(_ webhook.Event, attempt int) int {
		if attempt == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	e := newEnv(t, func(c *webhook.Config) { c.Apps = []webhook.AppConfig{app(r.srv.URL)} })
	start := time.Now()
	if err := e.w.Publish(context.Background(), appKey, webhook.Event{Kind: webhook.KindLogout, Data: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	ev := r.wait(t, 5*time.Second)
	if n := r.attempts(ev.ID); n != 2 {
		t.Fatalf("attempts %d, want 2", n)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("retried after %v, before the 100ms backoff", d)
	}
	dl, err := e.w.DeadLetters(context.Background(), appKey, 10)
	if err != nil || len(dl) != 0 {
		t.Fatalf("dead letters %v %v", dl, err)
	}
}

func TestDeadLetterAndReplay(t *testing.T) {
	r := newReceiver(t)
	var mu sync.Mutex
	failing := true
	r.status = func(webhook.Event, int) int {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	e := newEnv(t, func(c *webhook.Config) { c.Apps = []webhook.AppConfig{app(r.srv.URL)} })
	ctx := context.Background()
	if err := e.w.Publish(ctx, appKey, webhook.Event{ID: "ev-dead", Kind: webhook.KindMessage, Data: json.RawMessage(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	var dl []webhook.DeadLetter
	deadline := time.Now().Add(10 * time.Second)
	for len(dl) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		var err error
		if dl, err = e.w.DeadLetters(ctx, appKey, 10); err != nil {
			t.Fatal(err)
		}
	}
	if len(dl) != 1 {
		t.Fatalf("dead letters %+v", dl)
	}
	d := dl[0]
	if d.Event.ID != "ev-dead" || d.Attempts != 3 || d.LastError != "status 503" || string(d.Event.Data) != `{"n":1}` {
		t.Fatalf("dead letter %+v", d)
	}
	if n := r.attempts("ev-dead"); n != 3 {
		t.Fatalf("attempts %d, want 3 (max_attempts)", n)
	}
	if other, _ := e.w.DeadLetters(ctx, "other", 10); len(other) != 0 {
		t.Fatalf("another app sees the dead letter: %+v", other)
	}
	if err := e.w.Replay(ctx, "other", d.ID); !errors.Is(err, webhook.ErrNotFound) {
		t.Fatalf("replay as another app: %v", err)
	}
	if err := e.w.Replay(ctx, appKey, "999999"); !errors.Is(err, webhook.ErrNotFound) {
		t.Fatalf("replay unknown: %v", err)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	if err := e.w.Replay(ctx, appKey, d.ID); err != nil {
		t.Fatal(err)
	}
	ev := r.wait(t, 5*time.Second)
	if ev.ID != "ev-dead" {
		t.Fatalf("replayed %+v", ev)
	}
	if dl, _ := e.w.DeadLetters(ctx, appKey, 10); len(dl) != 0 {
		t.Fatalf("replayed dead letter still listed: %+v", dl)
	}
	mfs := metricstest.Check(t, e.reg, "longlink_webhook_")
	metricstest.InREADME(t, mfs, "README.md")
}

func TestModeration(t *testing.T) {
	var answer func(w http.ResponseWriter, req webhook.ModerationRequest)
	var bad int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret, r.Header.Get(webhook.SignatureHeader), body); err != nil {
			mu.Lock()
			bad++
			mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var req webhook.ModerationRequest
		_ = json.Unmarshal(body, &req)
		mu.Lock()
		a := answer
		mu.Unlock()
		a(w, req)
	}))
	defer srv.Close()
	mk := func(def webhook.Action, body string) webhook.AppConfig {
		a := webhook.AppConfig{AppKey: appKey, Secret: config.NewSecret(secret), ModerationURL: srv.URL,
			ModerationTimeout: config.Duration(200 * time.Millisecond), ModerationDefault: def, ModerationReplaceBody: body}
		return a
	}
	e := newEnv(t, func(c *webhook.Config) {
		c.Apps = []webhook.AppConfig{mk(webhook.Deny, "")}
	})
	msg := webhook.ModerationRequest{From: "alice", ConvType: 1, To: "bob", Type: "text", Body: json.RawMessage(`{"text":"bad word"}`)}
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter, req webhook.ModerationRequest)
		want   webhook.Decision
		err    bool
	}{
		{"allow", func(w http.ResponseWriter, req webhook.ModerationRequest) {
			if req.From != "alice" || req.AppKey != appKey || string(req.Body) != `{"text":"bad word"}` {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte(`{"action":"allow"}`))
		}, webhook.Decision{Action: webhook.Allow}, false},
		{"deny", func(w http.ResponseWriter, _ webhook.ModerationRequest) {
			_, _ = w.Write([]byte(`{"action":"deny","reason":"profanity"}`))
		}, webhook.Decision{Action: webhook.Deny, Reason: "profanity"}, false},
		{"replace", func(w http.ResponseWriter, _ webhook.ModerationRequest) {
			_, _ = w.Write([]byte(`{"action":"replace","body":{"text":"*** word"}}`))
		}, webhook.Decision{Action: webhook.Replace, Body: json.RawMessage(`{"text":"*** word"}`)}, false},
		{"timeout uses the default", func(w http.ResponseWriter, _ webhook.ModerationRequest) {
			time.Sleep(500 * time.Millisecond)
			_, _ = w.Write([]byte(`{"action":"allow"}`))
		}, webhook.Decision{Action: webhook.Deny, Default: true}, true},
		{"500 uses the default", func(w http.ResponseWriter, _ webhook.ModerationRequest) {
			w.WriteHeader(http.StatusInternalServerError)
		}, webhook.Decision{Action: webhook.Deny, Default: true}, true},
		{"garbage uses the default", func(w http.ResponseWriter, _ webhook.ModerationRequest) {
			_, _ = w.Write([]byte(`{"action":"maybe"}`))
		}, webhook.Decision{Action: webhook.Deny, Default: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			answer = tc.answer
			mu.Unlock()
			start := time.Now()
			d, err := e.w.Moderate(ctx, appKey, msg)
			if (err != nil) != tc.err {
				t.Fatalf("err %v", err)
			}
			if d.Action != tc.want.Action || d.Default != tc.want.Default || d.Reason != tc.want.Reason || string(d.Body) != string(tc.want.Body) {
				t.Fatalf("decision %+v, want %+v", d, tc.want)
			}
			if time.Since(start) > 450*time.Millisecond {
				t.Fatalf("moderation took %v with a 200ms timeout", time.Since(start))
			}
		})
	}
	mu.Lock()
	if bad != 0 {
		t.Fatalf("%d moderation requests with a bad signature", bad)
	}
	mu.Unlock()
	// The replace default and apps without a hook.
	e2 := newEnv(t, func(c *webhook.Config) {
		c.Stream, c.DeadStream, c.Subject, c.DeadSubject = "WH2", "WH2_DEAD", "wh2", "wh2_dead"
		c.Apps = []webhook.AppConfig{mk(webhook.Replace, `{"text":"(removed)"}`)}
	})
	mu.Lock()
	answer = func(w http.ResponseWriter, _ webhook.ModerationRequest) { w.WriteHeader(http.StatusBadGateway) }
	mu.Unlock()
	d, err := e2.w.Moderate(ctx, appKey, msg)
	if err == nil || d.Action != webhook.Replace || string(d.Body) != `{"text":"(removed)"}` || !d.Default {
		t.Fatalf("replace default: %+v %v", d, err)
	}
	if d, err := e2.w.Moderate(ctx, "nohook", msg); err != nil || d.Action != webhook.Allow {
		t.Fatalf("app without a hook: %+v %v", d, err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*webhook.Config)
		want string
	}{
		{"attempts", func(c *webhook.Config) { c.MaxAttempts = 1000 }, "max_attempts"},
		{"url", func(c *webhook.Config) {
			c.Apps = []webhook.AppConfig{{AppKey: "a", URL: "ftp://x", Secret: config.NewSecret(secret)}}
		}, "http(s) URL"},
		{"secret", func(c *webhook.Config) { c.Apps = []webhook.AppConfig{{AppKey: "a", URL: "http://x"}} }, "secret"},
		{"kind", func(c *webhook.Config) {
			c.Apps = []webhook.AppConfig{{AppKey: "a", URL: "http://x", Secret: config.NewSecret(secret), Events: []webhook.Kind{"nope"}}}
		}, "unknown kind"},
		{"default", func(c *webhook.Config) {
			c.Apps = []webhook.AppConfig{{AppKey: "a", ModerationURL: "http://x", Secret: config.NewSecret(secret), ModerationDefault: "maybe"}}
		}, "moderation_default"},
		{"replace body", func(c *webhook.Config) {
			c.Apps = []webhook.AppConfig{{AppKey: "a", ModerationURL: "http://x", Secret: config.NewSecret(secret), ModerationDefault: webhook.Replace}}
		}, "moderation_replace_body"},
		{"twice", func(c *webhook.Config) {
			c.Apps = []webhook.AppConfig{{AppKey: "a"}, {AppKey: "a"}}
		}, "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := webhook.Default()
			tc.mut(&c)
			_, err := webhook.New(c, webhook.Deps{JetStream: nil})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}
