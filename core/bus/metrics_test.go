package bus

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/pkg/metricstest"
)

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// Vectors only show up once they have a child.
	_ = m
	mfs := metricstest.Check(t, reg, "longlink_bus_")
	metricstest.InREADME(t, mfs, "README.md")
}

// TestServerInfo: longlink_bus_server_info names the server the process
// is connected to (one series), none before the connection.
func TestServerInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := Default()
	cfg.Listen = ""
	cfg.StoreDir = t.TempDir()
	b, err := New(cfg, Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "longlink_bus_server_info"); err != nil || n != 0 {
		t.Fatalf("before start: %d series (%v)", n, err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	if n, err := testutil.GatherAndCount(reg, "longlink_bus_server_info"); err != nil || n != 1 {
		t.Fatalf("connected: %d series (%v)", n, err)
	}
}
