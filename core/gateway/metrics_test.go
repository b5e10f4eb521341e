package gateway

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestMetricNames checks the naming rules of every gateway metric.
func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// Touch the vectors so that they are gathered.
	m.refused.WithLabelValues("x")
	m.protocolErrors.WithLabelValues("x")
	m.logins.WithLabelValues("x")
	m.requests.WithLabelValues("x")
	m.requestErrors.WithLabelValues("x")
	m.kicks.WithLabelValues("x")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) < 15 {
		t.Fatalf("only %d metrics gathered", len(mfs))
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "longlink_gateway_") {
			t.Errorf("%s: missing the longlink_gateway_ prefix", name)
		}
		if mf.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("%s: counters end in _total", name)
		}
		if mf.GetType() != dto.MetricType_COUNTER && strings.HasSuffix(name, "_total") {
			t.Errorf("%s: only counters end in _total", name)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help text", name)
		}
	}
}
