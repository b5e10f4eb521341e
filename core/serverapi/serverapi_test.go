package serverapi_test

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
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.yaml.in/yaml/v3"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/callsvc"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/route"
	"github.com/longlink/longlink/core/serverapi"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
	"github.com/longlink/longlink/core/webhook"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

const (
	appKey = "app1"
	secret = "0123456789abcdef-app-secret"
)

type env struct {
	t      testing.TB
	srv    *serverapi.Server
	nats   *bus.Bus
	svc    *service.Service
	routes *route.Table
	cfg    serverapi.Config
	base   string
	nc     *nats.Conn
	st     store.Store
	stCfg  store.Config
	nonce  atomic.Int64
	hooks  *webhook.Webhooks
	// hookStatus is what the app's webhook receiver answers.
	hookStatus atomic.Int32
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	bcfg := bus.Default()
	bcfg.Listen = ""
	b, err := bus.New(bcfg, bus.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	st, stCfg := storetest.Open(t, store.DriverSQLite)
	scfg := service.Default()
	scfg.Apps = []service.AppConfig{{AppKey: appKey, Secret: config.NewSecret(secret)}}
	svc, err := service.New(scfg, service.Deps{NATS: b.Conn(), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
	ccfg := callsvc.Default()
	ccfg.Secrets = []turncred.Secret{{ID: "s1", Value: config.NewSecret(turnSecret)}}
	ccfg.Servers = []callsvc.ServerConfig{{Site: "sg", URLs: []string{"turn:127.0.0.1:3478?transport=udp"}}}
	calls, err := callsvc.New(ccfg, callsvc.Deps{NATS: b.Conn()})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, nc: b.Conn(), st: st, stCfg: stCfg, nats: b, svc: svc}
	e.hookStatus.Store(http.StatusInternalServerError)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(e.hookStatus.Load()))
	}))
	t.Cleanup(receiver.Close)
	wcfg := webhook.Default()
	wcfg.MemoryStorage = true
	wcfg.MaxAttempts = 1
	wcfg.Apps = []webhook.AppConfig{{AppKey: appKey, URL: receiver.URL, Secret: config.NewSecret("webhook-secret-0123456789")}}
	hooks, err := webhook.New(wcfg, webhook.Deps{JetStream: b.JetStream()})
	if err != nil {
		t.Fatal(err)
	}
	if err := hooks.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hooks.Shutdown(context.Background()) })
	e.hooks = hooks
	cfg := serverapi.Default()
	cfg.Listen = "127.0.0.1:0"
	srv, err := serverapi.New(cfg, serverapi.Deps{Service: svc, Store: st, Calls: calls, NATS: b.Conn(), JetStream: b.JetStream(),
		Node: route.Node{Cluster: buswire.DefaultCluster}, DeadLetters: hooks})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	routes, err := route.New(route.Config{DefaultCluster: buswire.DefaultCluster, Clusters: map[string]string{"dedicated": "ded"}}, route.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	e.routes, e.cfg = routes, cfg
	front, err := serverapi.NewFront(cfg, serverapi.FrontDeps{NATS: b.Conn(), Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	if err := front.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = front.Shutdown(context.Background()) })
	e.srv, e.base = srv, "http://"+front.Addr()
	return e
}

// do sends a signed request; edit may tamper with it after signing.
func (e *env) do(method, target string, body any, edit func(*http.Request)) (int, []byte) {
	e.t.Helper()
	return e.doAs(e.t, method, target, body, edit)
}

// doAs is do reporting to t (a fuzz target's, on an env the fuzz test shares).
func (e *env) doAs(t testing.TB, method, target string, body any, edit func(*http.Request)) (int, []byte) {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		raw, _ = json.Marshal(b)
	}
	req, err := http.NewRequest(method, e.base+target, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	serverapi.Sign(req, appKey, secret, fmt.Sprintf("n%d-%d", time.Now().UnixNano(), e.nonce.Add(1)), time.Now(), raw)
	if edit != nil {
		edit(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: content type %q", method, target, ct)
	}
	return resp.StatusCode, out
}

func (e *env) ok(method, target string, body, out any) {
	e.t.Helper()
	status, b := e.do(method, target, body, nil)
	if status != http.StatusOK {
		e.t.Fatalf("%s %s: %d %s", method, target, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %s: %v", method, target, b, err)
		}
	}
}

func errCode(t testing.TB, b []byte) imapi.Code {
	t.Helper()
	var e imapi.Error
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %s: %v", b, err)
	}
	return e.Code
}

// login checks a token over the bus, as a gateway would.
func (e *env) login(account, token string) imapi.Code {
	e.t.Helper()
	body, _ := json.Marshal(&imapi.LoginReq{AppKey: appKey, Account: account, Token: token, DeviceType: "pc"})
	data, _ := json.Marshal(&buswire.Request{Body: body})
	m, err := e.nc.Request(buswire.ServiceSubject(buswire.DefaultCluster, imapi.OpLogin), data, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	var r buswire.Reply
	_ = json.Unmarshal(m.Data, &r)
	return r.Code
}

func TestSignature(t *testing.T) {
	e := newEnv(t)
	body := serverapi.UserReq{Account: "alice"}
	var replayNonce string
	for _, tc := range []struct {
		name string
		edit func(*http.Request)
		want imapi.Code
	}{
		{"missing appkey", func(r *http.Request) { r.Header.Del(serverapi.HeaderAppKey) }, imapi.ErrUnauthorized},
		{"missing checksum", func(r *http.Request) { r.Header.Del(serverapi.HeaderChecksum) }, imapi.ErrUnauthorized},
		{"malformed checksum", func(r *http.Request) { r.Header.Set(serverapi.HeaderChecksum, "zz") }, imapi.ErrUnauthorized},
		{"bad nonce syntax", func(r *http.Request) { r.Header.Set(serverapi.HeaderNonce, "a b") }, imapi.ErrUnauthorized},
		{"unknown appkey", func(r *http.Request) { r.Header.Set(serverapi.HeaderAppKey, "other") }, imapi.ErrUnauthorized},
		{"wrong secret", func(r *http.Request) {
			b, _ := json.Marshal(body)
			serverapi.Sign(r, appKey, "not-the-secret-at-all", "n-wrong", time.Now(), b)
		}, imapi.ErrUnauthorized},
		{"tampered body", func(r *http.Request) {
			b := []byte(`{"account":"mallory"}`)
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		}, imapi.ErrUnauthorized},
		{"other path", func(r *http.Request) { r.URL.Path = "/v1/users/alice/tokens" }, imapi.ErrUnauthorized},
		{"stale timestamp", func(r *http.Request) {
			b, _ := json.Marshal(body)
			serverapi.Sign(r, appKey, secret, "n-stale", time.Now().Add(-10*time.Minute), b)
		}, imapi.ErrUnauthorized},
		{"future timestamp", func(r *http.Request) {
			b, _ := json.Marshal(body)
			serverapi.Sign(r, appKey, secret, "n-future", time.Now().Add(10*time.Minute), b)
		}, imapi.ErrUnauthorized},
		{"valid", func(r *http.Request) { replayNonce = r.Header.Get(serverapi.HeaderNonce) }, imapi.OK},
		{"replayed", func(r *http.Request) {
			b, _ := json.Marshal(serverapi.UserReq{Account: "bob"})
			serverapi.Sign(r, appKey, secret, replayNonce, time.Now(), b)
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		}, imapi.ErrUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, b := e.do(http.MethodPost, "/v1/users", body, tc.edit)
			if tc.want == imapi.OK {
				if status != http.StatusOK {
					t.Fatalf("status %d %s", status, b)
				}
				return
			}
			if status != serverapi.HTTPStatus(tc.want) || errCode(t, b) != tc.want {
				t.Fatalf("status %d %s, want code %v", status, b, tc.want)
			}
		})
	}
	// The replayed request created nobody.
	if _, err := e.st.User(context.Background(), appKey, "bob"); err == nil {
		t.Fatal("replayed request was executed")
	}
}

func TestUsersAndTokens(t *testing.T) {
	e := newEnv(t)
	var created serverapi.CreateUserResp
	e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "alice", Name: "Alice"}, &created)
	if created.Account != "alice" || created.Name != "Alice" || len(created.Token) != 64 || created.Expires <= time.Now().UnixMilli() {
		t.Fatalf("created %+v", created)
	}
	if code := e.login("alice", created.Token); code != imapi.OK {
		t.Fatalf("login with the issued token: %v", code)
	}
	status, b := e.do(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "alice"}, nil)
	if status != http.StatusConflict || errCode(t, b) != imapi.ErrConflict {
		t.Fatalf("duplicate: %d %s", status, b)
	}
	status, b = e.do(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "bad.name"}, nil)
	if status != http.StatusBadRequest {
		t.Fatalf("bad account: %d %s", status, b)
	}
	var u serverapi.UserResp
	e.ok(http.MethodGet, "/v1/users/alice", nil, &u)
	if u.Name != "Alice" || u.Disabled {
		t.Fatalf("user %+v", u)
	}
	status, _ = e.do(http.MethodGet, "/v1/users/ghost", nil, nil)
	if status != http.StatusNotFound {
		t.Fatalf("ghost: %d", status)
	}

	var tok serverapi.TokenResp
	e.ok(http.MethodPost, "/v1/users/alice/tokens", serverapi.TokenReq{}, &tok)
	if code := e.login("alice", tok.Token); code != imapi.OK {
		t.Fatalf("second token: %v", code)
	}
	if code := e.login("alice", created.Token); code != imapi.OK {
		t.Fatalf("first token after adding one: %v", code)
	}
	kicks := make(chan *nats.Msg, 8)
	sub, _ := e.nc.ChanSubscribe(buswire.UserSubject(appKey, "alice"), kicks)
	defer sub.Unsubscribe()
	_ = e.nc.Flush()
	e.ok(http.MethodPost, "/v1/users/alice/tokens", serverapi.TokenReq{RevokeOthers: true}, &tok)
	if code := e.login("alice", created.Token); code != imapi.ErrUnauthorized {
		t.Fatalf("revoked token: %v", code)
	}
	expectKick(t, kicks)

	disabled := true
	e.ok(http.MethodPatch, "/v1/users/alice", map[string]any{"disabled": disabled}, &u)
	if !u.Disabled || u.Name != "Alice" {
		t.Fatalf("after disable %+v", u)
	}
	expectKick(t, kicks)
	if code := e.login("alice", tok.Token); code != imapi.ErrUserDisabled {
		t.Fatalf("login when disabled: %v", code)
	}
	// Tokens are stored only as hashes: the database files never hold one.
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{e.stCfg.Path, e.stCfg.Path + "-wal"} {
		data, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, tk := range []string{created.Token, tok.Token} {
			if bytes.Contains(data, []byte(tk)) {
				t.Fatalf("%s holds a raw token", f)
			}
		}
	}
}

func expectKick(t *testing.T, ch chan *nats.Msg) {
	t.Helper()
	for {
		select {
		case m := <-ch:
			var p buswire.Push
			_ = json.Unmarshal(m.Data, &p)
			if p.Op == imapi.OpKick && p.KickDeviceType == "*" {
				return
			}
		case <-time.After(3 * time.Second):
			t.Fatal("no kick push")
		}
	}
}

func TestMessagesAndHistory(t *testing.T) {
	e := newEnv(t)
	e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "alice"}, nil)
	e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "bob"}, nil)
	pushes := make(chan *nats.Msg, 16)
	sub, _ := e.nc.ChanSubscribe(buswire.UserSubject(appKey, "bob"), pushes)
	defer sub.Unsubscribe()
	_ = e.nc.Flush()
	var acks []imapi.SendAck
	for i := range 3 {
		var ack imapi.SendAck
		e.ok(http.MethodPost, "/v1/messages", map[string]any{
			"from": "alice", "conv_type": 1, "to": "bob", "client_msg_id": fmt.Sprint("s", i), "body": map[string]string{"text": "hi"},
		}, &ack)
		acks = append(acks, ack)
	}
	if acks[2].Seq != 3 || acks[0].ConvID != imapi.P2PConvID("alice", "bob") {
		t.Fatalf("acks %+v", acks)
	}
	select {
	case m := <-pushes:
		var p buswire.Push
		_ = json.Unmarshal(m.Data, &p)
		if p.Op != imapi.OpPush {
			t.Fatalf("push %+v", p)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("bob got no push")
	}
	var again imapi.SendAck
	e.ok(http.MethodPost, "/v1/messages", map[string]any{
		"from": "alice", "conv_type": 1, "to": "bob", "client_msg_id": "s0", "body": map[string]string{"text": "hi"},
	}, &again)
	if again != acks[0] {
		t.Fatalf("dedupe: %+v vs %+v", again, acks[0])
	}
	status, b := e.do(http.MethodPost, "/v1/messages", map[string]any{"from": "ghost", "conv_type": 1, "to": "bob", "client_msg_id": "x", "body": 1}, nil)
	if status != http.StatusNotFound {
		t.Fatalf("unknown sender: %d %s", status, b)
	}

	var note imapi.SendAck
	e.ok(http.MethodPost, "/v1/notifications", serverapi.NotificationReq{To: "bob", ClientMsgID: "n1", Body: json.RawMessage(`{"text":"welcome"}`)}, &note)
	if note.ConvID != imapi.P2PConvID(imapi.SystemAccount, "bob") || note.Seq != 1 {
		t.Fatalf("notification ack %+v", note)
	}

	var page imapi.SyncResp
	e.ok(http.MethodGet, "/v1/conversations/"+acks[0].ConvID+"/messages?limit=2", nil, &page)
	if len(page.Messages) != 2 || page.Messages[0].Seq != 3 || !page.HasMore {
		t.Fatalf("history page %+v", page)
	}
	e.ok(http.MethodGet, "/v1/conversations/"+acks[0].ConvID+"/messages?before_seq=2", nil, &page)
	if len(page.Messages) != 1 || page.Messages[0].Seq != 1 || page.HasMore {
		t.Fatalf("older page %+v", page)
	}
	e.ok(http.MethodGet, "/v1/conversations/"+note.ConvID+"/messages", nil, &page)
	if len(page.Messages) != 1 || page.Messages[0].From != imapi.SystemAccount || page.Messages[0].Type != "system" {
		t.Fatalf("notification history %+v", page)
	}
	for _, target := range []string{"/v1/conversations/bogus/messages", "/v1/conversations/" + acks[0].ConvID + "/messages?limit=x"} {
		if status, _ := e.do(http.MethodGet, target, nil, nil); status != http.StatusBadRequest {
			t.Fatalf("%s: %d", target, status)
		}
	}
}

func TestLimitsAndUnknownPaths(t *testing.T) {
	e := newEnv(t)
	big := []byte(`{"account":"a","name":"` + strings.Repeat("x", 70<<10) + `"}`)
	status, b := e.do(http.MethodPost, "/v1/users", big, nil)
	if status != http.StatusRequestEntityTooLarge || errCode(t, b) != imapi.ErrTooLarge {
		t.Fatalf("oversize: %d %s", status, b)
	}
	status, b = e.do(http.MethodGet, "/v1/nothing", nil, nil)
	if status != http.StatusNotFound || errCode(t, b) != imapi.ErrNotFound {
		t.Fatalf("unknown path: %d %s", status, b)
	}
	status, _ = e.do(http.MethodDelete, "/v1/users", nil, nil)
	if status != http.StatusMethodNotAllowed && status != http.StatusNotFound {
		t.Fatalf("wrong method: %d", status)
	}
}

// Every served route is documented in openapi.yaml and every documented
// operation is served.
const turnSecret = "turn-shared-secret"

// An operator lists the app's webhook dead letters and replays one once the
// app's endpoint works again.
func TestWebhookDeadLetters(t *testing.T) {
	e := newEnv(t)
	ev, err := webhook.SessionEvent(webhook.KindLogin, &buswire.Session{AppKey: appKey, Account: "alice", SessionID: "s1"}, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.hooks.Publish(context.Background(), appKey, ev); err != nil {
		t.Fatal(err)
	}
	var list serverapi.DeadLettersResp
	deadline := time.Now().Add(10 * time.Second)
	for len(list.DeadLetters) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the failing event never became a dead letter")
		}
		time.Sleep(50 * time.Millisecond)
		e.ok(http.MethodGet, "/v1/webhooks/dead-letters?limit=10", nil, &list)
	}
	if list.DeadLetters[0].Attempts != 1 || list.DeadLetters[0].LastError == "" {
		t.Fatalf("dead letter %+v", list.DeadLetters[0])
	}
	if code, _ := e.do(http.MethodPost, "/v1/webhooks/dead-letters/nope/replay", nil, nil); code != http.StatusNotFound {
		t.Fatalf("replay of an unknown id: %d, want 404", code)
	}
	e.hookStatus.Store(http.StatusOK)
	e.ok(http.MethodPost, "/v1/webhooks/dead-letters/"+list.DeadLetters[0].ID+"/replay", nil, nil)
	for {
		e.ok(http.MethodGet, "/v1/webhooks/dead-letters", nil, &list)
		if len(list.DeadLetters) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replayed dead letter still listed: %+v", list.DeadLetters)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTURNCredentials(t *testing.T) {
	e := newEnv(t)
	var got imapi.TurnCredentials
	e.ok(http.MethodPost, "/v1/turn/credentials", map[string]any{"account": "alice", "ttl_sec": 600}, &got)
	u, err := turncred.ParseUsername(got.Username)
	if err != nil || u.AppKey != appKey || u.Account != "alice" {
		t.Fatalf("username %q: %+v %v", got.Username, u, err)
	}
	if got.Password != turncred.Password(turnSecret, got.Username) {
		t.Fatal("password is not the HMAC of the username with the shared secret")
	}
	if len(got.Servers) != 1 || got.TTLSec != 600 {
		t.Fatalf("answer %+v", got)
	}
	if code, _ := e.do(http.MethodPost, "/v1/turn/credentials", map[string]any{}, nil); code != http.StatusBadRequest {
		t.Fatalf("no account: status %d, want 400", code)
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t)
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	methods := []string{"get", "put", "post", "delete", "patch", "head", "options"}
	var documented []string
	for p, ops := range doc.Paths {
		for m := range ops {
			if slices.Contains(methods, m) {
				documented = append(documented, strings.ToUpper(m)+" "+p)
			}
		}
	}
	var served []string
	for _, r := range e.srv.Routes() {
		served = append(served, r.Method+" "+r.Pattern)
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Fatalf("openapi.yaml and routes differ:\ndocumented %v\nserved     %v", documented, served)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*serverapi.Config)
		want string
	}{
		{"bad listen", func(c *serverapi.Config) { c.Listen = "7712" }, "serverapi.listen"},
		{"window", func(c *serverapi.Config) { c.Window = config.Duration(2 * time.Hour) }, "serverapi.window"},
		{"nonce store", func(c *serverapi.Config) { c.NonceStoreBytes = 10 }, "serverapi.nonce_store_bytes"},
		{"forward longer than write", func(c *serverapi.Config) { c.ForwardTimeout = config.Duration(time.Minute) }, "serverapi.forward_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serverapi.Default()
			tc.mut(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// A 400 names the field and what it takes: an unknown field lists the
// request's fields, a wrong type names the type wanted, an enum lists its
// values.
func TestBadRequestsNameFieldAndValues(t *testing.T) {
	e := newEnv(t)
	e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "alice"}, nil)
	for _, c := range []struct {
		name, target string
		body         string
		want         []string
	}{
		{"unknown field", "/v1/users", `{"acount":"bob"}`, []string{`unknown field \"acount\"; this request takes account, name`}},
		{"wrong type", "/v1/messages", `{"from":"alice","conv_type":"p2p","to":"bob","client_msg_id":"1","body":{}}`, []string{"conv_type: want an integer, not a JSON string"}},
		{"enum", "/v1/messages", `{"from":"alice","conv_type":7,"to":"bob","client_msg_id":"1","body":{"t":1}}`, []string{"conv_type: 7 is not one of 1 (1:1), 2 (group), 4 (super-group)"}},
		{"empty", "/v1/users", ``, []string{"body: empty; want a JSON object with account, name"}},
		{"not JSON", "/v1/users", `{"account":`, []string{"body: not JSON"}},
	} {
		code, b := e.do(http.MethodPost, c.target, []byte(c.body), nil)
		if code != http.StatusBadRequest {
			t.Errorf("%s: status %d: %s", c.name, code, b)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s: answer %s lacks %q", c.name, b, w)
			}
		}
	}
}

// The README's curl recipe (testdata/signed-curl.sh, the same text) makes
// a request the server accepts.
func TestCurlRecipe(t *testing.T) {
	for _, tool := range []string{"curl", "openssl", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed by the recipe: %v", tool, err)
		}
	}
	script, err := os.ReadFile("testdata/signed-curl.sh")
	if err != nil {
		t.Fatal(err)
	}
	readme, _ := os.ReadFile("README.md")
	body := script[bytes.Index(script, []byte("set -euo pipefail")):]
	if !bytes.Contains(readme, body) {
		t.Fatal("README.md's curl recipe differs from testdata/signed-curl.sh")
	}
	e := newEnv(t)
	cmd := exec.Command("bash", "testdata/signed-curl.sh")
	cmd.Env = append(os.Environ(), "API="+e.base, "APPKEY="+appKey, "SECRET="+secret)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"account":"dave"`) {
		t.Fatalf("recipe: %v\n%s", err, out)
	}
}
