package turn

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricNames keeps every metric under longlink_turn_ with help text,
// counters ending in _total, and listed in the README.
func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// Vectors appear only once they have a child.
	m.credentialsAccepted.WithLabelValues("x").Inc()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	readme := readFile(t, "README.md")
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "longlink_turn_") {
			t.Errorf("%s: not under longlink_turn_", name)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help", name)
		}
		if mf.GetType().String() == "COUNTER" && !strings.HasSuffix(name, "_total") {
			t.Errorf("%s: counter without _total", name)
		}
		base := strings.TrimSuffix(name, "_total")
		if !strings.Contains(readme, base) {
			t.Errorf("%s: not in README.md", name)
		}
	}
	if len(mfs) < 15 {
		t.Fatalf("only %d metrics gathered", len(mfs))
	}
}
