package wan

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/metricstest"
)

// TestMetricNames also checks that two worlds can register on separate
// registries.
func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	m.packets.WithLabelValues("a>b", "delivered").Inc()
	m.bytes.WithLabelValues("a>b").Add(1)
	m.dropped.WithLabelValues("a", "no_link").Inc()
	m.queued.WithLabelValues("a>b").Set(1)
	if mfs := metricstest.Check(t, reg, "longlink_wanemu_"); len(mfs) != 4 {
		t.Fatalf("%d metric families, want 4", len(mfs))
	}
	newMetrics(prometheus.NewRegistry()) // a second instance must not panic
}
