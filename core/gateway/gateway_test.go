package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

// startNATS runs an in-process NATS server without a listener.
func startNATS(t testing.TB) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{DontListen: true, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func connectNATS(t testing.TB, ns *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// fakeService answers login (token "tok-<account>"), send (a per-conversation
// counter; the peer and the sender's other sessions get a push) and echo.
// It kicks older sessions of the same device type on login.
type fakeService struct {
	nc       *nats.Conn
	mu       sync.Mutex
	seq      map[string]int64
	nextSess int
	lastIP   string
	// lastSessionReq is the session_id of the last login request.
	lastSessionReq string
	delay          time.Duration
	// beforeLogin, when set, runs before a login answer and returns the
	// answer's super-groups (set before logins start).
	beforeLogin func(lr imapi.LoginReq) []string
	// onBatch, when set (before the first send), takes every send batch
	// instead of the default (each send through send, stopping at the
	// first retryable refusal); it answers through respond, or never.
	onBatch func(req *buswire.Request, sends []imapi.SendReq, respond func(buswire.SendBatchResp))
}

func newFakeService(t testing.TB, nc *nats.Conn) *fakeService {
	f := &fakeService{nc: nc, seq: map[string]int64{}}
	if _, err := nc.QueueSubscribe(buswire.ServiceSubject(buswire.DefaultCluster, buswire.OpSendBatch), buswire.ServiceQueue, f.sendBatch); err != nil {
		t.Fatal(err)
	}
	for op, h := range map[imapi.Op]func(*buswire.Request) (any, error){
		imapi.OpLogin:  f.login,
		imapi.OpLogout: func(*buswire.Request) (any, error) { return nil, nil },
	} {
		h := h
		if _, err := nc.QueueSubscribe(buswire.ServiceSubject(buswire.DefaultCluster, op), buswire.ServiceQueue, func(m *nats.Msg) {
			var req buswire.Request
			if err := json.Unmarshal(m.Data, &req); err != nil {
				_ = m.Respond(mustJSON(buswire.Reply{Code: imapi.ErrBadRequest}))
				return
			}
			if f.delay > 0 {
				time.Sleep(f.delay)
			}
			v, err := h(&req)
			var rep buswire.Reply
			var ie *imapi.Error
			if errors.As(err, &ie) {
				rep = buswire.Reply{Code: ie.Code, Message: ie.Message}
				if ie.RetryAfterMs > 0 {
					rep.Body = mustJSON(ie) // as the service sends a hint
				}
			} else if v != nil {
				rep.Body = mustJSON(v)
			}
			_ = m.Respond(mustJSON(rep))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return f
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (f *fakeService) login(req *buswire.Request) (any, error) {
	var lr imapi.LoginReq
	if err := json.Unmarshal(req.Body, &lr); err != nil {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "%v", err)
	}
	if lr.Token == "busy" {
		return nil, &imapi.Error{Code: imapi.ErrUnavailable, Message: "busy", RetryAfterMs: 250}
	}
	if lr.Token != "tok-"+lr.Account {
		return nil, imapi.Errorf(imapi.ErrUnauthorized, "bad token")
	}
	f.mu.Lock()
	f.nextSess++
	id := fmt.Sprintf("s%d", f.nextSess)
	if lr.SessionID != "" { // chosen by an edge, as the login service honours it
		id = lr.SessionID
	}
	f.lastIP = req.Session.ClientIP
	f.lastSessionReq = lr.SessionID
	f.mu.Unlock()
	_ = f.nc.Publish(buswire.UserSubject(lr.AppKey, lr.Account), mustJSON(buswire.Push{
		Op: imapi.OpKick, Body: mustJSON(imapi.Kick{Code: imapi.ErrKicked, Reason: "new login", By: lr.DeviceID}),
		ExceptSession: id, KickDeviceType: lr.DeviceType,
	}))
	var supers []string
	if f.beforeLogin != nil {
		supers = f.beforeLogin(lr)
	}
	return buswire.LoginReply{LoginResp: imapi.LoginResp{SessionID: id, ServerTime: time.Now().UnixMilli(), HeartbeatSec: 99}, SuperGroups: supers}, nil
}

// sendBatch answers a gateway's send batch as the services do: each send
// in order, and after a retryable refusal only retryable refusals.
func (f *fakeService) sendBatch(m *nats.Msg) {
	var req buswire.Request
	var br buswire.SendBatchReq
	if json.Unmarshal(m.Data, &req) != nil || json.Unmarshal(req.Body, &br) != nil {
		_ = m.Respond(mustJSON(buswire.Reply{Code: imapi.ErrBadRequest}))
		return
	}
	sends := make([]imapi.SendReq, len(br.Sends))
	for i, b := range br.Sends {
		_ = json.Unmarshal(b, &sends[i])
	}
	respond := func(resp buswire.SendBatchResp) { _ = m.Respond(mustJSON(buswire.Reply{Body: mustJSON(resp)})) }
	if f.onBatch != nil {
		f.onBatch(&req, sends, respond)
		return
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	var resp buswire.SendBatchResp
	var tail *imapi.Error
	for _, b := range br.Sends {
		if tail != nil {
			resp.Results = append(resp.Results, buswire.SendResult{Code: tail.Code, Message: tail.Message, RetryAfterMs: tail.RetryAfterMs})
			continue
		}
		one := req
		one.Body = b
		v, err := f.send(&one)
		var ie *imapi.Error
		switch {
		case errors.As(err, &ie):
			resp.Results = append(resp.Results, buswire.SendResult{Code: ie.Code, Message: ie.Message, RetryAfterMs: ie.RetryAfterMs})
			if ie.Code.Retryable() {
				tail = ie
			}
		default:
			ack := v.(imapi.SendAck)
			resp.Results = append(resp.Results, buswire.SendResult{Ack: &ack})
		}
	}
	respond(resp)
}

func (f *fakeService) send(req *buswire.Request) (any, error) {
	var sr imapi.SendReq
	if err := json.Unmarshal(req.Body, &sr); err != nil {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "%v", err)
	}
	if sr.To == "overloaded" {
		return nil, &imapi.Error{Code: imapi.ErrUnavailable, Message: "busy", RetryAfterMs: 25}
	}
	conv := imapi.P2PConvID(req.Session.Account, sr.To)
	f.mu.Lock()
	f.seq[conv]++
	seq := f.seq[conv]
	f.mu.Unlock()
	msg := imapi.Message{MsgID: fmt.Sprintf("m%d", seq), ConvID: conv, ConvType: imapi.ConvP2P, From: req.Session.Account,
		To: sr.To, Seq: seq, ClientMsgID: sr.ClientMsgID, Type: sr.Type, Body: sr.Body}
	push := mustJSON(msg)
	_ = f.nc.Publish(buswire.UserSubject(req.Session.AppKey, sr.To), mustJSON(buswire.Push{Op: imapi.OpPush, Body: push}))
	_ = f.nc.Publish(buswire.UserSubject(req.Session.AppKey, req.Session.Account), mustJSON(buswire.Push{Op: imapi.OpPush, Body: push, ExceptSession: req.Session.SessionID}))
	return imapi.SendAck{MsgID: msg.MsgID, ConvID: conv, Seq: seq}, nil
}

type env struct {
	g   *Gateway
	svc *fakeService
	reg *prometheus.Registry
	key link.KeyPair
	ns  *server.Server
}

func testConfig(t testing.TB, key link.KeyPair) Config {
	cfg := Default()
	cfg.ID = "gw-test"
	cfg.Listen = "127.0.0.1:0"
	cfg.Keys = []KeyConfig{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}
	cfg.DrainTime = config.Duration(200 * time.Millisecond)
	return cfg
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	return newEnvWith(t, mod, Deps{})
}

// newEnvWith is newEnv with extra dependencies (NATS, Registerer are set).
func newEnvWith(t *testing.T, mod func(*Config), deps Deps) *env {
	t.Helper()
	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	ns := startNATS(t)
	svc := newFakeService(t, connectNATS(t, ns))
	cfg := testConfig(t, key)
	if mod != nil {
		mod(&cfg)
	}
	reg := prometheus.NewRegistry()
	deps.NATS, deps.Registerer = connectNATS(t, ns), reg
	g, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	return &env{g: g, svc: svc, reg: reg, key: key, ns: ns}
}

// client is a raw Link client for tests.
type client struct {
	t    testing.TB
	c    *link.Conn
	seq  uint32
	sess string
}

func (e *env) dial(t testing.TB) *client {
	t.Helper()
	nc, err := net.Dial("tcp", e.g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := link.Client(ctx, nc, e.key.ID, e.key.Public, link.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, c: c}
}

func (c *client) request(op imapi.Op, v any) uint32 {
	c.t.Helper()
	c.seq++
	var body []byte
	if v != nil {
		body = mustJSON(v)
	}
	if err := c.c.WriteFrame(link.Frame{Op: op, Seq: c.seq, Body: body}); err != nil {
		c.t.Fatal(err)
	}
	return c.seq
}

func (c *client) read() link.Frame {
	c.t.Helper()
	_ = c.c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := c.c.ReadFrame()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

// response reads frames until the response to seq, returning pushes seen on the way.
func (c *client) response(seq uint32) (link.Frame, []link.Frame) {
	c.t.Helper()
	var pushes []link.Frame
	for {
		f := c.read()
		if f.IsResponse() && f.Seq == seq {
			return f, pushes
		}
		pushes = append(pushes, f)
	}
}

func (e *env) login(t testing.TB, account, device string) *client {
	t.Helper()
	c := e.dial(t)
	seq := c.request(imapi.OpLogin, imapi.LoginReq{AppKey: "app", Account: account, Token: "tok-" + account, DeviceID: account + "-" + device, DeviceType: device})
	f, _ := c.response(seq)
	if f.Code != imapi.OK {
		t.Fatalf("login %s: code %d %s", account, f.Code, f.Body)
	}
	var lr imapi.LoginResp
	if err := json.Unmarshal(f.Body, &lr); err != nil {
		t.Fatal(err)
	}
	if lr.HeartbeatSec != int(e.g.cfg.Heartbeat.D()/time.Second) {
		t.Fatalf("heartbeat_sec %d not the gateway's", lr.HeartbeatSec)
	}
	c.sess = lr.SessionID
	return c
}

func (c *client) expectClosed() {
	c.t.Helper()
	_ = c.c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, err := c.c.ReadFrame()
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
			return
		}
		c.t.Fatalf("expected close, got %v", err)
	}
}

func TestLoginRequestPush(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(t, "alice", "phone")
	bob := e.login(t, "bob", "phone")
	bobPC := e.login(t, "bob", "pc")

	seq := alice.request(imapi.OpSend, imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", ClientMsgID: "c1", Type: "text", Body: json.RawMessage(`{"text":"hi"}`)})
	f, _ := alice.response(seq)
	var ack imapi.SendAck
	if f.Code != 0 || json.Unmarshal(f.Body, &ack) != nil || ack.Seq != 1 {
		t.Fatalf("ack: %d %s", f.Code, f.Body)
	}
	for _, c := range []*client{bob, bobPC} {
		p := c.read()
		var m imapi.Message
		if !p.IsPush() || p.Op != imapi.OpPush || json.Unmarshal(p.Body, &m) != nil || m.Seq != 1 || m.From != "alice" {
			t.Fatalf("push: %+v %s", p, p.Body)
		}
	}
	// Heartbeats are answered by the gateway.
	hb := bob.request(imapi.OpHeartbeat, nil)
	if f, _ := bob.response(hb); f.Code != 0 {
		t.Fatalf("heartbeat code %d", f.Code)
	}
	// An op no service answers: 503 from NATS no-responders.
	u := bob.request(imapi.Op{Service: 9, Command: 9}, map[string]string{})
	if f, _ := bob.response(u); f.Code != imapi.ErrUnavailable {
		t.Fatalf("unanswered op: code %d", f.Code)
	}
	if n := e.g.Sessions(); n != 3 {
		t.Fatalf("%d sessions, want 3", n)
	}
	// Logout closes the session.
	lo := bobPC.request(imapi.OpLogout, nil)
	if f, _ := bobPC.response(lo); f.Code != 0 {
		t.Fatalf("logout code %d", f.Code)
	}
	bobPC.expectClosed()
	waittest.Until(t, 5*time.Second, "2 sessions", func() bool { return e.g.Sessions() == 2 })
}

func TestRefusals(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConnectionsPerIP = 3; c.MaxFrameSize = 4096 })
	t.Run("not logged in", func(t *testing.T) {
		c := e.dial(t)
		seq := c.request(imapi.OpSend, imapi.SendReq{To: "bob"})
		f := c.read()
		if f.Seq != seq || f.Code != imapi.ErrNotLoggedIn {
			t.Fatalf("got code %d", f.Code)
		}
		c.expectClosed()
	})
	t.Run("bad token", func(t *testing.T) {
		c := e.dial(t)
		seq := c.request(imapi.OpLogin, imapi.LoginReq{AppKey: "app", Account: "eve", Token: "nope"})
		if f := c.read(); f.Seq != seq || f.Code != imapi.ErrUnauthorized {
			t.Fatalf("got code %d", f.Code)
		}
		c.expectClosed()
	})
	t.Run("unsafe account", func(t *testing.T) {
		c := e.dial(t)
		c.request(imapi.OpLogin, imapi.LoginReq{AppKey: "app", Account: "a.>", Token: "tok-a.>"})
		if f := c.read(); f.Code != imapi.ErrUnauthorized {
			t.Fatalf("got code %d", f.Code)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		nc, err := net.Dial("tcp", e.g.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_, _ = nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Read(make([]byte, 10)); err == nil {
			t.Fatal("garbage answered")
		}
	})
	t.Run("oversize frame", func(t *testing.T) {
		c := e.login(t, "frank", "phone")
		big := strings.Repeat("x", 10000)
		lim := link.Limits{CompressThreshold: -1}
		_ = lim
		// The client's own limit is the default (1 MiB), the server's 4 KiB.
		c.request(imapi.OpSend, imapi.SendReq{To: "bob", Body: json.RawMessage(`"` + big + `"`)})
		c.expectClosed()
	})
	waittest.Until(t, 5*time.Second, "the three protocol errors counted", func() bool {
		return testutil.ToFloat64(e.g.m.protocolErrors.WithLabelValues("frame_too_large")) == 1 &&
			testutil.ToFloat64(e.g.m.protocolErrors.WithLabelValues("not_logged_in")) == 1 &&
			testutil.ToFloat64(e.g.m.protocolErrors.WithLabelValues("handshake")) == 1
	})
	t.Run("per ip", func(t *testing.T) {
		var conns []net.Conn
		for i := 0; i < 4; i++ {
			nc, err := net.Dial("tcp", e.g.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			conns = append(conns, nc)
		}
		waittest.Until(t, 5*time.Second, "a per-IP refusal counted", func() bool { return testutil.ToFloat64(e.g.m.refused.WithLabelValues("per_ip")) >= 1 })
	})
}

func TestKickSameDeviceType(t *testing.T) {
	e := newEnv(t, nil)
	old := e.login(t, "carol", "phone")
	pc := e.login(t, "carol", "pc")
	e.login(t, "carol", "phone")
	f := old.read()
	var k imapi.Kick
	if f.Op != imapi.OpKick || json.Unmarshal(f.Body, &k) != nil || k.Code != imapi.ErrKicked {
		t.Fatalf("got %+v %s", f, f.Body)
	}
	old.expectClosed()
	// The pc session stays.
	hb := pc.request(imapi.OpHeartbeat, nil)
	if f, _ := pc.response(hb); f.Code != 0 {
		t.Fatal("pc session lost")
	}
	waittest.Until(t, 5*time.Second, "2 sessions", func() bool { return e.g.Sessions() == 2 })
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Heartbeat = config.Duration(time.Second)
		c.IdleTimeout = config.Duration(1500 * time.Millisecond)
	})
	c := e.login(t, "dave", "phone")
	start := time.Now()
	c.expectClosed()
	if d := time.Since(start); d < time.Second || d > 4*time.Second {
		t.Fatalf("closed after %s, want about 1.5s", d)
	}
	waittest.Until(t, 5*time.Second, "no session left", func() bool { return e.g.Sessions() == 0 })
}

// TestRateLimit: requests over the session's rate are refused (sends are
// paced instead: TestSendRatePacesInOrder).
func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RequestRate = 1; c.RequestBurst = 2 })
	c := e.login(t, "erin", "phone")
	codes := map[imapi.Code]int{}
	for i := 0; i < 5; i++ {
		seq := c.request(imapi.OpSync, imapi.SyncReq{ConvID: fmt.Sprint(i)})
		f, _ := c.response(seq)
		codes[f.Code]++
	}
	if codes[imapi.ErrRateLimited] < 2 || len(codes) < 2 {
		t.Fatalf("codes %v", codes)
	}
}

func TestSlowConsumer(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SendQueue = 8; c.WriteTimeout = config.Duration(30 * time.Second) })
	slow := e.login(t, "slow", "phone")
	_ = slow // never reads
	nc := connectNATS(t, e.ns)
	body := mustJSON(imapi.Message{Body: json.RawMessage(`"` + strings.Repeat("z", 60000) + `"`)})
	for i := 0; i < 2000 && e.g.Sessions() > 0; i++ {
		_ = nc.Publish(buswire.UserSubject("app", "slow"), mustJSON(buswire.Push{Op: imapi.OpPush, Body: body}))
		if i%50 == 0 {
			_ = nc.Flush()
		}
	}
	waittest.Until(t, 5*time.Second, "no session left", func() bool { return e.g.Sessions() == 0 })
	if testutil.ToFloat64(e.g.m.slowConsumers) != 1 {
		t.Fatal("slow consumer not counted")
	}
}

func TestDrain(t *testing.T) {
	e := newEnv(t, nil)
	var cs []*client
	for i := 0; i < 5; i++ {
		cs = append(cs, e.login(t, fmt.Sprintf("u%d", i), "phone"))
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- e.g.Shutdown(ctx)
	}()
	for _, c := range cs {
		f := c.read()
		var k imapi.Kick
		if f.Op != imapi.OpKick || json.Unmarshal(f.Body, &k) != nil || k.Code != imapi.ErrUnavailable || k.Reason != ReasonDraining {
			t.Fatalf("got %+v %s", f, f.Body)
		}
		c.expectClosed()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", e.g.Addr().String(), time.Second); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestProxyHeader(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				if trusted {
					c.TrustedProxies = []string{"127.0.0.0/8"}
				}
			})
			nc, err := net.Dial("tcp", e.g.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 5555}, nc.LocalAddr())
			h.SourceAddr = &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 5555}
			h.DestinationAddr = &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7710}
			if _, err := h.WriteTo(nc); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := link.Client(ctx, nc, e.key.ID, e.key.Public, link.Limits{})
			if !trusted {
				if err == nil {
					t.Fatal("handshake after a PROXY header from an untrusted address succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cl := &client{t: t, c: c}
			seq := cl.request(imapi.OpLogin, imapi.LoginReq{AppKey: "app", Account: "pat", Token: "tok-pat"})
			if f, _ := cl.response(seq); f.Code != 0 {
				t.Fatalf("login code %d", f.Code)
			}
			e.svc.mu.Lock()
			ip := e.svc.lastIP
			e.svc.mu.Unlock()
			if ip != "203.0.113.7" {
				t.Fatalf("client ip %q, want the PROXY source", ip)
			}
		})
	}
}

// fakeTransport is a WebLink-like transport for the session API.
type fakeTransport struct {
	mu     sync.Mutex
	pushes []imapi.Op
	kicked *imapi.Kick
	full   atomic.Bool
}

func (f *fakeTransport) Push(op imapi.Op, body []byte) bool {
	if f.full.Load() {
		return false
	}
	f.mu.Lock()
	f.pushes = append(f.pushes, op)
	f.mu.Unlock()
	return true
}

func (f *fakeTransport) Close(k imapi.Kick) {
	f.mu.Lock()
	f.kicked = &k
	f.mu.Unlock()
}

func TestSessionAPI(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Listen = "" })
	ctx := context.Background()
	tr := &fakeTransport{}
	body := mustJSON(imapi.LoginReq{AppKey: "app", Account: "web", Token: "tok-web", DeviceType: "web"})
	s, resp, err := e.g.Login(ctx, tr, "198.51.100.1", body)
	if err != nil {
		t.Fatal(err)
	}
	var lr imapi.LoginResp
	if json.Unmarshal(resp, &lr) != nil || lr.SessionID != s.ID() {
		t.Fatalf("login resp %s", resp)
	}
	if _, _, err := e.g.Login(ctx, &fakeTransport{}, "198.51.100.1", mustJSON(imapi.LoginReq{AppKey: "app", Account: "web", Token: "x"})); err == nil {
		t.Fatal("bad token accepted")
	} else if ie := new(imapi.Error); !errors.As(err, &ie) || ie.Code != imapi.ErrUnauthorized {
		t.Fatalf("got %v", err)
	}
	r := s.Request(ctx, imapi.OpSend, mustJSON(imapi.SendReq{To: "web", ClientMsgID: "1"}))
	if r.Code != 0 {
		t.Fatalf("send code %d", r.Code)
	}
	if r := s.Request(ctx, imapi.OpSend, []byte("{not json")); r.Code != imapi.ErrBadRequest {
		t.Fatalf("bad json code %d", r.Code)
	}
	// The message to self reaches the session (no except on the peer push).
	waittest.Until(t, 5*time.Second, "the push", func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return len(tr.pushes) == 1 })
	// A second web login kicks the first through the session API.
	tr2 := &fakeTransport{}
	if _, _, err := e.g.Login(ctx, tr2, "198.51.100.1", body); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 5*time.Second, "the kick", func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.kicked != nil })
	if !s.Closed() || tr.kicked.Code != imapi.ErrKicked {
		t.Fatalf("kick %+v", tr.kicked)
	}
	if r := s.Request(ctx, imapi.OpSync, nil); r.Code != imapi.ErrNotLoggedIn {
		t.Fatalf("request after kick: code %d", r.Code)
	}
	// A send of a session that ended is retryable: the client resends it
	// on its next session.
	if r := s.Request(ctx, imapi.OpSend, nil); r.Code != imapi.ErrUnavailable {
		t.Fatalf("send after kick: code %d", r.Code)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want string
	}{
		{"ok", "listen: 127.0.0.1:0\nkeys: [{id: k1, private_key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=}]\n", ""},
		{"no keys", "listen: 127.0.0.1:0\n", "keys"},
		{"bad key", "keys: [{id: k1, private_key: xx}]\n", "private_key"},
		{"bad cidr", "keys: [{id: k1, private_key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=}]\ntrusted_proxies: [nope]\n", "trusted_proxies"},
		{"idle", "keys: [{id: k1, private_key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=}]\nheartbeat: 30s\nidle_timeout: 10s\n", "idle_timeout"},
		{"unknown key", "listn: x\n", "listn"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			err := config.Decode("gw.yaml", []byte(tc.yaml), &cfg)
			if tc.want == "" && err != nil {
				t.Fatal(err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want an error about %s", err, tc.want)
			}
		})
	}
}

// TestPlainListener: the pre-terminated Link listener serves frames without
// a handshake from trusted addresses (with the PROXY source as client IP),
// and refuses every other address and a trusted one without PROXY header.
func TestPlainListener(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted string
		proxy   bool
		ok      bool
	}{
		{"trusted", "127.0.0.0/8", true, true},
		{"untrusted", "192.0.2.0/24", true, false},
		{"no proxy header", "127.0.0.0/8", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				c.TrustedProxies = []string{tc.trusted}
				c.PlainListen = "127.0.0.1:0"
			})
			nc, err := net.Dial("tcp", e.g.PlainAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if tc.proxy {
				h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 5555},
					&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7712})
				if _, err := h.WriteTo(nc); err != nil {
					t.Fatal(err)
				}
			}
			cl := &client{t: t, c: link.NewPlain(nc, link.Limits{})}
			if !tc.ok {
				_ = cl.c.WriteFrame(link.Frame{Op: imapi.OpLogin, Seq: 1, Body: mustJSON(imapi.LoginReq{AppKey: "app", Account: "pat", Token: "tok-pat"})})
				cl.expectClosed()
				reason := "untrusted_plain"
				if !tc.proxy {
					reason = "proxy_header"
				}
				waittest.Until(t, 5*time.Second, "the refusal counted", func() bool { return testutil.ToFloat64(e.g.m.refused.WithLabelValues(reason)) == 1 })
				return
			}
			seq := cl.request(imapi.OpLogin, imapi.LoginReq{AppKey: "app", Account: "pat", Token: "tok-pat"})
			if f, _ := cl.response(seq); f.Code != 0 {
				t.Fatalf("login code %d", f.Code)
			}
			e.svc.mu.Lock()
			ip := e.svc.lastIP
			e.svc.mu.Unlock()
			if ip != "203.0.113.9" {
				t.Fatalf("client ip %q, want the PROXY source", ip)
			}
			seq = cl.request(imapi.OpHeartbeat, nil)
			if f, _ := cl.response(seq); f.Code != 0 {
				t.Fatalf("heartbeat code %d", f.Code)
			}
		})
	}
}

// TestBusyLoginHint: a login the service refuses as busy reaches the
// client with the service's retry-after hint in its error body.
func TestBusyLoginHint(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	seq := c.request(imapi.OpLogin, imapi.LoginReq{AppKey: "app", Account: "alice", Token: "busy", DeviceType: "phone"})
	f, _ := c.response(seq)
	var got imapi.Error
	if err := json.Unmarshal(f.Body, &got); err != nil {
		t.Fatal(err)
	}
	if f.Code != imapi.ErrUnavailable || got.RetryAfterMs != 250 {
		t.Fatalf("login answered %d %+v, want 503 with retry_after_ms 250", f.Code, got)
	}
}
