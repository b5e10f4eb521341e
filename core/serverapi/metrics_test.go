package serverapi

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
	m.requests.WithLabelValues("r", "0").Inc()
	m.latency.WithLabelValues("r").Observe(0)
	m.authFailures.WithLabelValues("replay").Inc()
	fm, err := newFrontMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	fm.forwarded.WithLabelValues("200").Inc()
	metricstest.InREADME(t, metricstest.Check(t, reg, "longlink_serverapi_"), "README.md")
}
