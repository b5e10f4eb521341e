package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/waittest"
)

// readyComponent is a component that reports readiness (as the LBS does
// until it has caught up with its cluster).
type readyComponent struct{ ready atomic.Bool }

func (*readyComponent) Start(context.Context) error    { return nil }
func (*readyComponent) Shutdown(context.Context) error { return nil }
func (c *readyComponent) Ready() error {
	if !c.ready.Load() {
		return errors.New("catching up")
	}
	return nil
}

// /readyz follows a component's Ready once it runs.
func TestServeComponentReadiness(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // serveComponent binds it
	c := &readyComponent{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serveComponent(ctx, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), addr, "test", c, time.Second, nil)
	}()
	hc := &http.Client{Timeout: time.Second}
	readyz := func() int {
		resp, err := hc.Get("http://" + addr + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waittest.Until(t, 5*time.Second, "the debug listener", func() bool { return readyz() != 0 })
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d while the component is not ready", code)
	}
	c.ready.Store(true)
	if code := readyz(); code != http.StatusOK {
		t.Fatalf("/readyz %d once the component is ready", code)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
