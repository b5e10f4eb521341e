package lbs

import (
	"net/netip"
	"testing"
	"time"
)

func TestRateLimiter(t *testing.T) {
	r := newRateLimiter(10, 5, 0)
	a := netip.MustParseAddr("198.51.100.7")
	same24 := netip.MustParseAddr("198.51.100.200")
	other := netip.MustParseAddr("203.0.113.1")
	n := 0
	for range 20 {
		if r.allow(a) {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("burst of 5 allowed %d", n)
	}
	if r.allow(same24) {
		t.Fatal("same /24 not limited together")
	}
	if !r.allow(other) {
		t.Fatal("another client limited")
	}
	time.Sleep(250 * time.Millisecond) // 10/s refills 2 tokens
	n = 0
	for range 5 {
		if r.allow(a) {
			n++
		}
	}
	if n < 1 || n > 3 {
		t.Fatalf("after 250ms at 10/s: %d allowed", n)
	}
}
