package lbs

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/geo"
)

// TestMetricNames: every metric is named longlink_lbs_* or longlink_geo_*,
// has help text, and is listed in the README.
func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	// touch the vectors so that they are gathered
	m.adminRequests.WithLabelValues("ok").Inc()
	m.transitions.WithLabelValues("up").Inc()
	if _, err := geo.New(geo.Config{}, geo.Deps{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	readme, _ := os.ReadFile("README.md")
	geoReadme, _ := os.ReadFile("../geo/README.md")
	for _, mf := range mfs {
		n := mf.GetName()
		if !strings.HasPrefix(n, "longlink_lbs_") && !strings.HasPrefix(n, "longlink_geo_") {
			t.Errorf("%s: not longlink_lbs_* or longlink_geo_*", n)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help", n)
		}
		if strings.HasSuffix(n, "_total") != (mf.GetType().String() == "COUNTER") {
			t.Errorf("%s: counters and only counters end in _total", n)
		}
		if !strings.Contains(string(readme), n) && !strings.Contains(string(geoReadme), n) {
			t.Errorf("%s: not in the README", n)
		}
	}
	if len(mfs) < 12 {
		t.Fatalf("only %d metrics gathered", len(mfs))
	}
}
