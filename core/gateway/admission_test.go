package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

func newTestGate(t *testing.T, slots int) (*handshakeGate, *metrics) {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return newHandshakeGate(slots, m), m
}

// TestHandshakeGateFIFO: waiters get the slot in the order they asked.
func TestHandshakeGateFIFO(t *testing.T) {
	h, m := newTestGate(t, 1)
	far := time.Now().Add(time.Minute)
	if !h.acquire(far, nil) {
		t.Fatal("a free slot was not granted")
	}
	const n = 20
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !h.acquire(far, nil) {
				t.Errorf("waiter %d not granted", i)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			h.release()
		}()
		// The next one asks only once this one waits: the order is known.
		waittest.Until(t, 5*time.Second, fmt.Sprintf("waiter %d queued", i), func() bool { return h.queued() == i+1 })
	}
	if got := testutil.ToFloat64(m.handshakesQueued); got != n {
		t.Fatalf("queued gauge %v, want %d", got, n)
	}
	h.release()
	wg.Wait()
	for i, v := range order {
		if v != i {
			t.Fatalf("granted in order %v, want 0..%d", order, n-1)
		}
	}
	if q, r := testutil.ToFloat64(m.handshakesQueued), testutil.ToFloat64(m.handshakesRunning); q != 0 || r != 0 {
		t.Fatalf("after all: queued %v running %v, want 0 0", q, r)
	}
	if got := histCount(t, m.handshakeWait); got != n+1 {
		t.Fatalf("wait histogram counted %d, want %d", got, n+1)
	}
}

// TestHandshakeGateBound: however many ask at once, at most the bound hold
// a slot, and every one gets its turn.
func TestHandshakeGateBound(t *testing.T) {
	const slots, n = 3, 60
	h, m := newTestGate(t, slots)
	far := time.Now().Add(time.Minute)
	var holding, most, done atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !h.acquire(far, nil) {
				return
			}
			now := holding.Add(1)
			for {
				prev := most.Load()
				if now <= prev || most.CompareAndSwap(prev, now) {
					break
				}
			}
			holding.Add(-1)
			done.Add(1)
			h.release()
		}()
	}
	wg.Wait()
	if done.Load() != n || most.Load() > slots {
		t.Fatalf("%d of %d done, at most %d at once (bound %d)", done.Load(), n, most.Load(), slots)
	}
	if got := histCount(t, m.handshakeWait); got != n {
		t.Fatalf("wait histogram counted %d, want %d", got, n)
	}
}

// TestHandshakeGateWaitedTooLong: a waiter whose deadline passes (or whose
// gateway stops) leaves the queue without a slot and is counted; the slot
// holder's release then finds no one.
func TestHandshakeGateWaitedTooLong(t *testing.T) {
	h, m := newTestGate(t, 1)
	if !h.acquire(time.Now().Add(time.Minute), nil) {
		t.Fatal("a free slot was not granted")
	}
	if h.acquire(time.Now().Add(20*time.Millisecond), nil) {
		t.Fatal("granted while the only slot was held")
	}
	stop := make(chan struct{})
	close(stop)
	if h.acquire(time.Now().Add(time.Minute), stop) {
		t.Fatal("granted after the stop")
	}
	if got := testutil.ToFloat64(m.handshakeDrops.WithLabelValues("waited")); got != 2 {
		t.Fatalf("drops{waited} %v, want 2", got)
	}
	if q := h.queued(); q != 0 || testutil.ToFloat64(m.handshakesQueued) != 0 {
		t.Fatalf("%d still queued", q)
	}
	h.release()
	if !h.acquire(time.Now().Add(time.Minute), nil) {
		t.Fatal("the released slot was not free")
	}
}

func histCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	h.Collect(ch)
	var pb dto.Metric
	if err := (<-ch).Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetHistogram().GetSampleCount()
}

// TestLoginBurstOverHandshakeBound: a burst of logins several times the
// handshake bound all succeed: they wait their turn in the gateway (the
// test holds both slots until every hello is queued, so the burst does go
// through the queue).
func TestLoginBurstOverHandshakeBound(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxHandshakes = 2 })
	far := time.Now().Add(time.Minute)
	for range 2 {
		if !e.g.hs.acquire(far, nil) {
			t.Fatal("slot")
		}
	}
	const n = 40
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- loginOnce(e, fmt.Sprintf("burst%d", i)) }()
	}
	waittest.Until(t, 10*time.Second, "every hello queued", func() bool { return e.g.hs.queued() == n })
	e.g.hs.release()
	e.g.hs.release()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(e.g.m.logins.WithLabelValues("ok")); got != n {
		t.Fatalf("%v logins ok, want %d", got, n)
	}
	if got := histCount(t, e.g.m.handshakeWait); got != n+2 {
		t.Fatalf("wait histogram counted %d, want %d", got, n+2)
	}
}

// loginOnce dials, handshakes and logs in as account, with an error
// instead of a test failure (it runs in its own goroutine).
func loginOnce(e *env, account string) error {
	nc, err := net.Dial("tcp", e.g.Addr().String())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := link.Client(ctx, nc, e.key.ID, e.key.Public, link.Limits{})
	if err != nil {
		nc.Close()
		return fmt.Errorf("%s: handshake: %w", account, err)
	}
	body, _ := json.Marshal(imapi.LoginReq{AppKey: "app", Account: account, Token: "tok-" + account, DeviceType: "phone"})
	if err := c.WriteFrame(link.Frame{Op: imapi.OpLogin, Seq: 1, Body: body}); err != nil {
		return err
	}
	_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	f, err := c.ReadFrame()
	if err != nil {
		return fmt.Errorf("%s: login answer: %w", account, err)
	}
	if f.Code != imapi.OK {
		return fmt.Errorf("%s: login: %d %s", account, f.Code, f.Body)
	}
	return nil
}

// TestHandshakeWaitCloses: a connection still waiting for its slot
// handshake_wait after its accept is closed without a handshake, and one
// whose client gave up while it waited is not handshaken either; both are
// counted by reason.
func TestHandshakeWaitCloses(t *testing.T) {
	far := time.Now().Add(time.Minute)
	t.Run("waited", func(t *testing.T) {
		e := newEnv(t, func(c *Config) {
			c.MaxHandshakes = 1
			c.HandshakeWait = config.Duration(300 * time.Millisecond)
		})
		if !e.g.hs.acquire(far, nil) {
			t.Fatal("slot")
		}
		nc, err := net.Dial("tcp", e.g.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := link.Client(ctx, nc, e.key.ID, e.key.Public, link.Limits{}); err == nil || ctx.Err() != nil {
			t.Fatalf("handshake after the wait: %v (want the connection closed before the deadline)", err)
		}
		if got := testutil.ToFloat64(e.g.m.handshakeDrops.WithLabelValues("waited")); got != 1 {
			t.Fatalf("drops{waited} %v", got)
		}
	})
	t.Run("client gone", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.MaxHandshakes = 1 })
		if !e.g.hs.acquire(far, nil) {
			t.Fatal("slot")
		}
		gone, err := net.Dial("tcp", e.g.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		hctx, hcancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = link.Client(hctx, gone, e.key.ID, e.key.Public, link.Limits{})
		}()
		waittest.Until(t, 5*time.Second, "the hello queued", func() bool { return e.g.hs.queued() == 1 })
		hcancel()
		<-done
		gone.Close() // on loopback the FIN is in the gateway's socket when this returns
		e.g.hs.release()
		waittest.Until(t, 5*time.Second, "the gone client counted", func() bool {
			return testutil.ToFloat64(e.g.m.handshakeDrops.WithLabelValues("client_gone")) == 1
		})
	})
}

func TestFitFileLimit(t *testing.T) {
	for _, tc := range []struct {
		want, limit, fit int
	}{
		{100000, 1 << 20, 100000}, // room enough
		{100000, 20000, 19600},    // 2% reserved
		{100000, 1024, 768},       // at least 256 reserved
		{100000, 300000, 100000},  // at most 4,096 reserved, room enough
		{1000, 20000, 1000},       // the configured cap fits
		{100000, 100, 1},          // a tiny limit still serves one
	} {
		if got := fitFileLimit(tc.want, tc.limit); got != tc.fit {
			t.Errorf("fitFileLimit(%d, %d) = %d, want %d", tc.want, tc.limit, got, tc.fit)
		}
	}
}

// TestHelloLateMakesRoom: at max_connections, a new connection takes the
// place of the oldest one still without a hello past hello_grace (closed,
// counted hello_late) and logs in; with no such connection (a longer
// grace) the new one is refused, counted at max_connections.
func TestHelloLateMakesRoom(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		room  bool
	}{
		{"late hello makes room", time.Millisecond, true},
		{"within grace keeps its place", 10 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				c.MaxConnections = 2
				c.HelloGrace = config.Duration(tc.grace)
			})
			waiting := func() int {
				e.g.connMu.Lock()
				defer e.g.connMu.Unlock()
				return e.g.hellos.Len()
			}
			var silent []net.Conn
			for i := range 2 {
				nc, err := net.Dial("tcp", e.g.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				silent = append(silent, nc)
				// Each connection's goroutine registers it: the first must be
				// the oldest in the list before the second is dialed.
				waittest.Until(t, 5*time.Second, "the connection waiting for its hello", func() bool { return waiting() == i+1 })
			}
			waittest.Until(t, 5*time.Second, "both waiting for their hello", func() bool {
				e.g.connMu.Lock()
				defer e.g.connMu.Unlock()
				f := e.g.hellos.Front()
				return e.g.hellos.Len() == 2 && (!tc.room || time.Since(f.Value.(*helloWait).since) > tc.grace)
			})
			err := loginOnce(e, "newcomer")
			full := testutil.ToFloat64(e.g.m.refused.WithLabelValues("max_connections"))
			if !tc.room {
				late := testutil.ToFloat64(e.g.m.handshakeDrops.WithLabelValues("hello_late"))
				if err == nil || late != 0 || full != 1 {
					t.Fatalf("login %v, hello_late %v, refused at max_connections %v; want refused, 0, 1", err, late, full)
				}
				return
			}
			if err != nil || full != 0 {
				t.Fatalf("login %v, refused at max_connections %v; want ok, 0", err, full)
			}
			// The oldest silent connection was closed, the other kept.
			_ = silent[0].SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := silent[0].Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("oldest silent connection: read %v, want it closed", err)
			}
			waittest.Until(t, 5*time.Second, "the closed one counted hello_late and gone", func() bool {
				e.g.connMu.Lock()
				defer e.g.connMu.Unlock()
				return e.g.hellos.Len() == 1 && e.g.evicting == 0 && e.g.totalConns == 2 &&
					testutil.ToFloat64(e.g.m.handshakeDrops.WithLabelValues("hello_late")) == 1
			})
		})
	}
}
