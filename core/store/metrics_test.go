package store

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/metricstest"
)

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg, func() float64 { return 0 }, newPGConnector(nil, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Vectors only show up once they have a child.
	m.appends.WithLabelValues("stored").Inc()
	mfs := metricstest.Check(t, reg, "longlink_store_")
	metricstest.InREADME(t, mfs, "README.md")
}
