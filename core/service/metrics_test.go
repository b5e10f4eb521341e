package service

import (
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestMetricNames keeps every metric of the package under
// longlink_service_, snake_case, with counters ending in _total.
func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// Vectors only show up once they have a child.
	m.requests.WithLabelValues("send", "0").Inc()
	m.latency.WithLabelValues("send").Observe(0)
	m.pushes.WithLabelValues("message").Inc()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	valid := regexp.MustCompile(`^longlink_service_[a-z][a-z0-9_]*[a-z0-9]$`)
	for _, mf := range mfs {
		name := mf.GetName()
		if !valid.MatchString(name) {
			t.Errorf("%s: want longlink_service_<snake_case>", name)
		}
		if mf.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("%s: a counter must end in _total", name)
		}
		if mf.GetType() != dto.MetricType_COUNTER && strings.HasSuffix(name, "_total") {
			t.Errorf("%s: only counters end in _total", name)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help text", name)
		}
	}
}
