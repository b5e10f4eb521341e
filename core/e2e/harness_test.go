package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/pkg/config"
)

const appKey = "demo"

// testCore is one IM core node built from its parts, the way the core
// composition root builds it: embedded bus, SQLite store, services, gateway.
type testCore struct {
	t    testing.TB
	dir  string
	addr string
	key  link.KeyPair
	reg  *prometheus.Registry
	bus  *bus.Bus
	st   store.Store
	svc  *service.Service
	gw   *gateway.Gateway
	down bool
}

type coreOpts struct {
	devices   string
	blacklist string // the app's blacklist mode (service.BlacklistInbound by default)
	gwMod     func(*gateway.Config)
	stMod     func(*store.Config)
}

func logger() *slog.Logger {
	if os.Getenv("E2E_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startCore starts a node on dir; addr "" picks a free port.
func startCore(t testing.TB, dir, addr string, key link.KeyPair, o coreOpts) *testCore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &testCore{t: t, dir: dir, key: key, reg: prometheus.NewRegistry()}
	log := logger()
	bcfg := bus.Default()
	bcfg.Listen = ""
	bcfg.StoreDir = filepath.Join(dir, "nats")
	b, err := bus.New(bcfg, bus.Deps{Logger: log, Registerer: c.reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c.bus = b
	scfg := store.Default()
	scfg.Path = filepath.Join(dir, "core.db")
	scfg.Synchronous = "normal"
	if o.stMod != nil {
		o.stMod(&scfg)
	}
	st, err := store.Open(ctx, scfg, store.Deps{Logger: log, Registerer: c.reg})
	if err != nil {
		t.Fatal(err)
	}
	c.st = st
	vcfg := service.Default()
	devices := o.devices
	if devices == "" {
		devices = imapi.DevicesKickSameType
	}
	vcfg.Apps = []service.AppConfig{{AppKey: appKey, Secret: config.NewSecret("app-secret-for-e2e-tests"), Devices: devices, Heartbeat: config.Duration(30 * time.Second), Blacklist: o.blacklist}}
	svc, err := service.New(vcfg, service.Deps{NATS: b.Conn(), Store: st, Logger: log, Registerer: c.reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c.svc = svc
	gcfg := gateway.Default()
	gcfg.ID = "gw-e2e"
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	gcfg.Listen = addr
	gcfg.Keys = []gateway.KeyConfig{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}
	gcfg.DrainTime = config.Duration(100 * time.Millisecond)
	if o.gwMod != nil {
		o.gwMod(&gcfg)
	}
	gw, err := gateway.New(gcfg, gateway.Deps{NATS: b.Conn(), Registerer: c.reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c.gw = gw
	c.addr = gw.Addr().String()
	t.Cleanup(c.stop)
	return c
}

// stop shuts the node down gracefully (idempotent).
func (c *testCore) stop() {
	if c.down {
		return
	}
	c.down = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.gw.Shutdown(ctx)
	_ = c.svc.Shutdown(ctx)
	_ = c.bus.Shutdown(ctx)
	_ = c.st.Close()
}

// crash stops the node without any graceful step: connections and the
// listener are cut, the bus dies with whatever it carried, the services are
// abandoned mid-request. Only what the store committed survives.
func (c *testCore) crash() {
	c.down = true
	_ = c.gw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_ = c.bus.Shutdown(ctx)
	_ = c.svc.Shutdown(ctx)
	_ = c.st.Close()
}

// users creates accounts and returns their tokens.
func (c *testCore) users(accounts ...string) map[string]string {
	c.t.Helper()
	var in []service.SeedUser
	for _, a := range accounts {
		in = append(in, service.SeedUser{Account: a})
	}
	out, err := service.Seed(context.Background(), c.st, appKey, in, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	m := map[string]string{}
	for _, u := range out {
		m[u.Account] = u.Token
	}
	return m
}

func newKey(t testing.TB) link.KeyPair {
	k, err := link.GenerateKey("e2e-1")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// client is an SDK client with its events collected.
type client struct {
	t       testing.TB
	account string
	*sdk.Client
	mu       sync.Mutex
	msgs     []imapi.Message
	receipts []imapi.Receipt
	recalls  []imapi.Recalled
	groups   []imapi.GroupEvent
	kicks    []imapi.Kick
	notices  []imapi.Notice
	profiles []imapi.Profile
	states   []sdk.State
	roomMsgs []imapi.RoomMessage
	batches  int
	roomEvs  []imapi.RoomEvent
	rejoins  []sdk.RoomRejoin
	resets   []sdk.Relations
	supers   []imapi.SuperEvent
	changed  chan struct{}
	done     chan struct{}
}

func (c *testCore) client(t testing.TB, account, token, deviceType string, addrs ...string) *client {
	t.Helper()
	return c.clientWith(t, account, token, deviceType, nil, addrs...)
}

// clientWith is client with a change to the SDK config (mod may be nil).
func (c *testCore) clientWith(t testing.TB, account, token, deviceType string, mod func(*sdk.Config), addrs ...string) *client {
	t.Helper()
	if len(addrs) == 0 {
		addrs = []string{c.addr}
	}
	cfg := sdk.Config{
		Addresses:  addrs,
		ServerKeys: map[string][]byte{c.key.ID: c.key.Public},
		AppKey:     appKey, Account: account, Token: token, DeviceType: deviceType,
		DeviceID:   fmt.Sprintf("%s-%s-%d", account, deviceType, time.Now().UnixNano()),
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		Logger: logger().With("who", account+"/"+deviceType),
	}
	if mod != nil {
		mod(&cfg)
	}
	sc, err := sdk.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return startClient(t, sc, account)
}

// startClient starts sc and collects its events until the test ends.
func startClient(t testing.TB, sc *sdk.Client, account string) *client {
	cl := &client{t: t, account: account, Client: sc, changed: make(chan struct{}, 1), done: make(chan struct{})}
	sc.Start()
	go cl.collect()
	t.Cleanup(func() { _ = sc.Close(); <-cl.done })
	return cl
}

func (c *client) collect() {
	defer close(c.done)
	for ev := range c.Events() {
		c.mu.Lock()
		switch ev.Kind {
		case sdk.EventMessage:
			c.msgs = append(c.msgs, *ev.Message)
		case sdk.EventReceipt:
			c.receipts = append(c.receipts, *ev.Receipt)
		case sdk.EventRecalled:
			c.recalls = append(c.recalls, *ev.Recalled)
		case sdk.EventGroup:
			c.groups = append(c.groups, *ev.Group)
		case sdk.EventKicked:
			c.kicks = append(c.kicks, *ev.Kick)
		case sdk.EventNotice:
			c.notices = append(c.notices, *ev.Notice)
		case sdk.EventProfile:
			c.profiles = append(c.profiles, *ev.Profile)
		case sdk.EventState:
			c.states = append(c.states, ev.State)
		case sdk.EventRoom:
			c.rejoins = append(c.rejoins, *ev.Room)
		case sdk.EventRelationsReset:
			c.resets = append(c.resets, *ev.Relations)
		case sdk.EventPush:
			if b, ok := sdk.RoomBatchOf(ev); ok {
				c.roomMsgs = append(c.roomMsgs, b.Messages...)
				c.batches++
			} else if re, ok := sdk.RoomEventOf(ev); ok {
				c.roomEvs = append(c.roomEvs, re)
			} else if se, ok := sdk.SuperEventOf(ev); ok {
				c.supers = append(c.supers, *se)
			}
		}
		c.mu.Unlock()
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}
}

// waitUntil waits for cond over the collected events.
func (c *client) waitUntil(what string, d time.Duration, cond func(c *client) bool) {
	c.t.Helper()
	deadline := time.After(d)
	for {
		c.mu.Lock()
		ok := cond(c)
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-c.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			c.mu.Lock()
			n := len(c.msgs)
			c.mu.Unlock()
			c.t.Fatalf("%s: %s: not reached in %s (%d messages so far)", c.account, what, d, n)
		}
	}
}

func (c *client) messages() []imapi.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]imapi.Message(nil), c.msgs...)
}

func (c *client) connected(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
}

// recorder is a TCP proxy that records both directions.
type recorder struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	up      [][]byte // client → server, per connection
	down    [][]byte
	conns   []net.Conn
	closing bool
}

func newRecorder(t testing.TB, target string) *recorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln, target: target}
	go r.serve()
	t.Cleanup(func() { ln.Close() })
	return r
}

func (r *recorder) addr() string { return r.ln.Addr().String() }

func (r *recorder) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		i := len(r.up)
		r.up = append(r.up, nil)
		r.down = append(r.down, nil)
		r.conns = append(r.conns, c, s)
		r.mu.Unlock()
		go r.pipe(c, s, func(b []byte) { r.mu.Lock(); r.up[i] = append(r.up[i], b...); r.mu.Unlock() })
		go r.pipe(s, c, func(b []byte) { r.mu.Lock(); r.down[i] = append(r.down[i], b...); r.mu.Unlock() })
	}
}

func (r *recorder) pipe(from, to net.Conn, rec func([]byte)) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			rec(buf[:n])
			if _, werr := to.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	from.Close()
	to.Close()
}

func (r *recorder) all() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []byte
	for i := range r.up {
		out = append(out, r.up[i]...)
		out = append(out, r.down[i]...)
	}
	return out
}
