package wan

import (
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricNames keeps the names in the longlink_wanemu_ namespace with the
// suffixes the project uses, and checks that two worlds can register on
// separate registries.
func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	m.packets.WithLabelValues("a>b", "delivered").Inc()
	m.bytes.WithLabelValues("a>b").Add(1)
	m.dropped.WithLabelValues("a", "no_link").Inc()
	m.queued.WithLabelValues("a>b").Set(1)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 4 {
		t.Fatalf("%d metric families, want 4", len(families))
	}
	name := regexp.MustCompile(`^longlink_wanemu_[a-z_]+(_total|_bytes_total|_packets)$`)
	for _, f := range families {
		if !name.MatchString(f.GetName()) {
			t.Errorf("metric %q does not follow longlink_wanemu_<thing>_total", f.GetName())
		}
		if f.GetHelp() == "" {
			t.Errorf("metric %q has no help", f.GetName())
		}
	}
	newMetrics(prometheus.NewRegistry()) // a second instance must not panic
}
