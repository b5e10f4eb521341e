package wan

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestWorldThroughputCeiling measures what the user-space path carries on a
// perfect link: one TCP stream for two seconds. The figure goes in the README;
// the assertion only catches a path that has become unusably slow.
func TestWorldThroughputCeiling(t *testing.T) {
	w := startWorld(t, `
name: ceiling
nodes: [{name: a}, {name: b}]
links: [{a: a, b: b}]
`)
	mbit, pps := measureTCP(t, w, "a", "b", 2*time.Second)
	t.Logf("perfect link: one TCP stream %.0f Mbit/s, %.0f packets/s a>b", mbit, pps)
	if mbit < 200 {
		t.Fatalf("user-space path carries only %.0f Mbit/s", mbit)
	}
}

// measureTCP sends as fast as it can from one node to the other for d and
// returns the goodput and the packet rate of the forward direction.
func measureTCP(t *testing.T, w *World, from, to string, d time.Duration) (mbit, pps float64) {
	t.Helper()
	addr := w.Addr(to).String() + ":7010"
	ln := listenIn(t, w, to, "tcp", addr)
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	c, err := dialIn(w, from, "tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := w.Stats(from, to)
	start := time.Now()
	buf := make([]byte, 256<<10)
	for time.Since(start) < d {
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	n := <-got
	el := time.Since(start)
	c.Close()
	after, _ := w.Stats(from, to)
	return float64(n*8) / el.Seconds() / 1e6, float64(after.Delivered-before.Delivered) / el.Seconds()
}
