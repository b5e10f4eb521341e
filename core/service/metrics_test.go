package service_test

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
	"github.com/longlink/longlink/pkg/metricstest"
)

// TestMetricNames checks the metrics of every domain and of the dispatcher
// at once: a node registers them all when it is built (nothing connects
// before Start).
func TestMetricNames(t *testing.T) {
	st, _ := storetest.Open(t, store.DriverSQLite)
	reg := metricstest.NewRegistry()
	if _, err := service.New(service.Default(), service.Deps{NATS: new(nats.Conn), Store: st, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	mfs := metricstest.Check(t, reg, "longlink_service_")
	metricstest.InREADME(t, mfs, "README.md")
	if len(mfs) < 24 {
		t.Fatalf("%d metric families, want every domain's", len(mfs))
	}
}
