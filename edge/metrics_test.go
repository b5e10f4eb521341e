package edge

import (
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	m.connections.WithLabelValues("link", "ok").Inc()
	m.active.WithLabelValues("link").Inc()
	m.bytes.WithLabelValues("link", "up").Inc()
	m.udpPackets.WithLabelValues("udp:media", "up").Inc()
	m.udpDropped.WithLabelValues("udp:media", "limit").Inc()
	m.tunnelOpen.WithLabelValues("link").Observe(0.001)
	m.pathSessions.WithLabelValues("link", "relay-a").Inc()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`^longlink_edge_[a-z_]+$`)
	for _, mf := range mfs {
		if !name.MatchString(mf.GetName()) {
			t.Errorf("metric %s does not follow longlink_edge_*", mf.GetName())
		}
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
