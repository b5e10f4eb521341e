package store

import (
	"testing"
	"time"
)

func admitN(s *shedder, n int) int {
	admitted := 0
	for range n {
		if s.admit() {
			admitted++
		}
	}
	return admitted
}

func TestShedderAdmit(t *testing.T) {
	s := &shedder{maxDelay: 10 * time.Millisecond, workers: 1}
	// No estimate yet: everything is admitted.
	if got := admitN(s, 100); got != 100 {
		t.Fatalf("admitted %d of 100 without an estimate", got)
	}
	s.done(100)

	// 100 appends per 10ms batch: 10,000/s; allowed ahead: two batch times
	// plus the budget, 30ms, 300 appends.
	s.observe(100, 10*time.Millisecond)
	if got := admitN(s, 400); got != 301 {
		t.Fatalf("admitted %d at 10,000/s, 10ms batches, 10ms budget; want 301", got)
	}
	if got := s.waiting.Load(); got != 301 {
		t.Fatalf("waiting %d after refusals, want 301 (refusals must not count)", got)
	}
	s.done(301)

	// A closed group of senders splits into two alternating batches (one
	// commits while the other queues): never refused, even with batches
	// far slower than the budget.
	s = &shedder{maxDelay: 10 * time.Millisecond, workers: 1}
	s.observe(200, 100*time.Millisecond)
	if got := admitN(s, 400); got != 400 {
		t.Fatalf("admitted %d of a closed group of 400 in batches of 200", got)
	}
	s.done(400)

	// Slow commits (200ms for 70 appends, a starved writer): the queue
	// may still outgrow the batches (so they grow), not stick at their size.
	s = &shedder{maxDelay: 10 * time.Millisecond, workers: 1}
	s.observe(70, 200*time.Millisecond)
	if got := admitN(s, 300); got <= 140 {
		t.Fatalf("admitted %d with 70-append batches of 200ms: batches could not grow", got)
	}

	// Several committers share the queue.
	s = &shedder{maxDelay: 10 * time.Millisecond, workers: 4}
	s.observe(100, 10*time.Millisecond)
	if got := admitN(s, 1500); got != 1201 {
		t.Fatalf("admitted %d with 4 committers, want 1201", got)
	}

	// Small batches give no estimate (their time is mostly the fixed cost
	// of a commit), and shedding can be disabled.
	s = &shedder{maxDelay: 10 * time.Millisecond, workers: 1}
	s.observe(1, time.Second)
	if got := admitN(s, 1000); got != 1000 {
		t.Fatalf("admitted %d after a batch of 1: refused on a small batch's estimate", got)
	}
	s = &shedder{maxDelay: -1, workers: 1}
	s.observe(100, time.Second)
	if got := admitN(s, 1000); got != 1000 {
		t.Fatalf("refused with shedding disabled: admitted %d", got)
	}
}
