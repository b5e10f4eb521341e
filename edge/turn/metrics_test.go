package turn

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
	// Vectors appear only once they have a child.
	m.credentialsAccepted.WithLabelValues("x").Inc()
	mfs := metricstest.Check(t, reg, "longlink_turn_")
	metricstest.InREADME(t, mfs, "README.md")
	if len(mfs) < 15 {
		t.Fatalf("only %d metrics gathered", len(mfs))
	}
}
