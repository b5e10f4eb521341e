// Package bustest starts buses for tests. No daemon imports it.
package bustest

import (
	"context"
	"testing"

	"github.com/longlink/longlink/core/bus"
)

// Embedded starts an embedded bus with JetStream and no listener (only
// this process connects), its data in a temporary directory, and shuts it
// down when the test ends.
func Embedded(t testing.TB) *bus.Bus {
	t.Helper()
	cfg := bus.Default()
	cfg.Listen = ""
	cfg.StoreDir = t.TempDir()
	return Start(t, cfg)
}

// Start starts a bus of cfg and shuts it down when the test ends.
func Start(t testing.TB, cfg bus.Config) *bus.Bus {
	t.Helper()
	b, err := bus.New(cfg, bus.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	return b
}
