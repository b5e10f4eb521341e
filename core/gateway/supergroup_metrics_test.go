package gateway

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/metricstest"
)

func TestSuperMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newSuperMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs := metricstest.Check(t, reg, "longlink_gateway_")
	metricstest.InREADME(t, mfs, "README.md")
}
