package push

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/push/pushtest"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/pkg/config"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func recv(t *testing.T, ch chan pushtest.Received) pushtest.Received {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the stand-in")
	}
	return pushtest.Received{}
}

func testNotification(provider, token string) *Notification {
	badge := int64(3)
	return &Notification{ID: "m1.bob.phone", AppKey: "app1", Account: "bob", DeviceID: "phone", Provider: provider, Token: token,
		Title: "alice", Body: "hello", Badge: &badge, Sound: "default", Data: map[string]string{"conv_id": "p:alice:bob", "msg_id": "m1"}}
}

// Each adapter against its checking stand-in: formats, auth, caching of
// the provider credentials, and how answers are classified.
func TestProviders(t *testing.T) {
	ctx := context.Background()
	apns, fcm, hook := pushtest.NewAPNs(t), pushtest.NewFCM(t), pushtest.NewHook(t, "push-hook-secret-0123456789")
	// The stand-in checks iat against its own clock: start 55 minutes back
	// so that 51 minutes later the clock is still in the past.
	clk := &clock{t: time.Now().Add(-55 * time.Minute)}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	client := apns.Client()

	t.Run("apns", func(t *testing.T) {
		p, err := newAPNs(&APNsConfig{Endpoint: apns.Srv.URL, SandboxEndpoint: apns.Srv.URL, TeamID: apns.TeamID, KeyID: apns.KeyID,
			Key: config.NewSecret(apns.KeyPEM), Topic: apns.Topic, Expiration: config.Duration(time.Hour)}, client, 50*time.Minute, clk.now, m)
		if err != nil {
			t.Fatal(err)
		}
		if res := p.send(ctx, testNotification("apns", "tok-a")); res.outcome != delivered {
			t.Fatalf("send: %v %v", res.outcome, res.err)
		}
		r := recv(t, apns.C)
		if r.Title != "alice" || r.Body != "hello" || r.Badge == nil || *r.Badge != 3 || r.Silent || r.Data["msg_id"] != "m1" {
			t.Fatalf("got %+v", r)
		}
		n := testNotification("apns", "tok-a")
		n.Silent, n.Sound = true, ""
		if res := p.send(ctx, n); res.outcome != delivered {
			t.Fatalf("silent send: %v", res.err)
		}
		if r := recv(t, apns.C); !r.Silent {
			t.Fatal("silent notification sent with priority 10")
		}
		if apns.ProviderTokens() != 1 {
			t.Fatalf("%d provider tokens; want the first one reused", apns.ProviderTokens())
		}
		clk.add(51 * time.Minute)
		_ = p.send(ctx, testNotification("apns", "tok-a"))
		recv(t, apns.C)
		if apns.ProviderTokens() != 2 {
			t.Fatalf("%d provider tokens after 51 minutes; want a fresh one", apns.ProviderTokens())
		}
		apns.SetAnswer(func(token string, n int) int {
			return map[string]int{"dead": http.StatusGone, "busy": http.StatusTooManyRequests, "down": http.StatusServiceUnavailable,
				"bad": http.StatusBadRequest}[token]
		})
		for tok, want := range map[string]outcome{"dead": unregistered, "busy": retry, "down": retry, "bad": failed} {
			if res := p.send(ctx, testNotification("apns", tok)); res.outcome != want {
				t.Errorf("%s: %v (%v), want %v", tok, res.outcome, res.err, want)
			}
			recv(t, apns.C)
		}
	})

	t.Run("fcm", func(t *testing.T) {
		p, err := newFCM(&FCMConfig{Endpoint: fcm.Srv.URL, Credentials: config.NewSecret(fcm.Credentials())}, client, 50*time.Minute, clk.now, m)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if res := p.send(ctx, testNotification("fcm", "tok-f")); res.outcome != delivered {
				t.Fatalf("send: %v %v", res.outcome, res.err)
			}
			r := recv(t, fcm.C)
			if r.Title != "alice" || r.Body != "hello" || r.Badge == nil || *r.Badge != 3 || r.Data["conv_id"] != "p:alice:bob" {
				t.Fatalf("got %+v", r)
			}
		}
		if fcm.Grants != 1 {
			t.Fatalf("%d OAuth2 grants; want the access token reused", fcm.Grants)
		}
		fcm.SetAnswer(func(token string, n int) int {
			return map[string]int{"dead": http.StatusNotFound, "busy": http.StatusTooManyRequests, "down": http.StatusServiceUnavailable,
				"bad": http.StatusBadRequest}[token]
		})
		for tok, want := range map[string]outcome{"dead": unregistered, "busy": retry, "down": retry, "bad": failed} {
			if res := p.send(ctx, testNotification("fcm", tok)); res.outcome != want {
				t.Errorf("%s: %v (%v), want %v", tok, res.outcome, res.err, want)
			}
			recv(t, fcm.C)
		}
	})

	t.Run("webhook", func(t *testing.T) {
		p := &hookProvider{cfg: &WebhookConfig{URL: hook.Srv.URL, Secret: config.NewSecret(hook.Secret)}, client: client, now: time.Now}
		if res := p.send(ctx, testNotification("webhook", "tok-w")); res.outcome != delivered {
			t.Fatalf("send: %v %v", res.outcome, res.err)
		}
		if r := recv(t, hook.C); r.Title != "alice" || r.Badge == nil || *r.Badge != 3 {
			t.Fatalf("got %+v", r)
		}
		hook.SetAnswer(func(token string, n int) int {
			return map[string]int{"dead": http.StatusGone, "down": http.StatusBadGateway, "bad": http.StatusForbidden}[token]
		})
		for tok, want := range map[string]outcome{"dead": unregistered, "down": retry, "bad": failed} {
			if res := p.send(ctx, testNotification("webhook", tok)); res.outcome != want {
				t.Errorf("%s: %v (%v), want %v", tok, res.outcome, res.err, want)
			}
			recv(t, hook.C)
		}
		// Nobody listening: retried.
		p.cfg.URL = "http://127.0.0.1:1"
		if res := p.send(ctx, testNotification("webhook", "x")); res.outcome != retry {
			t.Fatalf("unreachable endpoint: %v", res.outcome)
		}
	})
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		name   string
		got    result
		want   outcome
		tokErr bool
	}{
		{"apns ok", classifyAPNs(200, nil), delivered, false},
		{"apns gone", classifyAPNs(410, []byte(`{"reason":"Unregistered"}`)), unregistered, false},
		{"apns bad token", classifyAPNs(400, []byte(`{"reason":"BadDeviceToken"}`)), unregistered, false},
		{"apns expired jwt", classifyAPNs(403, []byte(`{"reason":"ExpiredProviderToken"}`)), retry, true},
		{"apns 429", classifyAPNs(429, nil), retry, false},
		{"apns 500 garbage", classifyAPNs(500, []byte(`<html>`)), retry, false},
		{"apns bad topic", classifyAPNs(400, []byte(`{"reason":"BadTopic"}`)), failed, false},
		{"fcm ok", classifyFCM(200, nil), delivered, false},
		{"fcm unregistered", classifyFCM(404, []byte(`{"error":{"status":"NOT_FOUND","details":[{"errorCode":"UNREGISTERED"}]}}`)), unregistered, false},
		{"fcm 401", classifyFCM(401, nil), retry, true},
		{"fcm quota", classifyFCM(429, nil), retry, false},
		{"fcm invalid", classifyFCM(400, []byte(`{"error":{"status":"INVALID_ARGUMENT"}}`)), failed, false},
		{"hook 204", classifyHook(204), delivered, false},
		{"hook 410", classifyHook(410), unregistered, false},
		{"hook 503", classifyHook(503), retry, false},
		{"hook 404", classifyHook(404), failed, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.got.outcome != c.want {
				t.Fatalf("%v (%v), want %v", c.got.outcome, c.got.err, c.want)
			}
			if c.tokErr != (c.got.err != nil && errorsIs(c.got.err, errProviderToken)) {
				t.Fatalf("provider token error: %v", c.got.err)
			}
		})
	}
}

func TestDNDAndContent(t *testing.T) {
	paris := time.Date(2026, 1, 10, 23, 30, 0, 0, time.UTC) // 00:30 in Paris (UTC+1)
	for _, c := range []struct {
		name string
		ps   store.PushSettings
		at   time.Time
		want bool
	}{
		{"off", store.PushSettings{DNDStart: 0, DNDEnd: 1439}, paris, false},
		{"across midnight, inside", store.PushSettings{DNDEnabled: true, DNDStart: 22 * 60, DNDEnd: 7 * 60, DNDZone: "Europe/Paris"}, paris, true},
		{"across midnight, UTC zone", store.PushSettings{DNDEnabled: true, DNDStart: 0, DNDEnd: 7 * 60}, paris, false},
		{"same day window", store.PushSettings{DNDEnabled: true, DNDStart: 0, DNDEnd: 60, DNDZone: "Europe/Paris"}, paris, true},
		{"after the window", store.PushSettings{DNDEnabled: true, DNDStart: 0, DNDEnd: 30, DNDZone: "Europe/Paris"}, paris, false},
		{"whole day", store.PushSettings{DNDEnabled: true, DNDStart: 5, DNDEnd: 5}, paris, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := InDND(c.ps, c.at); got != c.want {
				t.Fatalf("InDND = %v", got)
			}
		})
	}
	cfg := Config{Apps: []AppConfig{{AppKey: "a"}}}
	cfg.applyDefaults()
	app := &cfg.Apps[0]
	m := &imapi.Message{From: "alice", To: "g1", ConvType: imapi.ConvGroup, Type: "text", Body: []byte(`{"text":"héllo wörld, a long line"}`)}
	if ti, b := Content(app, m); ti != "New message" || b != "You have a new message" {
		t.Fatalf("hidden: %q %q", ti, b)
	}
	app.Preview = PreviewSender
	if ti, b := Content(app, m); ti != "alice (g1)" || b != "You have a new message" {
		t.Fatalf("sender: %q %q", ti, b)
	}
	app.Preview, app.PreviewChars = PreviewFull, 11
	if _, b := Content(app, m); b != "héllo wörld…" {
		t.Fatalf("full: %q", b)
	}
	m.Type = "image"
	if _, b := Content(app, m); b != "[image]" {
		t.Fatalf("image: %q", b)
	}
}
