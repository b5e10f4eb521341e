package edge

import (
	"testing"
	"time"
)

// The heartbeat's conn_rate: connections accepted per second since the
// previous sample.
func TestAcceptRate(t *testing.T) {
	var e Edge
	if r := e.acceptRate(); r != 0 {
		t.Fatalf("first sample %v, want 0", r)
	}
	e.rateMu.Lock()
	e.rateAt = e.rateAt.Add(-2 * time.Second)
	e.rateMu.Unlock()
	e.accepted.Add(10)
	if r := e.acceptRate(); r < 4 || r > 5.01 {
		t.Fatalf("10 connections in 2 s: rate %v", r)
	}
}
