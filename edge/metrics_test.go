package edge

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/metricstest"
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
	m.logins.WithLabelValues("answered").Inc()
	mfs := metricstest.Check(t, reg, "longlink_edge_")
	metricstest.InREADME(t, mfs, "README.md")
}
