package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/waittest"
)

// fakeTransport answers login and heartbeats; Close ends Recv.
type fakeTransport struct {
	addr   string
	in     chan Incoming
	closed chan struct{}
	once   sync.Once
	code   imapi.Code
}

func newFake(addr string, code imapi.Code) *fakeTransport {
	return &fakeTransport{addr: addr, in: make(chan Incoming, 16), closed: make(chan struct{}), code: code}
}

func (f *fakeTransport) Send(op imapi.Op, seq uint32, body []byte) error {
	select {
	case <-f.closed:
		return errors.New("closed")
	default:
	}
	switch op {
	case imapi.OpLogin:
		resp, _ := json.Marshal(imapi.LoginResp{SessionID: "s-" + f.addr, HeartbeatSec: 30})
		f.in <- Incoming{Op: op, Seq: seq, Code: f.code, Body: resp}
	case imapi.OpConvList:
		f.in <- Incoming{Op: op, Seq: seq, Body: []byte(`{"conversations":[]}`)}
	default:
		f.in <- Incoming{Op: op, Seq: seq, Body: []byte(`{}`)}
	}
	return nil
}

func (f *fakeTransport) Recv() (Incoming, error) {
	select {
	case in := <-f.in:
		return in, nil
	case <-f.closed:
		return Incoming{}, errors.New("closed")
	}
}

func (f *fakeTransport) Close() error { f.once.Do(func() { close(f.closed) }); return nil }

func testConfig(d Dialer, addrs ...string) Config {
	return Config{Addresses: addrs, Dialer: d, AppKey: "app", Account: "alice", Token: "t",
		RaceDelay: 50 * time.Millisecond, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond}
}

// TestRacingPicksFirstLogin: candidate addresses are raced with a
// stagger; an attempt that fails starts the next one at once, and the
// first login wins (no attempt starts after it).
func TestRacingPicksFirstLogin(t *testing.T) {
	for _, tc := range []struct {
		name      string
		addrs     []string
		raceDelay time.Duration
		dialed    []string
		minWait   time.Duration // the connection comes no sooner
	}{
		// A hanging attempt: the next starts after the stagger, however
		// fast the machine.
		{"stagger", []string{"blackhole", "good"}, 50 * time.Millisecond, []string{"blackhole", "good"}, 40 * time.Millisecond},
		// A failed attempt starts the next at once (the stagger is an
		// hour); the winner ends the race.
		{"failure and win", []string{"refused", "good", "never"}, time.Hour, []string{"refused", "good"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var dialed []string
			d := func(ctx context.Context, addr string) (Transport, error) {
				mu.Lock()
				dialed = append(dialed, addr)
				mu.Unlock()
				switch addr {
				case "blackhole":
					<-ctx.Done()
					return nil, ctx.Err()
				case "refused":
					return nil, errors.New("connection refused")
				}
				return newFake(addr, imapi.OK), nil
			}
			cfg := testConfig(d, tc.addrs...)
			cfg.RaceDelay = tc.raceDelay
			start := time.Now()
			c, _ := startClient(t, cfg)
			if d := time.Since(start); d < tc.minWait {
				t.Fatalf("connected after %s, before the stagger", d)
			}
			if c.SessionID() != "s-good" {
				t.Fatalf("session %q", c.SessionID())
			}
			_ = c.Close() // no attempt starts after the connection manager stopped
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(dialed, tc.dialed) {
				t.Fatalf("dialed %v, want %v", dialed, tc.dialed)
			}
		})
	}
}

func TestReconnectAndAuthFailure(t *testing.T) {
	var n atomic.Int32
	var last atomic.Pointer[fakeTransport]
	d := func(ctx context.Context, addr string) (Transport, error) {
		n.Add(1)
		f := newFake(addr, imapi.OK)
		last.Store(f)
		return f, nil
	}
	c, ctx := startClient(t, testConfig(d, "a"))
	last.Load().Close() // the link drops
	waittest.Until(t, 5*time.Second, "a reconnect", func() bool { return n.Load() >= 2 })
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := c.Request(ctx, imapi.OpGroupList, nil, &out); err != nil {
		t.Fatalf("request after reconnect: %v", err)
	}

	bad, err := New(testConfig(func(ctx context.Context, addr string) (Transport, error) {
		return newFake(addr, imapi.ErrUnauthorized), nil
	}, "a"))
	if err != nil {
		t.Fatal(err)
	}
	bad.Start()
	defer bad.Close()
	if err := bad.WaitConnected(ctx); !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
}

func TestBackoffBounds(t *testing.T) {
	c := &Client{cfg: Config{BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second}}
	for attempt := 0; attempt < 40; attempt++ {
		for i := 0; i < 50; i++ {
			d := c.backoff(attempt)
			limit := min(100*time.Millisecond<<min(attempt, 20), time.Second)
			if d <= 0 || d > limit {
				t.Fatalf("attempt %d: %s outside (0, %s]", attempt, d, limit)
			}
		}
	}
}

func TestClientFile(t *testing.T) {
	k, _ := link.GenerateKey("k1")
	f := &ClientFile{Addresses: []string{"127.0.0.1:7720"}, Direct: []string{"127.0.0.1:7710"}, AppKey: "demo",
		Keys: []ClientKey{{ID: k.ID, PublicKey: link.EncodeKey(k.Public)}}, Users: []ClientUser{{Account: "bob", Token: "tb"}}}
	path := filepath.Join(t.TempDir(), "dir", "client.json")
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	g, err := LoadClientFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := g.Config("bob")
	if err != nil || cfg.Token != "tb" || string(cfg.ServerKeys["k1"]) != string(k.Public) {
		t.Fatalf("config %+v %v", cfg, err)
	}
	if _, err := g.Config("eve"); err == nil {
		t.Fatal("unknown user accepted")
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (&Config{}).Validate(); err == nil {
		t.Fatal("empty config accepted")
	}
}

// TestOutOfOrderPushes checks that pushes overtaking each other are
// delivered in order, once, without a sync.
func TestOutOfOrderPushes(t *testing.T) {
	var last atomic.Pointer[fakeTransport]
	c, err := New(testConfig(func(ctx context.Context, addr string) (Transport, error) {
		f := newFake(addr, imapi.OK)
		last.Store(f)
		return f, nil
	}, "a"))
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	push := func(seq int64) {
		b, _ := json.Marshal(imapi.Message{MsgID: "m", ConvID: "p:alice:bob", From: "bob", Seq: seq, ClientMsgID: "c"})
		last.Load().in <- Incoming{Op: imapi.OpPush, Push: true, Body: b}
	}
	push(2)
	push(3)
	push(1)
	push(2) // duplicate
	push(4)
	push(5) // after the others: any duplicate would come before it
	var got []int64
	for len(got) == 0 || got[len(got)-1] != 5 {
		select {
		case ev := <-c.Events():
			if ev.Kind == EventMessage {
				got = append(got, ev.Message.Seq)
			}
		case <-ctx.Done():
			t.Fatalf("got %v", got)
		}
	}
	if !slices.Equal(got, []int64{1, 2, 3, 4, 5}) {
		t.Fatalf("delivered %v, want 1..5 once each, in order", got)
	}
}

// kickingTransport answers the login, then pushes a kick and ends, as an
// edge does when the core refuses a login the edge already answered.
type kickingTransport struct {
	*fakeTransport
	kick   imapi.Kick
	kicked bool // Recv returned the kick (Recv is called by one goroutine at a time)
}

func (k *kickingTransport) Recv() (Incoming, error) {
	if k.kicked {
		_ = k.Close() // the edge closes after the kick
		return Incoming{}, errors.New("closed by the edge")
	}
	in, err := k.fakeTransport.Recv()
	if err != nil {
		return in, err
	}
	switch in.Op {
	case imapi.OpLogin:
		// After the login answer: the kick, then the end of the connection.
		body, _ := json.Marshal(k.kick)
		k.fakeTransport.in <- Incoming{Op: imapi.OpKick, Push: true, Body: body}
	case imapi.OpKick:
		k.kicked = true
	}
	return in, nil
}

func TestKickAfterLogin(t *testing.T) {
	for _, tc := range []struct {
		code      imapi.Code
		wantErr   error // why the client stops
		reconnect bool  // it reconnects instead
	}{
		{imapi.ErrUnauthorized, ErrAuth, false},
		{imapi.ErrUserDisabled, ErrAuth, false},
		{imapi.ErrForbidden, ErrAuth, false},
		{imapi.ErrKicked, ErrKicked, false},
		{imapi.ErrUnavailable, nil, true},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			var dials atomic.Int32
			d := func(ctx context.Context, addr string) (Transport, error) {
				if dials.Add(1) > 1 {
					return newFake(addr, imapi.OK), nil // a second connection just works
				}
				return &kickingTransport{fakeTransport: newFake(addr, imapi.OK), kick: imapi.Kick{Code: tc.code, Reason: "token revoked"}}, nil
			}
			c, err := New(testConfig(d, "edge"))
			if err != nil {
				t.Fatal(err)
			}
			c.Start()
			defer c.Close()
			if tc.reconnect {
				// Stopped is final: connected again means it never stopped.
				waittest.Until(t, 5*time.Second, "a second connection", func() bool {
					return dials.Load() >= 2 && c.State() == StateConnected
				})
				return
			}
			waittest.Until(t, 5*time.Second, "the client to stop", func() bool { return c.State() == StateStopped })
			if err := c.WaitConnected(context.Background()); !errors.Is(err, tc.wantErr) {
				t.Fatalf("stopped with %v, want %v", err, tc.wantErr)
			}
			// The connection manager dials, then stops for good: no dial
			// can follow the stop.
			if n := dials.Load(); n != 1 {
				t.Fatalf("%d dials, want 1 (no reconnect loop)", n)
			}
		})
	}
}

// busyTransport refuses the first send with 503 (a shedding server) and
// records the client_msg_id of every send that reaches it, and when.
type busyTransport struct {
	*fakeTransport
	mu   sync.Mutex
	sent []string
	at   []time.Time
}

func (b *busyTransport) Send(op imapi.Op, seq uint32, body []byte) error {
	if op != imapi.OpSend {
		return b.fakeTransport.Send(op, seq, body)
	}
	var req imapi.SendReq
	_ = json.Unmarshal(body, &req)
	b.mu.Lock()
	b.sent = append(b.sent, req.ClientMsgID)
	b.at = append(b.at, time.Now())
	first := len(b.sent) == 1
	b.mu.Unlock()
	if first {
		b.in <- Incoming{Op: op, Seq: seq, Code: imapi.ErrUnavailable, Body: []byte(`{"code":503,"message":"busy"}`)}
		return nil
	}
	ack, _ := json.Marshal(imapi.SendAck{MsgID: "m-" + req.ClientMsgID, Seq: 1})
	b.in <- Incoming{Op: op, Seq: seq, Body: ack}
	return nil
}

// TestBusyPausesSends: after a transient refusal the client holds every
// send until its pause ends, then sends the held ones in order, the refused
// one first (same client_msg_id): an overloaded server sees one resend
// burst, not a resend per message on top of new sends.
//
// Whether the sends queued after the refusal are queued before its pause
// ends depends on the machine's speed; the outcome must not: the refused
// send goes out again no sooner than the shortest pause, and first.
func TestBusyPausesSends(t *testing.T) {
	bt := &busyTransport{fakeTransport: newFake("gw", imapi.OK)}
	d := func(ctx context.Context, addr string) (Transport, error) { return bt, nil }
	cfg := testConfig(d, "gw")
	cfg.BackoffMin, cfg.BackoffMax = 100*time.Millisecond, 200*time.Millisecond
	c, ctx := startClient(t, cfg)
	first, err := c.SendAsync(&imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", Body: []byte(`{}`), ClientMsgID: "c0"})
	if err != nil {
		t.Fatal(err)
	}
	// The refusal was handled: it set a pause (kept after it ends).
	waittest.Until(t, 5*time.Second, "the refusal's pause", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return !c.pausedUntil.IsZero()
	})
	var dones []<-chan SendResult
	for i := 1; i <= 5; i++ {
		done, err := c.SendAsync(&imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", Body: []byte(`{}`), ClientMsgID: "c" + string(rune('0'+i))})
		if err != nil {
			t.Fatal(err)
		}
		dones = append(dones, done)
	}
	for _, ch := range append([]<-chan SendResult{first}, dones...) {
		select {
		case r := <-ch:
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		case <-ctx.Done():
			t.Fatal("a send was never acked")
		}
	}
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if want := []string{"c0", "c0", "c1", "c2", "c3", "c4", "c5"}; !slices.Equal(bt.sent, want) {
		t.Fatalf("sends %v, want %v (held sends in order after the refused one)", bt.sent, want)
	}
	// The pause without a hint: BackoffMin with equal jitter, at least half.
	if paused := bt.at[1].Sub(bt.at[0]); paused < cfg.BackoffMin/2 {
		t.Fatalf("the refused send went out again %v after its refusal, before the pause (at least %v)", paused, cfg.BackoffMin/2)
	}
}

// busyLogin refuses the login as busy with a retry-after hint.
type busyLogin struct {
	*fakeTransport
	hintMs int64
}

func (b *busyLogin) Send(op imapi.Op, seq uint32, body []byte) error {
	if op != imapi.OpLogin {
		return b.fakeTransport.Send(op, seq, body)
	}
	e, _ := json.Marshal(imapi.Error{Code: imapi.ErrUnavailable, Message: "busy", RetryAfterMs: b.hintMs})
	b.in <- Incoming{Op: op, Seq: seq, Code: imapi.ErrUnavailable, Body: e}
	return nil
}

// TestLoginRetryHint: a login refused as busy with retry_after_ms is tried
// again after the hint (never sooner, at most a quarter later), whatever
// the backoff (an hour here), and the backoff does not grow for it; a hint
// beyond BackoffMax waits BackoffMax.
func TestLoginRetryHint(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		hintMs                 int64
		backoffMin, backoffMax time.Duration
		minGap, maxGap         time.Duration
	}{
		{"hint", 150, time.Hour, time.Hour, 150 * time.Millisecond, 150 * time.Millisecond * 5 / 4},
		{"capped", 60_000, 100 * time.Millisecond, 100 * time.Millisecond, 0, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const refusals = 3
			var mu sync.Mutex
			var dials []time.Time
			d := func(ctx context.Context, addr string) (Transport, error) {
				mu.Lock()
				defer mu.Unlock()
				dials = append(dials, time.Now())
				if len(dials) <= refusals {
					return &busyLogin{newFake(addr, imapi.OK), tc.hintMs}, nil
				}
				return newFake(addr, imapi.OK), nil
			}
			cfg := testConfig(d, "a")
			cfg.BackoffMin, cfg.BackoffMax = tc.backoffMin, tc.backoffMax
			c, ctx := startClient(t, cfg)
			if err := c.WaitConnected(ctx); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(dials) != refusals+1 {
				t.Fatalf("%d dials, want %d", len(dials), refusals+1)
			}
			for i := 1; i < len(dials); i++ {
				// The refusal itself takes a moment, so a gap may exceed
				// the pause by that much; it can never be shorter.
				gap := dials[i].Sub(dials[i-1])
				if gap < tc.minGap {
					t.Fatalf("attempt %d came %s after the refusal, before the hint %s", i+1, gap, tc.minGap)
				}
			}
			for i := 0; i < 200; i++ {
				p := c.hintPause(time.Duration(tc.hintMs) * time.Millisecond)
				if p < min(time.Duration(tc.hintMs)*time.Millisecond, tc.backoffMax) || p > tc.maxGap {
					t.Fatalf("pause %s outside [hint, %s]", p, tc.maxGap)
				}
			}
		})
	}
}
