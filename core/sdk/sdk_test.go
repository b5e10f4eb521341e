package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
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

func TestRacingPicksFirstLogin(t *testing.T) {
	var mu sync.Mutex
	var dialed []string
	var fakes []*fakeTransport
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
		f := newFake(addr, imapi.OK)
		mu.Lock()
		fakes = append(fakes, f)
		mu.Unlock()
		return f, nil
	}
	c, err := New(testConfig(d, "blackhole", "refused", "good", "never"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Start()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	// blackhole at 0, refused at 50ms (stagger), good right after the refusal.
	if d := time.Since(start); d < 40*time.Millisecond || d > 2*time.Second {
		t.Fatalf("connected after %s", d)
	}
	if c.SessionID() != "s-good" {
		t.Fatalf("session %q", c.SessionID())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range dialed {
		if a == "never" {
			t.Fatal("dialed the fourth address although the third won")
		}
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
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no reconnect")
		}
		time.Sleep(5 * time.Millisecond)
	}
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
	var got []int64
	timeout := time.After(5 * time.Second)
	for len(got) < 4 {
		select {
		case ev := <-c.Events():
			if ev.Kind == EventMessage {
				got = append(got, ev.Message.Seq)
			}
		case <-timeout:
			t.Fatalf("got %v", got)
		}
	}
	select {
	case ev := <-c.Events():
		if ev.Kind == EventMessage {
			t.Fatalf("extra message %d", ev.Message.Seq)
		}
	case <-time.After(300 * time.Millisecond):
	}
	for i, s := range got {
		if s != int64(i+1) {
			t.Fatalf("delivered %v, want 1..4 in order", got)
		}
	}
}

// kickingTransport answers the login, then pushes a kick and ends, as an
// edge does when the core refuses a login the edge already answered.
type kickingTransport struct {
	*fakeTransport
	kick imapi.Kick
	sent atomic.Bool
}

func (k *kickingTransport) Recv() (Incoming, error) {
	in, err := k.fakeTransport.Recv()
	if err != nil || in.Op != imapi.OpLogin {
		return in, err
	}
	// After the login answer: the kick, then the end of the connection.
	body, _ := json.Marshal(k.kick)
	k.fakeTransport.in <- Incoming{Op: imapi.OpKick, Push: true, Body: body}
	k.sent.Store(true)
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
				k := &kickingTransport{fakeTransport: newFake(addr, imapi.OK), kick: imapi.Kick{Code: tc.code, Reason: "token revoked"}}
				go func() { // the edge closes after the kick
					for !k.sent.Load() {
						time.Sleep(time.Millisecond)
					}
					time.Sleep(20 * time.Millisecond)
					_ = k.Close()
				}()
				return k, nil
			}
			c, err := New(testConfig(d, "edge"))
			if err != nil {
				t.Fatal(err)
			}
			c.Start()
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			deadline := time.Now().Add(5 * time.Second)
			for {
				st := c.State()
				if tc.reconnect && dials.Load() >= 2 && st == StateConnected {
					return
				}
				if st == StateStopped {
					if tc.reconnect {
						t.Fatal("stopped, want a reconnect")
					}
					err := c.WaitConnected(ctx)
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("stopped with %v, want %v", err, tc.wantErr)
					}
					time.Sleep(50 * time.Millisecond)
					if n := dials.Load(); n != 1 {
						t.Fatalf("%d dials, want 1 (no reconnect loop)", n)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("state %v after 5s, %d dials", st, dials.Load())
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
}

// busyTransport refuses the first send with 503 (a shedding server) and
// records the client_msg_id of every send that reaches it.
type busyTransport struct {
	*fakeTransport
	mu   sync.Mutex
	sent []string
}

func (b *busyTransport) Send(op imapi.Op, seq uint32, body []byte) error {
	if op != imapi.OpSend {
		return b.fakeTransport.Send(op, seq, body)
	}
	var req imapi.SendReq
	_ = json.Unmarshal(body, &req)
	b.mu.Lock()
	b.sent = append(b.sent, req.ClientMsgID)
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
	// Wait for the refusal to be seen (the send is back in the outbox
	// and nothing else has gone out).
	deadline := time.Now().Add(2 * time.Second)
	for {
		c.mu.Lock()
		paused := time.Now().Before(c.pausedUntil)
		c.mu.Unlock()
		if paused {
			break
		}
		if time.Now().After(deadline) {
			t.Skip("the refusal's pause ended before it was observed (a very slow machine)")
		}
		time.Sleep(time.Millisecond)
	}
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
	want := []string{"c0", "c0", "c1", "c2", "c3", "c4", "c5"}
	if len(bt.sent) != len(want) {
		t.Fatalf("sends %v, want %v", bt.sent, want)
	}
	for i := range want {
		if bt.sent[i] != want[i] {
			t.Fatalf("sends %v, want %v (held sends in order after the refused one)", bt.sent, want)
		}
	}
}
