package relay

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/longlink/longlink/pkg/metricstest"
	"github.com/longlink/longlink/pkg/pki"
	"github.com/longlink/longlink/pkg/waittest"
)

// laneValue finds the sample of metric name whose labels include want.
func laneValue(mfs []*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func gather(t *testing.T, g prometheus.Gatherer) []*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// TestLaneMetrics: a relay keeps QUIC and KCP lanes to a real egress on
// loopback; both nodes' registries export every live connection's
// transport state, read afresh at each scrape.
func TestLaneMetrics(t *testing.T) {
	ca, _ := pki.NewCA("cluster")
	ecert, _ := ca.Issue("egress", "127.0.0.1")
	rcert, _ := ca.Issue("relay", "127.0.0.1")
	key := []byte("lane-metrics-cluster-key-012345")
	ctx := context.Background()

	tcpAddr, _ := proxyEcho(t)
	ecfg := DefaultEgress()
	ecfg.Name = "egress"
	ecfg.Cluster = "demo"
	ecfg.Listen = map[string]string{"quic": "127.0.0.1:0", "kcp": "127.0.0.1:0"}
	ecfg.Services = map[string]Service{"link": {Kind: "link", Address: tcpAddr}}
	ereg := prometheus.NewRegistry()
	eg, err := NewEgress(ecfg, Deps{Registerer: ereg, TLS: pki.MutualTLS(ecert, ca.Pool()), ClusterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := eg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eg.Shutdown(ctx) })

	cfg := Default()
	cfg.Name = "relay-a"
	cfg.Listen = map[string]string{"quic": "127.0.0.1:0"}
	cfg.Routing = fastRouting(Route{Cluster: "demo", NextHops: []Hop{
		{Name: "egress-quic", Transport: "quic", Address: eg.Addr("quic").String()},
		{Name: "egress-kcp", Transport: "kcp", Address: eg.Addr("kcp").String()},
	}})
	rreg := prometheus.NewRegistry()
	n, err := New(cfg, Deps{Registerer: rreg, TLS: pki.MutualTLS(rcert, ca.Pool()), ClusterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown(ctx) })

	lanes := 0
	waittest.Until(t, 10*time.Second, "every lane of both paths up", func() bool {
		pls := n.router.liveLanes()
		for _, pl := range pls {
			for _, l := range pl.lanes {
				if l == nil {
					return false
				}
			}
			lanes = len(pl.lanes)
		}
		return len(pls) == 2 && n.router.Primary("demo") != ""
	})
	waittest.Until(t, 5*time.Second, "the egress's side of every lane", func() bool {
		eg.mu.Lock()
		defer eg.mu.Unlock()
		return len(eg.conns) == 2*lanes
	})

	hops := []struct{ path, transport string }{{"egress-quic", "quic"}, {"egress-kcp", "kcp"}}
	mfs := gather(t, rreg)
	for _, h := range hops {
		for i := range lanes {
			l := map[string]string{"node": "relay-a", "side": "dialed", "path": h.path, "transport": h.transport, "lane": strconv.Itoa(i)}
			if v, ok := laneValue(mfs, "longlink_relay_lane_rtt_seconds", l); !ok || (h.transport == "quic" && v <= 0) {
				t.Errorf("%s lane %d: rtt %v (exported %v)", h.path, i, v, ok)
			}
			for _, name := range []string{"longlink_relay_lane_sent_packets_total", "longlink_relay_lane_received_packets_total",
				"longlink_relay_lane_sent_bytes_total", "longlink_relay_lane_received_bytes_total"} {
				if v, _ := laneValue(mfs, name, l); v <= 0 {
					t.Errorf("%s lane %d: %s = %v", h.path, i, name, v)
				}
			}
			cwnd, hasCwnd := laneValue(mfs, "longlink_relay_lane_cwnd_bytes", l)
			_, hasLost := laneValue(mfs, "longlink_relay_lane_lost_packets_total", l)
			rto, hasRTO := laneValue(mfs, "longlink_relay_lane_rto_seconds", l)
			switch h.transport {
			case "quic":
				if cwnd <= 0 || !hasLost || hasRTO {
					t.Errorf("%s lane %d: cwnd %v, lost exported %v, rto exported %v", h.path, i, cwnd, hasLost, hasRTO)
				}
			case "kcp":
				if rto <= 0 || hasCwnd || hasLost {
					t.Errorf("%s lane %d: rto %v, cwnd exported %v, lost exported %v", h.path, i, rto, hasCwnd, hasLost)
				}
			}
		}
		if _, ok := laneValue(mfs, "longlink_relay_lane_rtt_seconds", map[string]string{"path": h.path, "lane": strconv.Itoa(lanes)}); ok {
			t.Errorf("%s: a lane beyond the %d kept", h.path, lanes)
		}
	}

	// The egress sees the relay's connections as accepted ones, one slot
	// per connection from the relay's IP.
	emfs := gather(t, ereg)
	for _, h := range hops {
		for i := range lanes {
			l := map[string]string{"node": "egress", "side": "accepted", "path": "127.0.0.1", "transport": h.transport, "lane": strconv.Itoa(i)}
			if v, _ := laneValue(emfs, "longlink_relay_lane_received_packets_total", l); v <= 0 {
				t.Errorf("egress: accepted %s connection %d received %v packets", h.transport, i, v)
			}
		}
	}

	// Lane 0 carries the probes: its counters move between scrapes.
	time.Sleep(200 * time.Millisecond)
	later := gather(t, rreg)
	for _, h := range hops {
		l := map[string]string{"side": "dialed", "path": h.path, "lane": "0"}
		before, _ := laneValue(mfs, "longlink_relay_lane_sent_packets_total", l)
		after, _ := laneValue(later, "longlink_relay_lane_sent_packets_total", l)
		if after <= before {
			t.Errorf("%s lane 0: sent packets %v then %v while probing", h.path, before, after)
		}
	}

	for _, g := range []prometheus.Gatherer{rreg, ereg} {
		metricstest.InREADME(t, metricstest.Check(t, g, "longlink_relay_"), "README.md")
	}
}
