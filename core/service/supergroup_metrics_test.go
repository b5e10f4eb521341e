package service

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/metricstest"
)

func TestSuperMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newSuperMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.jobs.WithLabelValues("done").Inc()
	mfs := metricstest.Check(t, reg, "longlink_service_")
	metricstest.InREADME(t, mfs, "README.md")
}
