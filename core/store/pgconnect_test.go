package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeConnector fails or succeeds as told and counts its attempts.
type fakeConnector struct {
	mu       sync.Mutex
	err      error
	attempts int
	block    chan struct{} // when set, an attempt waits for it
}

func (f *fakeConnector) Connect(context.Context) (driver.Conn, error) {
	f.mu.Lock()
	f.attempts++
	err, block := f.err, f.block
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	if err != nil {
		return nil, err
	}
	return fakeConn{}, nil
}

func (f *fakeConnector) Driver() driver.Driver { return nil }

func (f *fakeConnector) set(err error) (attempts int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
	return f.attempts
}

type fakeConn struct{ driver.Conn }

func TestPGConnectorPauses(t *testing.T) {
	ctx := context.Background()
	down := errors.New("no writable server")
	inner := &fakeConnector{err: down}
	c := newPGConnector(inner, 250*time.Millisecond)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }

	// The first attempt fails: an UnavailableError saying when the next is.
	_, err := c.Connect(ctx)
	var ue *UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnavailable) || !errors.Is(err, down) || ue.RetryAfter != 250*time.Millisecond {
		t.Fatalf("first failure: %v (%#v), want an UnavailableError after 250ms wrapping the cause", err, ue)
	}
	// Within connect_retry nothing reaches the servers.
	now = now.Add(100 * time.Millisecond)
	for range 10 {
		_, err := c.Connect(ctx)
		if !errors.As(err, &ue) || ue.RetryAfter != 150*time.Millisecond {
			t.Fatalf("while paused: %v, want an UnavailableError after 150ms", err)
		}
	}
	if n := inner.set(down); n != 1 {
		t.Fatalf("%d attempts reached the servers while paused, want 1", n)
	}
	if c.refused.Load() != 10 || c.failures.Load() != 1 || c.reachable() {
		t.Fatalf("refused %d failures %d reachable %v, want 10, 1, false", c.refused.Load(), c.failures.Load(), c.reachable())
	}

	// After it, one attempt goes through at a time; the others fail at once.
	now = now.Add(200 * time.Millisecond)
	inner.mu.Lock()
	inner.block = make(chan struct{})
	inner.mu.Unlock()
	inner.set(nil) // the standby was promoted
	probe := make(chan error, 1)
	go func() {
		_, err := c.Connect(ctx)
		probe <- err
	}()
	waitAttempts(t, inner, 2)
	if _, err := c.Connect(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("during the probe: %v, want ErrUnavailable at once", err)
	}
	close(inner.block)
	if err := <-probe; err != nil {
		t.Fatalf("probe: %v", err)
	}
	// Reachable again: every attempt goes through.
	for range 3 {
		if _, err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := inner.set(nil); n != 5 || !c.reachable() {
		t.Fatalf("%d attempts, reachable %v; want 5 (1 failed, the probe, 3 after), true", n, c.reachable())
	}

	// A caller that gives up teaches nothing about the servers.
	inner.set(down)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Connect(cctx); errors.Is(err, ErrUnavailable) || !c.reachable() {
		t.Fatalf("cancelled attempt: %v, reachable %v; want the plain error, still reachable", err, c.reachable())
	}
}

func waitAttempts(t *testing.T, f *fakeConnector, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		got := f.attempts
		f.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d attempts, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}
