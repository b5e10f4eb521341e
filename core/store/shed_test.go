package store

import (
	"errors"
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

// TestShedderKeepsStreamsInOrder: once an append of a stream (one device's
// appends to one conversation) is refused, the stream's later appends are
// refused too until the refused one is resent and admitted, so that it
// cannot be overtaken; other streams are not held.
func TestShedderKeepsStreamsInOrder(t *testing.T) {
	s := &shedder{maxDelay: 10 * time.Millisecond, workers: 1}
	s.observe(100, 10*time.Millisecond) // 301 may wait
	msg := func(conv, cmid string) *Append {
		return &Append{Message: Message{AppKey: "app", ConvID: conv, Sender: "a", SenderDevice: "phone", ClientMsgID: cmid}}
	}
	if got := admitN(s, 301); got != 301 {
		t.Fatalf("admitted %d, want 301", got)
	}
	if s.admitAppend(msg("c1", "m1")) {
		t.Fatal("m1 admitted over the allowance")
	}
	if err := s.busy(); !errors.Is(err, ErrBusy) {
		t.Fatalf("busy() = %v, not ErrBusy", err)
	} else if be := (*BusyError)(nil); !errors.As(err, &be) || be.RetryAfter != 20*time.Millisecond {
		t.Fatalf("busy() = %#v, want a RetryAfter of two 10ms batches", err)
	}
	s.done(301) // the queue drained
	if s.admitAppend(msg("c1", "m2")) {
		t.Fatal("m2 admitted before m1, refused earlier in the same stream, was resent")
	}
	other := msg("c1", "x1")
	other.SenderDevice = "pc"
	if !s.admitAppend(other) || !s.admitAppend(msg("c2", "y1")) {
		t.Fatal("another stream was held by c1's refusal")
	}
	if !s.admitAppend(msg("c1", "m1")) {
		t.Fatal("the resend of m1 was refused with room in the queue")
	}
	if !s.admitAppend(msg("c1", "m2")) {
		t.Fatal("m2 refused after m1 was admitted")
	}
	if n := s.nheld.Load(); n != 0 || len(s.held) != 0 {
		t.Fatalf("%d streams still held (map %d)", n, len(s.held))
	}
	// A refusal whose resend never comes holds its stream for holdFor only.
	s.done(4)
	admitN(s, 301)
	if s.admitAppend(msg("c3", "z1")) {
		t.Fatal("z1 admitted over the allowance")
	}
	s.done(301)
	s.hmu.Lock()
	h := s.held[streamKey{"app", "c3", "a", "phone"}]
	h.until = time.Now().Add(-time.Millisecond)
	s.held[streamKey{"app", "c3", "a", "phone"}] = h
	s.hmu.Unlock()
	if !s.admitAppend(msg("c3", "z2")) {
		t.Fatal("a stream stayed held after its refusal expired")
	}
	if s.nheld.Load() != 0 {
		t.Fatal("the expired refusal was not forgotten")
	}
}
