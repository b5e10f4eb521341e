package waittest

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestUntilReturnsOnceTrue(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			n.Add(1)
		}
	}()
	Until(t, 10*time.Second, "three increments", func() bool { return n.Load() == 3 })
}

// recorder is a testing.TB that records a failure instead of ending the
// test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = format
	panic(r)
}

func TestUntilFailsAtTheDeadline(t *testing.T) {
	r := &recorder{TB: t}
	calls := 0
	func() {
		defer func() {
			if p := recover(); p != r {
				t.Fatalf("Until returned (or panicked with %v) for a condition that never holds", p)
			}
		}()
		Until(r, 50*time.Millisecond, "never", func() bool { calls++; return false })
	}()
	if r.failed == "" || calls < 2 {
		t.Fatalf("failed %q after %d calls, want a failure after polling more than once", r.failed, calls)
	}
}
