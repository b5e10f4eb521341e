package service

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
	// Vectors only show up once they have a child.
	m.pushes.WithLabelValues("message").Inc()
	rm, err := newRoomMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	rm.rooms.WithLabelValues("created").Inc()
	rm.enters.WithLabelValues("ok").Inc()
	rm.rateLimited.WithLabelValues("room").Inc()
	rm.refused.WithLabelValues("guest").Inc()
	rm.events.WithLabelValues("closed").Inc()
	mfs := metricstest.Check(t, reg, "longlink_service_")
	metricstest.InREADME(t, mfs, "README.md")
}
