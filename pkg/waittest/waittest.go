// Package waittest waits, in tests, for a condition that other goroutines
// or processes make true: it polls the condition with a deadline instead
// of sleeping for a guessed time. It is imported by tests only.
package waittest

import (
	"testing"
	"time"
)

// interval is how often Until polls: short against the timeouts tests
// use, long enough not to spin on a loaded machine.
const interval = 10 * time.Millisecond

// Until calls cond until it returns true. When timeout passes first it
// fails the test, naming what it waited for.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(interval)
	}
}
