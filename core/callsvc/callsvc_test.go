package callsvc

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

const testSecret = "call-secret-0123456789"

// startNATS runs an embedded NATS server on a random local port.
func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); ns.Shutdown() })
	return nc
}

func testConfig() Config {
	cfg := Default()
	cfg.Secrets = []turncred.Secret{{ID: "k1", Value: config.NewSecret(testSecret)}}
	cfg.Servers = []ServerConfig{
		{Site: "fra", URLs: []string{"turn:198.51.100.1:3478?transport=udp", "turns:turn-fra.example.com:5349?transport=tcp"}, ClientCIDRs: []string{"203.0.113.0/24"}},
		{Site: "sgp", URLs: []string{"turn:198.51.100.2:3478?transport=udp"}, ClientCIDRs: []string{"192.0.2.0/24", "203.0.113.128/25"}},
		{Site: "iad", URLs: []string{"turn:198.51.100.3:3478?transport=udp"}},
	}
	cfg.MaxServers = 2
	return cfg
}

type fixture struct {
	nc  *nats.Conn
	svc *Service
	reg *prometheus.Registry
	now time.Time
}

func newFixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	f := &fixture{nc: startNATS(t), reg: prometheus.NewRegistry(), now: time.Unix(1_900_000_000, 0)}
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	svc, err := New(cfg, Deps{NATS: f.nc, Registerer: f.reg, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
	f.svc = svc
	return f
}

func (f *fixture) request(t *testing.T, sess buswire.Session, op imapi.Op, body any) buswire.Reply {
	t.Helper()
	b, _ := json.Marshal(body)
	env, _ := json.Marshal(buswire.Request{Session: sess, Body: b})
	msg, err := f.nc.Request(buswire.ServiceSubject(buswire.DefaultCluster, op), env, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r buswire.Reply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func alice(ip string) buswire.Session {
	return buswire.Session{AppKey: "app", Account: "alice", DeviceID: "a-phone", SessionID: "s-alice", ClientIP: ip}
}

func TestTurnCredentialsOverBus(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name  string
		ip    string
		ttl   int
		sites []string
		ttlS  int
	}{
		{name: "fra network", ip: "203.0.113.7", sites: []string{"fra", "sgp"}, ttlS: 12 * 3600},
		{name: "longest prefix wins", ip: "203.0.113.200", sites: []string{"sgp", "fra"}, ttlS: 12 * 3600},
		{name: "sgp network", ip: "192.0.2.9", ttl: 600, sites: []string{"sgp", "fra"}, ttlS: 600},
		{name: "unknown network keeps config order", ip: "8.8.8.8", ttl: 999999, sites: []string{"fra", "sgp"}, ttlS: 24 * 3600},
		{name: "no client ip", ip: "", sites: []string{"fra", "sgp"}, ttlS: 12 * 3600},
	}
	kr, _ := turncred.NewKeyring([]turncred.Secret{{ID: "k1", Value: config.NewSecret(testSecret)}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.request(t, alice(tt.ip), imapi.OpTurnCredentials, imapi.TurnCredentialsReq{TTLSec: tt.ttl})
			if r.Code != imapi.OK {
				t.Fatalf("code %v %s", r.Code, r.Message)
			}
			var c imapi.TurnCredentials
			if err := json.Unmarshal(r.Body, &c); err != nil {
				t.Fatal(err)
			}
			var sites []string
			for _, s := range c.Servers {
				sites = append(sites, s.Site)
			}
			if strings.Join(sites, ",") != strings.Join(tt.sites, ",") {
				t.Fatalf("sites %v, want %v", sites, tt.sites)
			}
			if c.TTLSec != tt.ttlS || c.Expires != f.now.Unix()+int64(tt.ttlS) {
				t.Fatalf("ttl %d expires %d", c.TTLSec, c.Expires)
			}
			u, id, err := kr.Verify(c.Username, c.Password, f.now)
			if err != nil || id != "k1" || u.AppKey != "app" || u.Account != "alice" {
				t.Fatalf("credential does not verify: %+v %q %v", u, id, err)
			}
		})
	}
	if got := testutil.ToFloat64(f.svc.m.issued); got != float64(len(tests)) {
		t.Fatalf("issued = %v", got)
	}
}

func TestNotLoggedIn(t *testing.T) {
	f := newFixture(t, nil)
	r := f.request(t, buswire.Session{}, imapi.OpTurnCredentials, nil)
	if r.Code != imapi.ErrNotLoggedIn {
		t.Fatalf("code %v", r.Code)
	}
}

func TestSecretRotationSignsWithNewest(t *testing.T) {
	f := newFixture(t, nil)
	if err := f.svc.SetSecrets([]turncred.Secret{
		{ID: "k2", Value: config.NewSecret("next-secret-0123456789")},
		{ID: "k1", Value: config.NewSecret(testSecret)},
	}); err != nil {
		t.Fatal(err)
	}
	c, err := f.svc.Credentials(context.Background(), "app", "alice", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Password != turncred.Password("next-secret-0123456789", c.Username) {
		t.Fatal("not signed with the newest secret")
	}
}

func subscribePushes(t *testing.T, nc *nats.Conn, appkey, account string) <-chan buswire.Push {
	t.Helper()
	ch := make(chan buswire.Push, 16)
	sub, err := nc.Subscribe(buswire.UserSubject(appkey, account), func(m *nats.Msg) {
		var p buswire.Push
		if json.Unmarshal(m.Data, &p) == nil {
			ch <- p
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	_ = nc.Flush()
	return ch
}

func nextEvent(t *testing.T, ch <-chan buswire.Push) (imapi.CallEvent, buswire.Push) {
	t.Helper()
	select {
	case p := <-ch:
		if p.Op != imapi.OpCallEvent {
			t.Fatalf("push op %v", p.Op)
		}
		var ev imapi.CallEvent
		if err := json.Unmarshal(p.Body, &ev); err != nil {
			t.Fatal(err)
		}
		return ev, p
	case <-time.After(2 * time.Second):
		t.Fatal("no push")
	}
	return imapi.CallEvent{}, buswire.Push{}
}

func TestCallSignalling(t *testing.T) {
	f := newFixture(t, nil)
	toBob := subscribePushes(t, f.nc, "app", "bob")
	toAlice := subscribePushes(t, f.nc, "app", "alice")
	bob := buswire.Session{AppKey: "app", Account: "bob", DeviceID: "b-pc", SessionID: "s-bob"}

	send := func(sess buswire.Session, sig imapi.CallSignal) {
		t.Helper()
		r := f.request(t, sess, imapi.OpCallSignal, sig)
		if r.Code != imapi.OK {
			t.Fatalf("%s: code %v %s", sig.Kind, r.Code, r.Message)
		}
	}
	send(alice(""), imapi.CallSignal{CallID: "c1", To: "bob", Kind: imapi.CallInvite, Media: "video", Payload: json.RawMessage(`{"sdp":"v=0"}`)})
	ev, _ := nextEvent(t, toBob)
	if ev.Kind != imapi.CallInvite || ev.From != "alice" || ev.FromDevice != "a-phone" || ev.Media != "video" || string(ev.Payload) != `{"sdp":"v=0"}` {
		t.Fatalf("invite event %+v", ev)
	}
	send(bob, imapi.CallSignal{CallID: "c1", To: "alice", Kind: imapi.CallRinging})
	if ev, _ := nextEvent(t, toAlice); ev.Kind != imapi.CallRinging || ev.From != "bob" {
		t.Fatalf("ringing %+v", ev)
	}
	send(bob, imapi.CallSignal{CallID: "c1", To: "alice", Kind: imapi.CallAccept, Payload: json.RawMessage(`{"sdp":"answer"}`)})
	if ev, _ := nextEvent(t, toAlice); ev.Kind != imapi.CallAccept {
		t.Fatalf("accept %+v", ev)
	}
	// Bob's other devices hear about the accept, not the session that sent it.
	ev, p := nextEvent(t, toBob)
	if ev.Kind != imapi.CallAccept || p.ExceptSession != "s-bob" {
		t.Fatalf("accept echo %+v except %q", ev, p.ExceptSession)
	}
	send(alice(""), imapi.CallSignal{CallID: "c1", To: "bob", Kind: imapi.CallCandidate, Payload: json.RawMessage(`"candidate:1 1 udp 2122260223 198.51.100.1 3478 typ relay"`)})
	if ev, _ := nextEvent(t, toBob); ev.Kind != imapi.CallCandidate {
		t.Fatalf("candidate %+v", ev)
	}
	send(alice(""), imapi.CallSignal{CallID: "c1", To: "bob", Kind: imapi.CallHangup})
	if ev, _ := nextEvent(t, toBob); ev.Kind != imapi.CallHangup {
		t.Fatalf("hangup %+v", ev)
	}
	if got := testutil.ToFloat64(f.svc.m.signals.WithLabelValues(imapi.CallInvite)); got != 1 {
		t.Fatalf("invites counted %v", got)
	}
}

func TestCallSignalRefused(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.SignalBurst = 3; c.SignalsPerSecond = 0.001 })
	big := json.RawMessage(`"` + strings.Repeat("a", 20000) + `"`)
	tests := []struct {
		name string
		sig  imapi.CallSignal
		code imapi.Code
	}{
		{name: "bad kind", sig: imapi.CallSignal{CallID: "c", To: "bob", Kind: "explode"}, code: imapi.ErrBadRequest},
		{name: "to self", sig: imapi.CallSignal{CallID: "c", To: "alice", Kind: imapi.CallInvite}, code: imapi.ErrBadRequest},
		{name: "subject injection", sig: imapi.CallSignal{CallID: "c", To: "bob.>", Kind: imapi.CallInvite}, code: imapi.ErrBadRequest},
		{name: "bad call id", sig: imapi.CallSignal{CallID: "c 1", To: "bob", Kind: imapi.CallInvite}, code: imapi.ErrBadRequest},
		{name: "bad media", sig: imapi.CallSignal{CallID: "c", To: "bob", Kind: imapi.CallInvite, Media: "smell"}, code: imapi.ErrBadRequest},
		{name: "payload too large", sig: imapi.CallSignal{CallID: "c", To: "bob", Kind: imapi.CallInvite, Payload: big}, code: imapi.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := f.request(t, alice(""), imapi.OpCallSignal, tt.sig); r.Code != tt.code {
				t.Fatalf("code %v, want %v", r.Code, tt.code)
			}
		})
	}
	t.Run("rate limited", func(t *testing.T) {
		ok := imapi.CallSignal{CallID: "c", To: "bob", Kind: imapi.CallCandidate}
		for i := 0; i < 3; i++ {
			if r := f.request(t, alice(""), imapi.OpCallSignal, ok); r.Code != imapi.OK {
				t.Fatalf("signal %d: %v", i, r.Code)
			}
		}
		if r := f.request(t, alice(""), imapi.OpCallSignal, ok); r.Code != imapi.ErrRateLimited {
			t.Fatalf("code %v, want rate limited", r.Code)
		}
		if testutil.ToFloat64(f.svc.m.refusals.WithLabelValues("rate_limited")) != 1 {
			t.Fatal("rate limit refusal not counted")
		}
	})
}

func TestIssueForApp(t *testing.T) {
	f := newFixture(t, nil)
	out, err := f.svc.IssueForApp(context.Background(), "app", []byte(`{"account":"carol","ttl_sec":300,"client_ip":"192.0.2.1"}`))
	if err != nil {
		t.Fatal(err)
	}
	c := out.(imapi.TurnCredentials)
	if !strings.HasSuffix(c.Username, ":app:carol") || c.TTLSec != 300 || c.Servers[0].Site != "sgp" {
		t.Fatalf("%+v", c)
	}
	for _, body := range []string{`{}`, `{"account":"a:b"}`, `nope`} {
		if _, err := f.svc.IssueForApp(context.Background(), "app", []byte(body)); err == nil {
			t.Fatalf("%s accepted", body)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := Default()
	err := config.Decode("calls.yaml", []byte(`
servers:
  - site: x
    urls: ["http://nope"]
    client_cidrs: ["300.0.0.0/8"]
max_servers: 0
`), &cfg)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"secrets", "urls[0]", "client_cidrs[0]", "max_servers"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}
