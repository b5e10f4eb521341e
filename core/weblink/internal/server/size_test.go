package server

import (
	"testing"
	"unsafe"
)

// TestIdleSizes: the session every idle WebLink connection keeps stays in
// its size class (BENCHMARKS.md "Link: idle connections"). 64-bit sizes.
func TestIdleSizes(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are for 64-bit platforms")
	}
	if n := unsafe.Sizeof(session{}); n > 192 {
		t.Errorf("session is %d bytes, more than its 192-byte size class", n)
	}
}
