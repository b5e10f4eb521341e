package service_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
	"github.com/longlink/longlink/pkg/config"
)

const appKey = "app1"

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is one service node on a real embedded NATS and a real store.
type env struct {
	t      *testing.T
	bus    *bus.Bus
	nc     *nats.Conn
	st     store.Store
	stCfg  store.Config
	svc    *service.Service
	clock  *clock
	tokens map[string]string
}

type envOpt func(*service.Config)

func withDevices(p string) envOpt {
	return func(c *service.Config) { c.Apps[0].Devices = p }
}

func newEnv(t *testing.T, driver string, opts ...envOpt) *env {
	t.Helper()
	return newEnvWrapped(t, driver, nil, opts...)
}

// newEnvWrapped is newEnv with the service seeing the store through wrap
// (a store that misbehaves on purpose); env.st stays the real store.
func newEnvWrapped(t *testing.T, driver string, wrap func(store.Store) store.Store, opts ...envOpt) *env {
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
	st, stCfg := storetest.Open(t, driver)
	e := &env{t: t, bus: b, nc: b.Conn(), st: st, stCfg: stCfg, clock: &clock{}}
	e.clock.ns.Store(time.Now().UnixNano())
	cfg := service.Default()
	cfg.Apps = []service.AppConfig{{AppKey: appKey, Secret: config.NewSecret("0123456789abcdef-secret"), Devices: imapi.DevicesKickSameType, Heartbeat: config.Duration(25 * time.Second)}}
	cfg.RecallWindow = config.Duration(2 * time.Minute)
	cfg.MaxGroupMembers = 5
	for _, o := range opts {
		o(&cfg)
	}
	svcStore := st
	if wrap != nil {
		svcStore = wrap(st)
	}
	svc, err := service.New(cfg, service.Deps{NATS: e.nc, Store: svcStore, Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			t.Errorf("service shutdown: %v", err)
		}
	})
	e.svc = svc
	users, err := service.Seed(ctx, st, appKey, []service.SeedUser{{Account: "alice"}, {Account: "bob"}, {Account: "carol"}, {Account: "dave"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.tokens = map[string]string{}
	for _, u := range users {
		e.tokens[u.Account] = u.Token
	}
	return e
}

// client is a logged-in session as a gateway would hold it: it sends bus
// requests and receives the account's pushes (filtered like a gateway does).
type client struct {
	e      *env
	sess   buswire.Session
	mu     sync.Mutex
	pushes []buswire.Push
	sub    *nats.Subscription
	notify chan struct{}
}

func (e *env) login(account, deviceType string) *client {
	e.t.Helper()
	c := &client{e: e, notify: make(chan struct{}, 1024)}
	var resp imapi.LoginResp
	if code := c.call(imapi.OpLogin, &imapi.LoginReq{AppKey: appKey, Account: account, Token: e.tokens[account], DeviceID: account + "-" + deviceType, DeviceType: deviceType}, &resp); code != imapi.OK {
		e.t.Fatalf("login %s: code %v", account, code)
	}
	c.sess = buswire.Session{AppKey: appKey, Account: account, DeviceType: deviceType, DeviceID: account + "-" + deviceType, SessionID: resp.SessionID, Gateway: "test"}
	c.subscribe()
	return c
}

// offline is a session that is not subscribed to pushes (a device that is
// not connected right now, later syncing).
func (e *env) offline(account string) *client {
	return &client{e: e, sess: buswire.Session{AppKey: appKey, Account: account, SessionID: "offline-" + account}, notify: make(chan struct{}, 1)}
}

func (c *client) subscribe() {
	sub, err := c.e.nc.Subscribe(buswire.UserSubject(appKey, c.sess.Account), func(m *nats.Msg) {
		var p buswire.Push
		if err := json.Unmarshal(m.Data, &p); err != nil {
			c.e.t.Errorf("bad push: %v", err)
			return
		}
		if p.ExceptSession == c.sess.SessionID || (p.OnlySession != "" && p.OnlySession != c.sess.SessionID) {
			return
		}
		c.mu.Lock()
		c.pushes = append(c.pushes, p)
		c.mu.Unlock()
		select {
		case c.notify <- struct{}{}:
		default:
		}
	})
	if err != nil {
		c.e.t.Fatal(err)
	}
	if err := c.e.nc.Flush(); err != nil {
		c.e.t.Fatal(err)
	}
	c.sub = sub
	c.e.t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// call sends a request and decodes the reply body into resp.
func (c *client) call(op imapi.Op, req, resp any) imapi.Code {
	c.e.t.Helper()
	code, _ := c.callMsg(op, req, resp)
	return code
}

func (c *client) callMsg(op imapi.Op, req, resp any) (imapi.Code, string) {
	c.e.t.Helper()
	var body []byte
	if req != nil {
		var err error
		if body, err = json.Marshal(req); err != nil {
			c.e.t.Fatal(err)
		}
	}
	data, _ := json.Marshal(&buswire.Request{Session: c.sess, Body: body})
	m, err := c.e.nc.Request(buswire.ServiceSubject(buswire.DefaultCluster, op), data, 5*time.Second)
	if err != nil {
		c.e.t.Fatalf("%s: %v", op, err)
	}
	var reply buswire.Reply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		c.e.t.Fatalf("%s: reply: %v", op, err)
	}
	if reply.Code == imapi.OK && resp != nil {
		if err := json.Unmarshal(reply.Body, resp); err != nil {
			c.e.t.Fatalf("%s: reply body %s: %v", op, reply.Body, err)
		}
	}
	return reply.Code, reply.Message
}

func (c *client) send(to string, cmid, text string, mentions ...string) imapi.SendAck {
	c.e.t.Helper()
	var ack imapi.SendAck
	body, _ := json.Marshal(map[string]string{"text": text})
	if code, msg := c.callMsg(imapi.OpSend, &imapi.SendReq{ConvType: imapi.ConvP2P, To: to, ClientMsgID: cmid, Type: "text", Body: body, Mentions: mentions}, &ack); code != imapi.OK {
		c.e.t.Fatalf("send to %s: %v %s", to, code, msg)
	}
	return ack
}

// waitPushes waits until n pushes of op arrived and returns them.
func (c *client) waitPushes(op imapi.Op, n int) []buswire.Push {
	c.e.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		got := c.pushesOf(op)
		if len(got) >= n {
			return got
		}
		select {
		case <-c.notify:
		case <-deadline:
			c.e.t.Fatalf("%s: %d %s pushes, want %d", c.sess.Account, len(got), op, n)
		}
	}
}

func (c *client) pushesOf(op imapi.Op) []buswire.Push {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []buswire.Push
	for _, p := range c.pushes {
		if p.Op == op {
			out = append(out, p)
		}
	}
	return out
}

// quiet asserts that no push of op arrives within a short while.
func (c *client) quiet(op imapi.Op, have int) {
	c.e.t.Helper()
	_ = c.e.nc.Flush()
	time.Sleep(50 * time.Millisecond)
	if got := c.pushesOf(op); len(got) != have {
		c.e.t.Fatalf("%s: %d %s pushes, want %d", c.sess.Account, len(got), op, have)
	}
}

func decodePush[T any](t *testing.T, p buswire.Push) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(p.Body, &v); err != nil {
		t.Fatalf("push body %s: %v", p.Body, err)
	}
	return v
}

// drivers runs fn on SQLite, and on PostgreSQL when it is reachable (always
// in integration mode).
func drivers(t *testing.T, fn func(t *testing.T, driver string)) {
	for _, d := range storetest.Drivers {
		t.Run(d, func(t *testing.T) { fn(t, d) })
	}
}
