package store

import (
	"errors"
	"testing"
	"time"
)

func admitN(s *shedder, n int) int {
	admitted := 0
	for range n {
		if s.admit(1) {
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

// TestShedderAdmitsUnitsWhole: a unit (one sender's batch) is admitted or
// refused as a whole, so a refusal never stores the end of a batch without
// its start; the refusal carries the resend hint.
func TestShedderAdmitsUnitsWhole(t *testing.T) {
	s := &shedder{maxDelay: 10 * time.Millisecond, workers: 1}
	s.observe(100, 10*time.Millisecond) // 301 may wait
	if got := admitN(s, 290); got != 290 {
		t.Fatalf("admitted %d, want 290", got)
	}
	if !s.admit(20) {
		t.Fatal("a unit of 20 refused with 290 waiting (the allowance is counted before the unit)")
	}
	if s.admit(5) {
		t.Fatal("a unit admitted over the allowance")
	}
	if got := s.waiting.Load(); got != 310 {
		t.Fatalf("waiting %d, want 310: a refused unit must count none of its appends", got)
	}
	if err := s.busy(); !errors.Is(err, ErrBusy) {
		t.Fatalf("busy() = %v, not ErrBusy", err)
	} else if be := (*BusyError)(nil); !errors.As(err, &be) || be.RetryAfter != 20*time.Millisecond {
		t.Fatalf("busy() = %#v, want a RetryAfter of two 10ms batches", err)
	}
	s.done(310)
	if !s.admit(5) {
		t.Fatal("the unit refused again with an empty queue")
	}
}
