package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/longlink/longlink/core/bus"
)

// TestStartWaitsForJetStream: a server that does not reach JetStream yet
// (a site's NATS cluster whose gateways to the stretched JetStream cluster
// still connect) answers "jetstream not enabled"; Start waits until
// JetStream answers instead of failing, and fails when ctx ends first. A
// core started in that moment failed its start creating the presence
// bucket (TestSiteFailover under load).
func TestStartWaitsForJetStream(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(5 * time.Second) {
		t.Fatal("server not ready")
	}
	cfg := bus.Default()
	cfg.Mode, cfg.URLs = bus.ModeExternal, []string{srv.ClientURL()}

	// No JetStream at all: Start gives up when ctx ends.
	b, err := bus.New(cfg, bus.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	err = b.Start(ctx)
	cancel()
	if err == nil {
		t.Fatal("started without JetStream")
	}
	if nc := b.Conn(); nc != nil && !nc.IsClosed() {
		t.Fatal("the failed start left its connection open")
	}

	// JetStream comes a moment after the start: Start waits for it.
	b, err = bus.New(cfg, bus.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	const late = 300 * time.Millisecond
	begun := time.Now()
	time.AfterFunc(late, func() {
		if err := srv.EnableJetStream(&server.JetStreamConfig{StoreDir: t.TempDir(), MaxMemory: 64 << 20, MaxStore: 64 << 20}); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begun); took < late {
		t.Fatalf("started after %v, before JetStream was there (%v)", took, late)
	}
	if _, err := b.JetStream().AccountInfo(ctx); err != nil {
		t.Fatal(err)
	}
}
