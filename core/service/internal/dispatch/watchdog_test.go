package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/bus/bustest"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/route"
	"github.com/longlink/longlink/pkg/waittest"
)

func connect(t *testing.T, b *bus.Bus) *nats.Conn {
	t.Helper()
	nc, err := b.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// node starts a dispatcher answering op with h.
func node(t *testing.T, ns *bus.Bus, cfg Config, h Handler) *Dispatcher {
	t.Helper()
	cfg.Node, cfg.ID, cfg.Announce = route.Node{Cluster: "c"}, t.Name(), time.Second
	cfg.MaxInFlight, cfg.MaxRequestBytes, cfg.RequestTimeout = 64, 1<<16, 5*time.Second
	d, err := New(cfg, connect(t, ns), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	d.Add(Route{Op: imapi.OpSync, Handle: h})
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = d.Shutdown(ctx)
	})
	return d
}

func request(nc *nats.Conn, sent time.Time, timeout time.Duration) (string, error) {
	req := buswire.Request{Session: buswire.Session{AppKey: "a", Account: "u", SessionID: "s"}, Body: json.RawMessage(`{}`)}
	if !sent.IsZero() {
		req.Sent = sent.UnixMilli()
	}
	b, _ := json.Marshal(&req)
	m, err := nc.Request(buswire.ServiceSubject("c", imapi.OpSync), b, timeout)
	if err != nil {
		return "", err
	}
	var rep buswire.Reply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return "", err
	}
	var who string
	_ = json.Unmarshal(rep.Body, &who)
	return who, nil
}

// TestWatchdogLeavesAndRejoins: a node whose handlers stop finishing leaves
// the queue group after StallAfter, so every later request goes to the
// healthy node, and joins again once its requests finish.
func TestWatchdogLeavesAndRejoins(t *testing.T) {
	ns := bustest.Embedded(t)
	unblock := make(chan struct{})
	idle := func() time.Duration { return 0 } // a stuck store: no CPU used
	stuck := node(t, ns, Config{StallAfter: 200 * time.Millisecond, CPUTime: idle}, func(ctx context.Context, _ *buswire.Session, _ []byte) (any, error) {
		select {
		case <-unblock: // its store came back
			return "stuck", nil
		case <-time.After(10 * time.Second):
			return "stuck", nil
		}
	})
	node(t, ns, Config{StallAfter: 200 * time.Millisecond}, func(context.Context, *buswire.Session, []byte) (any, error) {
		return "healthy", nil
	})
	nc := connect(t, ns)
	// Requests spread over both; those reaching the stuck node hang.
	for range 20 {
		go func() { _, _ = request(nc, time.Time{}, 5*time.Second) }()
	}
	waittest.Until(t, 5*time.Second, "the stuck node to leave", func() bool { return testutil.ToFloat64(stuck.metrics.stalled) == 1 })
	for i := range 50 {
		who, err := request(nc, time.Time{}, 2*time.Second)
		if err != nil || who != "healthy" {
			t.Fatalf("request %d after the stall: %q, %v (want the healthy node only)", i, who, err)
		}
	}
	close(unblock)
	waittest.Until(t, 5*time.Second, "the node to rejoin", func() bool { return testutil.ToFloat64(stuck.metrics.stalled) == 0 })
	seen := map[string]bool{}
	for range 100 {
		who, err := request(nc, time.Time{}, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		seen[who] = true
	}
	if !seen["stuck"] || testutil.ToFloat64(stuck.metrics.stalls) != 1 {
		t.Fatalf("after the rejoin: nodes answering %v, stalls %v", seen, testutil.ToFloat64(stuck.metrics.stalls))
	}
}

// TestStaleRequestDropped: a request its gateway sent longer ago than
// MaxRequestAge is dropped unanswered; a fresh one is answered.
func TestStaleRequestDropped(t *testing.T) {
	ns := bustest.Embedded(t)
	d := node(t, ns, Config{MaxRequestAge: time.Second}, func(context.Context, *buswire.Session, []byte) (any, error) { return "ok", nil })
	nc := connect(t, ns)
	if who, err := request(nc, time.Now(), 2*time.Second); err != nil || who != "ok" {
		t.Fatalf("fresh request: %q, %v", who, err)
	}
	if _, err := request(nc, time.Now().Add(-5*time.Second), 300*time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("stale request: %v, want no answer", err)
	}
	if n := testutil.ToFloat64(d.metrics.stale); n != 1 {
		t.Fatalf("stale_requests_total = %v", n)
	}
}

// TestWatchdogSaturatedStays: a node whose requests take longer than
// StallAfter while its process works flat out (a reconnect storm's logins
// sharing the CPU) is saturated, not stalled: it stays in its queue groups
// and every request is answered by it.
func TestWatchdogSaturatedStays(t *testing.T) {
	ns := bustest.Embedded(t)
	start := time.Now()
	flatOut := func() time.Duration { return time.Since(start) } // one whole CPU
	release := make(chan struct{})
	d := node(t, ns, Config{StallAfter: 200 * time.Millisecond, CPUTime: flatOut}, func(context.Context, *buswire.Session, []byte) (any, error) {
		<-release
		return "busy", nil
	})
	nc := connect(t, ns)
	answered := make(chan error, 20)
	for range 20 {
		go func() {
			who, err := request(nc, time.Time{}, 10*time.Second)
			if err == nil && who != "busy" {
				err = errors.New("answered by " + who)
			}
			answered <- err
		}()
	}
	waittest.Until(t, 5*time.Second, "a check finding the node busy", func() bool { return testutil.ToFloat64(d.metrics.stallBusy) >= 2 })
	close(release)
	for range 20 {
		if err := <-answered; err != nil {
			t.Fatal(err)
		}
	}
	if testutil.ToFloat64(d.metrics.stalls) != 0 {
		t.Fatalf("a saturated node left its queue groups (%v stalls)", testutil.ToFloat64(d.metrics.stalls))
	}
}

func TestWatchdogBusyWindow(t *testing.T) {
	const after = time.Second
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name string
		cpu  []time.Duration // CPU time at t0, t0+250ms, …
		busy bool
	}{
		{"window not yet sampled", []time.Duration{0, time.Second}, false},
		{"idle", []time.Duration{0, 0, 10 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}, false},
		{"flat out", []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, 750 * time.Millisecond, time.Second}, true},
		{"a quarter", []time.Duration{0, 60 * time.Millisecond, 120 * time.Millisecond, 190 * time.Millisecond, 250 * time.Millisecond}, true},
		{"busy earlier, idle over the last window", []time.Duration{0, time.Second, 2 * time.Second, 2 * time.Second, 2 * time.Second, 2 * time.Second, 2 * time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w watchdog
			var got bool
			for i, c := range tc.cpu {
				got = w.busy(t0.Add(time.Duration(i)*after/4), c, after)
			}
			if got != tc.busy {
				t.Fatalf("busy %v, want %v", got, tc.busy)
			}
		})
	}
}
