package turn

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// Shutdown never outlives its context: allocations that clients keep
// alive (UDP, TCP over a control connection, an RFC 6062 TCP relay with a
// peer connection open) are closed when the context ends, and a context
// without a deadline does not wait for them at all.
func TestShutdownBoundedByContext(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration // 0: a context without a deadline
		within  time.Duration
	}{
		{"deadline", 300 * time.Millisecond, 1500 * time.Millisecond},
		{"no-deadline", 0, 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, nil)
			peer := echoPeer(t, "udp4", "127.0.0.1:0")
			if _, err := udpClient(t, ts.Addrs().UDP[0], cred(t, testSecret, "app", "alice", time.Hour)).Allocate(); err != nil {
				t.Fatal(err)
			}
			conn, err := net.Dial("tcp", ts.Addrs().TCP[0].String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			relay := allocateOver(t, conn)
			if err := roundTrip(t, relay, peer.LocalAddr(), "before shutdown"); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
				}
			}()
			conn2, err := net.Dial("tcp", ts.Addrs().TCP[0].String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn2.Close()
			alloc, err := streamClient(t, conn2).AllocateTCP()
			if err != nil {
				t.Fatal(err)
			}
			defer alloc.Close()
			dc, err := alloc.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer dc.Close()
			if n := ts.Allocations(); n != 3 {
				t.Fatalf("%d allocations, want 3", n)
			}

			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.timeout > 0 {
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
			}
			defer cancel()
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- ts.Shutdown(ctx) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Shutdown still running after 10s")
			}
			if d := time.Since(start); d > tc.within || d < tc.timeout {
				t.Fatalf("Shutdown took %s, want %s..%s", d, tc.timeout, tc.within)
			}
			if n := ts.Allocations(); n != 0 {
				t.Fatalf("%d allocations after Shutdown", n)
			}
		})
	}
}
