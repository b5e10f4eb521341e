package lbs

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/geo"
	"github.com/longlink/longlink/pkg/metricstest"
)

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	// Touch the vectors so that they are gathered.
	m.adminRequests.WithLabelValues("ok").Inc()
	m.transitions.WithLabelValues("up").Inc()
	if _, err := geo.New(geo.Config{}, geo.Deps{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	mfs := metricstest.Check(t, reg, "longlink_lbs_", "longlink_geo_")
	metricstest.InREADME(t, mfs, "README.md", "../geo/README.md")
	if len(mfs) < 12 {
		t.Fatalf("only %d metrics gathered", len(mfs))
	}
}
