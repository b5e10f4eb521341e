package lbs

import (
	"context"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestShutdownLeavesNoGoroutines starts and stops a member and checks that
// every goroutine it started is gone.
func TestShutdownLeavesNoGoroutines(t *testing.T) {
	http.DefaultClient.CloseIdleConnections()
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	cfg := testConfig(t, "leak", dir, filepath.Join(dir, "ca"))
	cfg.Cluster.Bootstrap = true
	cfg.InitialPolicy = "testdata/policy.yaml"
	l, err := New(cfg, Deps{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l.WaitReady(ctx)
	query(t, l, "appkey=demo", "")
	http.DefaultClient.CloseIdleConnections()
	if err := l.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			var ours []string
			for _, g := range strings.Split(string(buf[:n]), "\n\n") {
				if strings.Contains(g, "longlink") || strings.Contains(g, "raft") || strings.Contains(g, "miekg") {
					ours = append(ours, g)
				}
			}
			t.Fatalf("%d goroutines before, %d after shutdown:\n%s", before, runtime.NumGoroutine(), strings.Join(ours, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
