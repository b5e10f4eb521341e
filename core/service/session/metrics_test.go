package session

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
	m.kicks.Inc()
	mfs := metricstest.Check(t, reg, "longlink_service_")
	metricstest.InREADME(t, mfs, "../README.md")
}
