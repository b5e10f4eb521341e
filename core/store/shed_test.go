package store

import (
	"testing"
	"time"
)

func TestShedderAdmit(t *testing.T) {
	s := &shedder{maxDelay: 10 * time.Millisecond, workers: 1}
	// No estimate yet: everything is admitted.
	for range 100 {
		if !s.admit() {
			t.Fatal("refused without an estimate")
		}
	}
	s.done(100)
	// Small batches say nothing about the per-append cost.
	s.observe(shedFloor-1, time.Second)
	if s.perMsg.Load() != 0 {
		t.Fatal("a small batch set the estimate")
	}
	s.observe(100, 100*time.Millisecond) // 1ms per append
	admitted := 0
	for range 50 {
		if s.admit() {
			admitted++
		}
	}
	// Up to shedFloor always; beyond, while (waiting-1)*1ms <= 10ms.
	if want := shedFloor; admitted != want {
		t.Fatalf("admitted %d of 50 at 1ms per append, want %d", admitted, want)
	}
	if got := s.waiting.Load(); got != int64(admitted) {
		t.Fatalf("waiting %d after refusals, want %d (refusals must not count)", got, admitted)
	}
	s.done(admitted)
	// Cheaper appends: the estimate follows (EWMA) and more fit the budget.
	for range 20 {
		s.observe(100, 10*time.Millisecond) // 100µs per append
	}
	admitted = 0
	for range 200 {
		if s.admit() {
			admitted++
		}
	}
	if admitted < 90 || admitted > 110 {
		t.Fatalf("admitted %d at ~100µs per append within 10ms, want ~101", admitted)
	}
	s.done(admitted)
	// Several committers share the queue.
	s.workers = 4
	admitted = 0
	for range 1000 {
		if s.admit() {
			admitted++
		}
	}
	if admitted < 360 || admitted > 440 {
		t.Fatalf("admitted %d with 4 committers, want ~400", admitted)
	}
	s.done(admitted)
	// Disabled.
	s.maxDelay = -1
	for range 1000 {
		if !s.admit() {
			t.Fatal("refused with shedding disabled")
		}
	}
}
