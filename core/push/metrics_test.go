package push

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/metricstest"
)

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := NewPresenceMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// Vectors only show up once they have a child.
	m.tasks.WithLabelValues("queued").Inc()
	m.deliveries.WithLabelValues("apns", "ok").Inc()
	m.latency.WithLabelValues("apns").Observe(0)
	m.tokensPurged.WithLabelValues("apns").Inc()
	m.authTokens.WithLabelValues("apns", "ok").Inc()
	pm.updates.WithLabelValues("open").Inc()
	pm.errors.WithLabelValues("lease").Inc()
	mfs := metricstest.Check(t, reg, "longlink_push_")
	metricstest.InREADME(t, mfs, "README.md")
}
