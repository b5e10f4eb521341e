package core_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/push"
	"github.com/longlink/longlink/core/push/pushtest"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/serverapi"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/webhook"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

const (
	pushAppSecret  = "app-api-secret-0123456789"
	pushHookSecret = "push-hook-secret-0123456789"
	eventsSecret   = "events-hook-secret-0123456789"
)

// pushEnv is a core node (bus, store, services, gateway, server API) with
// offline push pointed at local provider stand-ins, and the app's event
// webhook.
type pushEnv struct {
	t      *testing.T
	ctx    context.Context
	node   *core.Node
	key    link.KeyPair
	reg    *prometheus.Registry
	apns   *pushtest.APNs
	fcm    *pushtest.FCM
	hook   *pushtest.Hook
	events chan webhook.Event
	users  map[string]string // account → token
	nonce  atomic.Int64
}

func newPushEnv(t *testing.T, ctx context.Context, accounts ...string) *pushEnv {
	return newPushEnvWith(t, ctx, nil, accounts...)
}

// newPushEnvWith is newPushEnv with mod applied to the node's config.
func newPushEnvWith(t *testing.T, ctx context.Context, mod func(*core.Config), accounts ...string) *pushEnv {
	e := &pushEnv{t: t, ctx: ctx, apns: pushtest.NewAPNs(t), fcm: pushtest.NewFCM(t), hook: pushtest.NewHook(t, pushHookSecret),
		events: make(chan webhook.Event, 256), users: map[string]string{}}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(eventsSecret, r.Header.Get(webhook.SignatureHeader), body); err != nil {
			t.Errorf("event webhook: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev webhook.Event
		_ = json.Unmarshal(body, &ev)
		e.events <- ev
	}))
	t.Cleanup(receiver.Close)
	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	e.key = key
	cfg := core.Default()
	cfg.DataDir = t.TempDir()
	cfg.DebugListen = ""
	cfg.Roles = core.Roles{Services: true, Gateway: true, ServerAPI: true}
	cfg.Bus.Listen = ""
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.Keys = []gateway.KeyConfig{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}
	cfg.ServerAPI.Listen = "127.0.0.1:0"
	cfg.Service.Apps = []service.AppConfig{{AppKey: "demo", Secret: config.NewSecret(pushAppSecret)}}
	cfg.Webhook.MemoryStorage = true
	cfg.Webhook.Apps = []webhook.AppConfig{{AppKey: "demo", URL: receiver.URL, Secret: config.NewSecret(eventsSecret),
		Events: []webhook.Kind{webhook.KindLogin, webhook.KindLogout, webhook.KindKick}}}
	cfg.Push.MemoryStorage = true
	cfg.Push.Presence.MemoryStorage = true
	cfg.Push.Backoff = []config.Duration{config.Duration(200 * time.Millisecond)}
	cfg.Push.MaxAttempts = 3
	cfg.Push.Apps = []push.AppConfig{{
		AppKey: "demo", Preview: push.PreviewFull,
		Webhook: &push.WebhookConfig{URL: e.hook.Srv.URL, Secret: config.NewSecret(pushHookSecret)},
		APNs: &push.APNsConfig{Endpoint: e.apns.Srv.URL, SandboxEndpoint: e.apns.Srv.URL, TeamID: e.apns.TeamID, KeyID: e.apns.KeyID,
			Key: config.NewSecret(e.apns.KeyPEM), Topic: e.apns.Topic},
		FCM: &push.FCMConfig{Endpoint: e.fcm.Srv.URL, Credentials: config.NewSecret(e.fcm.Credentials())},
	}}
	if mod != nil {
		mod(&cfg)
	}
	e.reg = prometheus.NewRegistry()
	node, err := core.New(cfg, core.Deps{Registerer: e.reg, Gatherer: e.reg, PushHTTPClient: e.apns.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Shutdown(context.Background()) })
	e.node = node
	var seed []service.SeedUser
	for _, a := range accounts {
		seed = append(seed, service.SeedUser{Account: a})
	}
	users, err := service.Seed(ctx, node.Store(), "demo", seed, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		e.users[u.Account] = u.Token
	}
	return e
}

func (e *pushEnv) client(account, deviceType string) *sdk.Client {
	e.t.Helper()
	c, err := sdk.New(sdk.Config{Addresses: []string{e.node.LinkAddr()}, ServerKeys: map[string][]byte{e.key.ID: e.key.Public},
		AppKey: "demo", Account: account, Token: e.users[account], DeviceType: deviceType, SDKVersion: "go-test/7.1"})
	if err != nil {
		e.t.Fatal(err)
	}
	c.Start()
	e.t.Cleanup(func() { _ = c.Close() })
	if err := c.WaitConnected(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// api makes a signed server API call.
func (e *pushEnv) api(method, target string, body, out any) {
	e.t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, _ := http.NewRequestWithContext(e.ctx, method, "http://"+e.node.ServerAPIAddr()+target, bytes.NewReader(b))
	serverapi.Sign(req, "demo", pushAppSecret, fmt.Sprintf("n%d", e.nonce.Add(1)), time.Now(), b)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("%s %s: %d %s", method, target, resp.StatusCode, rb)
	}
	if out != nil {
		if err := json.Unmarshal(rb, out); err != nil {
			e.t.Fatalf("%s %s: %v", method, target, err)
		}
	}
}

func (e *pushEnv) counter(name, label, value string) float64 {
	mfs, _ := e.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func received(t *testing.T, ctx context.Context, ch chan pushtest.Received, token string) pushtest.Received {
	t.Helper()
	for {
		select {
		case r := <-ch:
			if r.Token == token {
				return r
			}
			t.Errorf("unexpected notification to %s: %+v", r.Token, r)
		case <-ctx.Done():
			t.Fatalf("no notification to %s", token)
		}
	}
}

// Offline push end to end (issue 7): a recipient without an online device
// gets a notification on each of its devices through each provider, in
// each provider's format and with its auth; an online recipient gets none;
// do-not-disturb suppresses; a 410 deletes the token; a failing provider
// is retried.
func TestOfflinePush(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	e := newPushEnv(t, ctx, "alice", "bob", "carol", "dave", "gina")
	pres := e.node.Presence()

	// bob's iPhone registers its APNs token itself; his other devices'
	// tokens come through the server API. Then bob goes offline.
	bob := e.client("bob", "phone")
	if err := bob.RegisterPushToken(ctx, imapi.ProviderAPNs, "bob-apns", false); err != nil {
		t.Fatal(err)
	}
	e.api(http.MethodPut, "/v1/users/bob/push-tokens/bob-android", imapi.PushTokenReq{Provider: imapi.ProviderFCM, Token: "bob-fcm"}, nil)
	e.api(http.MethodPut, "/v1/users/bob/push-tokens/bob-desk", imapi.PushTokenReq{Provider: imapi.ProviderWebhook, Token: "bob-hook"}, nil)
	waittest.Until(t, 20*time.Second, "bob online", func() bool { return pres.Online("demo", "bob") })
	_ = bob.Close()
	waittest.Until(t, 20*time.Second, "bob offline", func() bool { return !pres.Online("demo", "bob") })

	alice := e.client("alice", "pc")
	carol := e.client("carol", "phone")
	if err := carol.RegisterPushToken(ctx, imapi.ProviderWebhook, "carol-hook", false); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 20*time.Second, "carol online", func() bool { return pres.Online("demo", "carol") })
	if _, err := alice.SendText(ctx, imapi.ConvP2P, "carol", "carol is here"); err != nil {
		t.Fatal(err)
	}
	ack, err := alice.SendText(ctx, imapi.ConvP2P, "bob", "hello bob")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ch    chan pushtest.Received
		token string
	}{{e.apns.C, "bob-apns"}, {e.fcm.C, "bob-fcm"}, {e.hook.C, "bob-hook"}} {
		r := received(t, ctx, c.ch, c.token)
		if r.Title != "alice" || r.Body != "hello bob" || r.Badge == nil || *r.Badge != 1 || r.Silent ||
			r.Data["msg_id"] != ack.MsgID || r.Data["conv_id"] != ack.ConvID || r.Data["from"] != "alice" {
			t.Errorf("%s got %+v", r.Provider, r)
		}
	}
	if got := e.counter("longlink_push_tasks_total", "result", "online"); got < 1 {
		t.Errorf("online recipients counted %v", got)
	}
	if e.hook.Requests("carol-hook") != 0 {
		t.Fatal("online carol got an offline push")
	}

	// A group message: offline bob is notified on every device, online
	// carol is not; the title names the group.
	var g imapi.Group
	if err := alice.Request(ctx, imapi.OpGroupCreate, &imapi.GroupCreateReq{Name: "trip", Members: []string{"bob", "carol"}}, &g); err != nil {
		t.Fatal(err)
	}
	gack, err := alice.SendText(ctx, imapi.ConvGroup, g.GroupID, "to the group")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ch    chan pushtest.Received
		token string
	}{{e.apns.C, "bob-apns"}, {e.fcm.C, "bob-fcm"}, {e.hook.C, "bob-hook"}} {
		r := received(t, ctx, c.ch, c.token)
		if r.Title != "alice ("+g.GroupID+")" || r.Body != "to the group" || r.Data["conv_type"] != "2" || r.Data["msg_id"] != gack.MsgID || *r.Badge != 2 {
			t.Errorf("%s group notification %+v", r.Provider, r)
		}
	}
	if e.hook.Requests("carol-hook") != 0 {
		t.Fatal("online carol got an offline push for the group message")
	}

	// dave is offline all day in do-not-disturb (the app drops).
	e.api(http.MethodPut, "/v1/users/dave/push-tokens/dave-phone", imapi.PushTokenReq{Provider: imapi.ProviderFCM, Token: "dave-fcm"}, nil)
	var ps imapi.PushSettings
	e.api(http.MethodPut, "/v1/users/dave/push-settings", imapi.PushSettings{DND: imapi.DND{Enabled: true, Start: 0, End: 0, TimeZone: "Asia/Tokyo"}}, &ps)
	if !ps.DND.Enabled || ps.DND.TimeZone != "Asia/Tokyo" {
		t.Fatalf("settings %+v", ps)
	}
	if _, err := alice.SendText(ctx, imapi.ConvP2P, "dave", "are you asleep?"); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 20*time.Second, "the do-not-disturb drop", func() bool { return e.counter("longlink_push_tasks_total", "result", "dnd") == 1 })

	// gina muted her conversation with alice (the relationships' mute list).
	e.api(http.MethodPut, "/v1/users/gina/push-tokens/gina-phone", imapi.PushTokenReq{Provider: imapi.ProviderFCM, Token: "gina-fcm"}, nil)
	if _, _, err := e.node.Store().SetMuted(ctx, "demo", "gina", imapi.P2PConvID("alice", "gina"), true, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendText(ctx, imapi.ConvP2P, "gina", "psst"); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 20*time.Second, "the muted conversation skipped", func() bool { return e.counter("longlink_push_tasks_total", "result", "muted") == 1 })

	// APNs says bob's token is dead; FCM fails once, then takes it.
	e.apns.SetAnswer(func(token string, n int) int {
		if token == "bob-apns" {
			return http.StatusGone
		}
		return 0
	})
	e.fcm.SetAnswer(func(token string, n int) int {
		if n == 3 { // the third notification's first attempt
			return http.StatusServiceUnavailable
		}
		return 0
	})
	if _, err := alice.SendText(ctx, imapi.ConvP2P, "bob", "second"); err != nil {
		t.Fatal(err)
	}
	if r := received(t, ctx, e.apns.C, "bob-apns"); r.Status != http.StatusGone {
		t.Fatalf("apns answered %d", r.Status)
	}
	waittest.Until(t, 20*time.Second, "the dead APNs token deleted", func() bool {
		ts, err := e.node.Store().PushTokens(ctx, "demo", "bob")
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range ts {
			if tk.Token == "bob-apns" {
				return false
			}
		}
		return len(ts) == 2
	})
	if r := received(t, ctx, e.fcm.C, "bob-fcm"); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("fcm first attempt answered %d", r.Status)
	}
	if r := received(t, ctx, e.fcm.C, "bob-fcm"); r.Status != http.StatusOK || r.Body != "second" || *r.Badge != 3 {
		t.Fatalf("fcm retry: %+v", r)
	}
	received(t, ctx, e.hook.C, "bob-hook")
	if e.fcm.Requests("dave-fcm") != 0 {
		t.Fatal("dave was notified inside his do-not-disturb window")
	}
	if e.fcm.Requests("gina-fcm") != 0 {
		t.Fatal("gina was notified of a muted conversation")
	}

	// Settings from the device, read back through the server API; a zone
	// nobody knows is refused.
	want := imapi.PushSettings{DND: imapi.DND{Enabled: true, Start: 22 * 60, End: 7 * 60, TimeZone: "Europe/Paris"}}
	if got, err := carol.SetPushSettings(ctx, want); err != nil || got != want {
		t.Fatalf("set settings: %+v %v", got, err)
	}
	if got, err := carol.PushSettings(ctx); err != nil || got != want {
		t.Fatalf("settings: %+v %v", got, err)
	}
	var viaAPI imapi.PushSettings
	e.api(http.MethodGet, "/v1/users/carol/push-settings", nil, &viaAPI)
	if viaAPI != want {
		t.Fatalf("settings through the server API: %+v", viaAPI)
	}
	_, err = carol.SetPushSettings(ctx, imapi.PushSettings{DND: imapi.DND{Enabled: true, TimeZone: "Mars/Olympus"}})
	var ie *imapi.Error
	if !errors.As(err, &ie) || ie.Code != imapi.ErrBadRequest {
		t.Fatalf("unknown zone: %v", err)
	}
	if err := carol.UnregisterPushToken(ctx); err != nil {
		t.Fatal(err)
	}
	e.api(http.MethodDelete, "/v1/users/bob/push-tokens/bob-desk", nil, nil)
	for acct, left := range map[string]int{"carol": 0, "bob": 1} {
		if ts, err := e.node.Store().PushTokens(ctx, "demo", acct); err != nil || len(ts) != left {
			t.Fatalf("%s tokens after unregistering: %+v %v", acct, ts, err)
		}
	}
	if got := e.counter("longlink_push_tokens_deleted_total", "provider", "apns"); got != 1 {
		t.Fatalf("tokens deleted %v", got)
	}
}

// The event log (issue 7): logins, a logout and a kick with the client's
// address, device and SDK version, queryable through the signed server API
// and delivered to the app's webhook.
func TestEventLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	e := newPushEnv(t, ctx, "frank")
	start := time.Now().UnixMilli()
	first := e.client("frank", "phone")
	kicked := make(chan struct{})
	go func() {
		for ev := range first.Events() {
			if ev.Kind == sdk.EventKicked {
				close(kicked)
				return
			}
		}
	}()
	second := e.client("frank", "phone") // kicks the first: one session per device type
	select {
	case <-kicked:
	case <-ctx.Done():
		t.Fatal("the first session was not kicked")
	}
	if err := second.Logout(ctx); err != nil {
		t.Fatal(err)
	}

	var page serverapi.EventsResp
	waittest.Until(t, 20*time.Second, "four events in the log", func() bool {
		page = serverapi.EventsResp{}
		e.api(http.MethodGet, fmt.Sprintf("/v1/events?account=frank&from=%d&limit=10", start), nil, &page)
		return len(page.Events) == 4
	})
	var kinds []string
	for _, ev := range page.Events {
		kinds = append(kinds, ev.Kind)
		if ev.ClientIP != "127.0.0.1" || ev.DeviceType != "phone" || ev.DeviceID == "" || ev.SDK != "go-test/7.1" || ev.SessionID == "" {
			t.Errorf("incomplete event %+v", ev)
		}
	}
	// The kick is recorded as the gateway closes the session, so it may
	// land before or after the second login.
	got := strings.Join(kinds, ",")
	if got != "login,login,kick,logout" && got != "login,kick,login,logout" {
		t.Fatalf("events %s", got)
	}
	for _, ev := range page.Events {
		if ev.Kind == "kick" && ev.Reason != "logged in on another device" {
			t.Fatalf("kick reason %q", ev.Reason)
		}
	}
	// Paging: two at a time, by cursor.
	var p1, p2 serverapi.EventsResp
	e.api(http.MethodGet, "/v1/events?account=frank&limit=2", nil, &p1)
	if len(p1.Events) != 2 || p1.Next == "" {
		t.Fatalf("first page %+v", p1)
	}
	e.api(http.MethodGet, "/v1/events?account=frank&limit=2&cursor="+p1.Next, nil, &p2)
	if len(p2.Events) != 2 || p2.Next != "" || p2.Events[0].ID == p1.Events[1].ID {
		t.Fatalf("second page %+v", p2)
	}
	var none serverapi.EventsResp
	e.api(http.MethodGet, fmt.Sprintf("/v1/events?to=%d", start), nil, &none)
	if len(none.Events) != 0 {
		t.Fatalf("events before the start: %+v", none)
	}

	// The app's webhook got the same four, the kick with its session.
	seen := map[webhook.Kind]int{}
	var mu sync.Mutex
	for n := 0; n < 4; n++ {
		select {
		case ev := <-e.events:
			mu.Lock()
			seen[ev.Kind]++
			mu.Unlock()
			var sd webhook.SessionData
			_ = json.Unmarshal(ev.Data, &sd)
			if sd.ClientIP != "127.0.0.1" || sd.SDK != "go-test/7.1" || sd.DeviceType != "phone" {
				t.Errorf("%s event data %s", ev.Kind, ev.Data)
			}
			if ev.Kind == webhook.KindKick && sd.Reason != "logged in on another device" {
				t.Errorf("kick event reason %q", sd.Reason)
			}
		case <-ctx.Done():
			t.Fatalf("webhook events %v", seen)
		}
	}
	if seen[webhook.KindLogin] != 2 || seen[webhook.KindKick] != 1 || seen[webhook.KindLogout] != 1 {
		t.Fatalf("webhook events %v", seen)
	}
}
