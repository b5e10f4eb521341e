package gateway

import (
	"testing"
	"unsafe"

	"github.com/longlink/longlink/core/link"
)

// TestIdleSizes: what every idle Link connection keeps stays within its
// size class (BENCHMARKS.md "Link: idle connections"): a field added to
// one of these moves each of 19,000 connections up a class. The sizes
// are those of 64-bit platforms.
func TestIdleSizes(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are for 64-bit platforms")
	}
	for _, c := range []struct {
		what      string
		size, max uintptr
	}{
		{"Session", unsafe.Sizeof(Session{}), 208},
		{"linkConn", unsafe.Sizeof(linkConn{}), 144},
		{"link.Conn", unsafe.Sizeof(link.Conn{}), 240},
	} {
		if c.size > c.max {
			t.Errorf("%s is %d bytes, more than its %d-byte size class", c.what, c.size, c.max)
		}
	}
}
