package gateway

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
	// Vectors only show up once they have a child.
	m.refused.WithLabelValues("x")
	m.protocolErrors.WithLabelValues("x")
	m.logins.WithLabelValues("x")
	m.requests.WithLabelValues("x")
	m.requestErrors.WithLabelValues("x")
	m.kicks.WithLabelValues("x")
	m.handshakeDrops.WithLabelValues("x")
	mfs := metricstest.Check(t, reg, "longlink_gateway_")
	metricstest.InREADME(t, mfs, "README.md")
}
