package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/bus/bustest"
	"github.com/longlink/longlink/pkg/metricstest"
)

// clock is a settable time shared by the test's limiters.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

// node is one process's limiter on its own bus connection.
func node(t *testing.T, b *bus.Bus, c *clock, reg *prometheus.Registry) *Limiter {
	t.Helper()
	nc, err := b.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(Default(), Deps{JetStream: js, Registerer: reg, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestClusterWideBudget: three nodes sharing one budget admit at most the
// budget per window between them, at least the budget less one chunk per
// node, and again in the next window.
func TestClusterWideBudget(t *testing.T) {
	b := bustest.Embedded(t)
	c := &clock{}
	c.set(time.Unix(1_700_000_000, 0).Add(100 * time.Millisecond))
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry(), prometheus.NewRegistry()}
	var nodes []*Limiter
	for _, r := range regs {
		nodes = append(nodes, node(t, b, c, r))
	}
	const perSec = 100 // budget 100 per 1s window, chunks of 6
	admitted := func() int64 {
		var n atomic.Int64
		var wg sync.WaitGroup
		for _, l := range nodes {
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 60 {
						if l.Allow(context.Background(), "test", "app1", perSec) {
							n.Add(1)
						}
					}
				}()
			}
		}
		wg.Wait()
		return n.Load()
	}
	for window := range 2 {
		n := admitted()
		if n > perSec || n < perSec-3*6 {
			t.Fatalf("window %d: %d admitted of 720 asked, want %d at most and %d at least", window, n, perSec, perSec-18)
		}
		c.add(time.Second)
	}
	// Another key has its own budget.
	if !nodes[0].Allow(context.Background(), "test", "app2", perSec) {
		t.Fatal("app2 refused")
	}
	var leases, refused float64
	for _, r := range regs {
		leases += metricstest.Value(t, r, "longlink_ratelimit_leases_total", "scope", "test")
		refused += metricstest.Value(t, r, "longlink_ratelimit_refused_total", "scope", "test")
	}
	// Round trips: a chunk each, not one per request; refusals after the
	// budget is spent cost none.
	if leases > 2*(perSec/6+3+3) || refused < 2*(720-perSec) {
		t.Fatalf("leases %v refused %v", leases, refused)
	}
}

// TestSlowRates: below one request per window the window stretches.
func TestSlowRates(t *testing.T) {
	b := bustest.Embedded(t)
	c := &clock{}
	c.set(time.Unix(1_700_000_000, 0))
	l := node(t, b, c, prometheus.NewRegistry())
	if !l.Allow(context.Background(), "test", "k", 0.5) || l.Allow(context.Background(), "test", "k", 0.5) {
		t.Fatal("0.5/s: want one in the 2s window")
	}
	c.add(2 * time.Second)
	if !l.Allow(context.Background(), "test", "k", 0.5) {
		t.Fatal("0.5/s: refused in the next window")
	}
	if !l.Allow(context.Background(), "test", "k", 0) {
		t.Fatal("rate 0 limits")
	}
}

// TestEngineUnreachable: with the bus gone a node decides alone, at the
// full rate, and counts it.
func TestEngineUnreachable(t *testing.T) {
	b := bustest.Embedded(t)
	c := &clock{}
	c.set(time.Unix(1_700_000_000, 0))
	reg := prometheus.NewRegistry()
	l := node(t, b, c, reg)
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := 0
	for range 20 {
		if l.Allow(context.Background(), "test", "k", 10) {
			n++
		}
	}
	if n != 10 || metricstest.Value(t, reg, "longlink_ratelimit_local_total", "scope", "test") != 20 {
		t.Fatalf("admitted %d alone, local decisions %v", n, metricstest.Value(t, reg, "longlink_ratelimit_local_total"))
	}
}

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.leases.WithLabelValues("x")
	m.refused.WithLabelValues("x")
	m.local.WithLabelValues("x")
	metricstest.InREADME(t, metricstest.Check(t, reg, "longlink_ratelimit_"), "README.md")
}
