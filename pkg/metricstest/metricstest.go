// Package metricstest checks a component's Prometheus metrics the same way
// in every package: names under the component's prefix in snake_case,
// counters and only counters ending in _total, help text on each, promlint
// clean, and (optionally) every name listed in the component's README. It is
// imported by tests only.
package metricstest

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

var snake = regexp.MustCompile(`^[a-z][a-z0-9_]*[a-z0-9]$`)

// Check gathers g and reports every metric that breaks the naming rules.
// prefixes are the allowed name prefixes, e.g. "longlink_lbs_". It returns the
// gathered families for further checks, and fails when there are none (a
// vector shows up only once it has a child, so tests touch them first).
func Check(t testing.TB, g prometheus.Gatherer, prefixes ...string) []*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) == 0 {
		t.Fatal("no metrics gathered")
	}
	for _, mf := range mfs {
		name := mf.GetName()
		ok := false
		for _, p := range prefixes {
			ok = ok || strings.HasPrefix(name, p)
		}
		if !ok {
			t.Errorf("%s: not under %s", name, strings.Join(prefixes, " or "))
		}
		if !snake.MatchString(name) {
			t.Errorf("%s: not snake_case", name)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help text", name)
		}
		isCounter := mf.GetType() == dto.MetricType_COUNTER
		if isCounter != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: counters, and only counters, end in _total", name)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	return mfs
}

// InREADME reports every metric family not named in any of the files (a
// counter may be listed without its _total suffix).
func InREADME(t testing.TB, mfs []*dto.MetricFamily, files ...string) {
	t.Helper()
	var text strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text.Write(b)
	}
	for _, mf := range mfs {
		if !strings.Contains(text.String(), strings.TrimSuffix(mf.GetName(), "_total")) {
			t.Errorf("%s: not listed in %s", mf.GetName(), strings.Join(files, ", "))
		}
	}
}

// Value sums the counters, gauges and untyped values of the family name in
// g whose labels include every pair of labels ("cluster", "acme", …); 0 when
// there is none.
func Value(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("metricstest.Value: labels %q are not pairs", labels)
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue metric
				}
			}
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return v
}

// Registry is a registry for tests that gives every vector registered with
// it one child (label values "x"), so that Check sees a component's vectors
// without the test touching each of them.
type Registry struct {
	*prometheus.Registry
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{prometheus.NewRegistry()} }

// Register registers c, then touches it if it is a vector.
func (r *Registry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	touch(c)
	return nil
}

// MustRegister registers cs, panicking on an error.
func (r *Registry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// touch gives a vector a child; its label count is found by trying.
func touch(c prometheus.Collector) {
	var get func(lvs ...string) error
	switch v := c.(type) {
	case *prometheus.CounterVec:
		get = func(lvs ...string) error { _, err := v.GetMetricWithLabelValues(lvs...); return err }
	case *prometheus.GaugeVec:
		get = func(lvs ...string) error { _, err := v.GetMetricWithLabelValues(lvs...); return err }
	case *prometheus.HistogramVec:
		get = func(lvs ...string) error { _, err := v.GetMetricWithLabelValues(lvs...); return err }
	case *prometheus.SummaryVec:
		get = func(lvs ...string) error { _, err := v.GetMetricWithLabelValues(lvs...); return err }
	default:
		return
	}
	lvs := []string{}
	for range 8 {
		lvs = append(lvs, "x")
		if get(lvs...) == nil {
			return
		}
	}
}
