package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/push"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/serverapi"
	"github.com/longlink/longlink/core/webhook"
	"github.com/longlink/longlink/pkg/waittest"
)

// The business layer from `longlink dev`, as the app's developer uses it:
// the app's server (signed server API, appkey and secret from dev.json)
// opens a chatroom and hands out entry tokens and addresses; alice (through
// the edge, client.json) and bob (direct) enter and talk in the room; a
// super-group message; a friend request and its acceptance with the
// notices; carol, offline, gets a push at the app's push webhook (`dev
// -push-webhook`); the event log shows the logins.
func TestDevBusinessFeatures(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "longlink")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()

	// The app's push endpoint: checks the signature with dev.json's
	// push_secret (known once dev has started).
	var pushSecret atomic.Value
	pushSecret.Store("")
	pushes := make(chan push.HookPayload, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(pushSecret.Load().(string), r.Header.Get(webhook.SignatureHeader), body); err != nil {
			t.Errorf("push webhook: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var p push.HookPayload
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("push webhook body: %v", err)
		}
		pushes <- p
	}))
	defer hook.Close()

	dev := startProc(t, bin, "dev", "-dir", dir, "-push-webhook", hook.URL, "-port-base", strconv.Itoa(freeDevPortBase(t)))
	dev.waitFor(t, "chat", 2*time.Minute)
	if !strings.Contains(dev.text(), "offline push") {
		t.Fatalf("dev table does not show the push webhook:\n%s", dev.text())
	}
	m := regexp.MustCompile(`server HTTP API\s+(http://\S+)`).FindStringSubmatch(dev.text())
	if m == nil {
		t.Fatalf("dev table lacks the server API:\n%s", dev.text())
	}
	var st devState
	if b, err := os.ReadFile(filepath.Join(dir, "dev.json")); err != nil || json.Unmarshal(b, &st) != nil {
		t.Fatalf("dev.json: %v", err)
	}
	pushSecret.Store(st.PushSecret)
	app := &appServer{t: t, ctx: ctx, base: m[1], secret: st.AppSecret}

	cf, err := sdk.LoadClientFile(filepath.Join(dir, "client.json"))
	if err != nil {
		t.Fatal(err)
	}
	connect := func(account string, mod func(*sdk.Config)) (*sdk.Client, *events) {
		cfg, err := cf.Config(account)
		if err != nil {
			t.Fatal(err)
		}
		cfg.SDKVersion = "scenario/1.0"
		if mod != nil {
			mod(&cfg)
		}
		c, err := sdk.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ev := collect(c)
		c.Start()
		t.Cleanup(func() { _ = c.Close() })
		if err := c.WaitConnected(ctx); err != nil {
			t.Fatalf("%s: %v", account, err)
		}
		return c, ev
	}
	// A chatroom opened by the app's server, which tells its clients where
	// to enter: the edge first, then the gateway itself.
	// (Here as the walkthrough does it, with `longlink api`.)
	if out, err := exec.Command(bin, "api", "-dir", dir, "POST", "/v1/rooms", `{"room_id":"launch","name":"Launch","owner":"alice"}`).CombinedOutput(); err != nil {
		t.Fatalf("longlink api POST /v1/rooms: %v\n%s", err, out)
	}
	var eps serverapi.RoomEntryPointsResp
	if out, err := exec.Command(bin, "api", "-dir", dir, "GET", "/v1/rooms/launch/addresses").Output(); err != nil || json.Unmarshal(out, &eps) != nil {
		t.Fatalf("longlink api GET /v1/rooms/launch/addresses: %v\n%s", err, out)
	}
	if len(eps.EntryPoints) != 1 {
		t.Fatalf("room entry points: %+v, want the one gateway", eps)
	}
	var linkAddrs, webAddrs []string
	for _, a := range eps.EntryPoints[0].Addresses {
		if h, ok := strings.CutPrefix(a, "link://"); ok {
			linkAddrs = append(linkAddrs, h)
		} else if h, ok := strings.CutPrefix(a, "weblink://"); ok {
			webAddrs = append(webAddrs, "http://"+h)
		}
	}
	if len(linkAddrs) != 2 || linkAddrs[0] != cf.Addresses[0] || linkAddrs[1] != cf.Direct[0] || len(webAddrs) != 2 || webAddrs[0] != cf.WebLink[0] {
		t.Fatalf("room entry points %v: want the edge (%v, %v) first, then the gateway (%v)", eps.EntryPoints[0].Addresses, cf.Addresses, cf.WebLink, cf.Direct)
	}
	// alice through the edge (the first entry point), bob directly, and bob
	// in a browser-like WebLink session through the edge.
	alice, aliceEv := connect("alice", func(c *sdk.Config) { c.Addresses = linkAddrs[:1] })
	bob, bobEv := connect("bob", func(c *sdk.Config) { c.Addresses = linkAddrs[1:] })
	bobWeb, bobWebEv := connect("bob", func(c *sdk.Config) {
		c.Addresses, c.Dialer, c.DeviceType = webAddrs[:1], sdk.WebLinkDialer(), "web"
	})
	for _, m := range []struct {
		who string
		c   *sdk.Client
	}{{"alice", alice}, {"bob", bob}, {"bob", bobWeb}} {
		var tok struct{ Token string }
		app.call(http.MethodPost, "/v1/rooms/launch/tokens", map[string]any{"account": m.who}, &tok)
		if _, err := m.c.RoomEnter(ctx, "launch", tok.Token, 10); err != nil {
			t.Fatalf("%s enters the room: %v", m.who, err)
		}
	}
	if _, err := alice.RoomSendText(ctx, "launch", "welcome to the launch"); err != nil {
		t.Fatal(err)
	}
	bobEv.wait(t, ctx, "room message from alice", roomText("alice", "welcome to the launch"))
	if _, err := bob.RoomSendText(ctx, "launch", "glad to be here"); err != nil {
		t.Fatal(err)
	}
	aliceEv.wait(t, ctx, "room message from bob (through the edge)", roomText("bob", "glad to be here"))
	bobWebEv.wait(t, ctx, "room message from alice (WebLink through the edge)", roomText("alice", "welcome to the launch"))
	app.call(http.MethodPost, "/v1/rooms/launch/messages", map[string]any{"client_msg_id": "ann-1", "body": map[string]string{"text": "starting now"}}, nil)
	aliceEv.wait(t, ctx, "the server's room announcement", roomText("", "starting now"))
	bobEv.wait(t, ctx, "the server's room announcement", roomText("", "starting now"))
	bobWebEv.wait(t, ctx, "the server's room announcement (WebLink)", roomText("", "starting now"))

	// A super-group made by the app's server, a member sends.
	var g imapi.SuperGroup
	app.call(http.MethodPost, "/v1/supergroups", map[string]any{"owner": "alice", "name": "everyone", "members": []string{"bob"}}, &g)
	if _, err := alice.SendText(ctx, imapi.ConvSuper, g.GroupID, "hello everyone"); err != nil {
		t.Fatal(err)
	}
	bobEv.wait(t, ctx, "the super-group message", func(ev sdk.Event) bool {
		return ev.Kind == sdk.EventMessage && ev.Message.ConvType == imapi.ConvSuper && strings.Contains(string(ev.Message.Body), "hello everyone")
	})

	// Friends.
	if _, err := alice.RequestFriend(ctx, "bob", "let's be friends"); err != nil {
		t.Fatal(err)
	}
	bobEv.wait(t, ctx, "the friend request", notice(imapi.NoticeFriendRequest, "alice"))
	bobWebEv.wait(t, ctx, "the friend request (bob's other device)", notice(imapi.NoticeFriendRequest, "alice"))
	if err := bob.AcceptFriend(ctx, "alice", "Alice"); err != nil {
		t.Fatal(err)
	}
	aliceEv.wait(t, ctx, "friend.added", notice(imapi.NoticeFriendAdded, "bob"))
	bobWebEv.wait(t, ctx, "friend.added (bob's other device)", notice(imapi.NoticeFriendAdded, "bob"))
	if fs, err := alice.Friends(ctx); err != nil || len(fs) != 1 {
		t.Fatalf("alice's friends: %+v, %v", fs, err)
	}

	// Carol registers her phone on the app's push channel (as the
	// walkthrough does it, from `longlink chat`) and goes offline.
	carol := startProc(t, bin, "chat", "-dir", dir, "-user", "carol", "-device", "phone", "-direct", "-server", m[1])
	carol.waitFor(t, "(connected)", 20*time.Second)
	// The room from the terminal: /enter asks the dev server API for an
	// entry token as the app's server would; typed lines go to the room.
	carol.say(t, "/enter launch")
	carol.waitFor(t, "in room launch (Launch) as member", 10*time.Second)
	carol.waitFor(t, "[room launch seq 1] alice: welcome to the launch", 5*time.Second)
	if _, err := alice.RoomSendText(ctx, "launch", "hello terminal"); err != nil {
		t.Fatal(err)
	}
	carol.waitFor(t, "alice: hello terminal", 10*time.Second)
	carol.say(t, "hi from the terminal")
	aliceEv.wait(t, ctx, "room message from the terminal", roomText("carol", "hi from the terminal"))
	carol.say(t, "/leave")
	carol.waitFor(t, "left room launch", 10*time.Second)
	carol.say(t, "/push webhook carol-token")
	carol.waitFor(t, "push token registered", 10*time.Second)
	carol.stop(t)
	if _, err := alice.SendText(ctx, imapi.ConvP2P, "carol", "are you there, carol?"); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pushes:
		if p.Account != "carol" || p.Token != "carol-token" || !strings.Contains(p.Body, "are you there") || p.Data["from"] != "alice" {
			t.Fatalf("push: %+v", p)
		}
	case <-ctx.Done():
		t.Fatal("no offline push reached the webhook")
	}

	// The event log has the logins, with the SDK version and the address,
	// and the logout of bob's web session (written aside from the
	// requests: in a moment).
	if err := bobWeb.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ who, kind, sdk string }{
		{"alice", "login", "scenario/1.0"}, {"bob", "login", "scenario/1.0"},
		{"carol", "login", sdk.Version + "-chat"}, {"bob", "logout", "scenario/1.0"},
	} {
		waittest.Until(t, 10*time.Second, "the "+want.kind+" of "+want.who+" in the event log", func() bool {
			var page serverapi.EventsResp
			app.call(http.MethodGet, "/v1/events?account="+want.who, nil, &page)
			for _, e := range page.Events {
				if e.Kind == want.kind && e.SDK == want.sdk && strings.HasPrefix(e.ClientIP, "127.0.0.1") {
					return true
				}
			}
			return false
		})
	}

	_ = alice.Close()
	_ = bob.Close()
	_ = bobWeb.Close()
	dev.interrupt(t, 20*time.Second)
}

// appServer is the app's own server calling the signed server API.
type appServer struct {
	t      *testing.T
	ctx    context.Context
	base   string
	secret string
	nonce  atomic.Int64
}

func (a *appServer) call(method, target string, body, out any) {
	a.t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, _ := http.NewRequestWithContext(a.ctx, method, a.base+target, bytes.NewReader(b))
	serverapi.Sign(req, devAppKey, a.secret, fmt.Sprintf("scenario-%d", a.nonce.Add(1)), time.Now(), b)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		a.t.Fatalf("%s %s: %d %s", method, target, resp.StatusCode, rb)
	}
	if out != nil {
		if err := json.Unmarshal(rb, out); err != nil {
			a.t.Fatalf("%s %s: %v (%s)", method, target, err, rb)
		}
	}
}

// events keeps everything a client reports, for waits on any of it.
type events struct {
	mu   sync.Mutex
	all  []sdk.Event
	more chan struct{}
}

func collect(c *sdk.Client) *events {
	e := &events{more: make(chan struct{}, 1)}
	go func() {
		for ev := range c.Events() {
			e.mu.Lock()
			e.all = append(e.all, ev)
			e.mu.Unlock()
			select {
			case e.more <- struct{}{}:
			default:
			}
		}
	}()
	return e
}

func (e *events) wait(t *testing.T, ctx context.Context, what string, match func(sdk.Event) bool) {
	t.Helper()
	seen := 0
	for {
		e.mu.Lock()
		evs := e.all[seen:]
		seen = len(e.all)
		e.mu.Unlock()
		for _, ev := range evs {
			if match(ev) {
				return
			}
		}
		select {
		case <-e.more:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("no %s", what)
		}
	}
}

func roomText(from, text string) func(sdk.Event) bool {
	return func(ev sdk.Event) bool {
		b, ok := sdk.RoomBatchOf(ev)
		if !ok {
			return false
		}
		for _, m := range b.Messages {
			if (from == "" || m.From == from) && strings.Contains(string(m.Body), text) {
				return true
			}
		}
		return false
	}
}

func notice(kind, from string) func(sdk.Event) bool {
	return func(ev sdk.Event) bool {
		return ev.Kind == sdk.EventNotice && ev.Notice.Kind == kind && ev.Notice.From == from
	}
}
