package metricstest

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// recorder is a testing.TB that keeps the errors instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }

func TestCheckFindsBadNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_x_good_total", Help: "Fine."}),
		prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_x_requests", Help: "A counter without _total."}),
		prometheus.NewGauge(prometheus.GaugeOpts{Name: "other_thing", Help: "Wrong prefix."}),
		prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_x_queue_total", Help: "A gauge with _total."}),
	)
	r := &recorder{TB: t}
	mfs := Check(r, reg, "longlink_x_")
	if len(mfs) != 4 {
		t.Fatalf("%d families", len(mfs))
	}
	want := map[string]bool{"longlink_x_requests": false, "other_thing": false, "longlink_x_queue_total": false}
	for _, e := range r.errs {
		for name := range want {
			if len(e) >= len(name) && e[:len(name)] == name {
				want[name] = true
			}
		}
		if len(e) >= len("longlink_x_good_total") && e[:len("longlink_x_good_total")] == "longlink_x_good_total" {
			t.Errorf("a good metric was reported: %s", e)
		}
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("%s: not reported; errors: %v", name, r.errs)
		}
	}
}

func TestRegistryTouchesVectors(t *testing.T) {
	reg := NewRegistry()
	reg.MustRegister(
		prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_events_total", Help: "h"}, []string{"a", "b"}),
		prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "x_seconds", Help: "h"}, []string{"op"}),
		prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_open", Help: "h"}),
	)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if len(names) != 3 {
		t.Fatalf("gathered %v, want the two vectors and the gauge", names)
	}
}
