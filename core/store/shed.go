package store

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBusy refuses an append because the appends already waiting for a group
// commit would take longer than two batch times plus Config.MaxQueueDelay
// to commit. Nothing was
// stored; the caller answers with a retryable error and the client resends
// the same client_msg_id later (appends are idempotent). AppendMessage
// returns it as a *BusyError.
var ErrBusy = errors.New("store: busy")

// BusyError is the ErrBusy of one refused append (errors.Is(err, ErrBusy)).
type BusyError struct {
	// RetryAfter is about when the queue ahead will have committed (two
	// batch times at the recent rate): a resend before it is likely to be
	// refused again. Zero: no estimate.
	RetryAfter time.Duration
}

func (e *BusyError) Error() string        { return ErrBusy.Error() }
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// Early shedding: a queue in front of the single writer only adds latency
// once it holds more than the writer commits within the latency budget, and
// under overload it grows without bound (seconds of delay for everyone).
// The shedder refuses an append when more are waiting ahead of it (in the
// transaction and queued) than the committers get through in two batch
// times plus the budget, at the rate recent batches committed: it would
// make neither the batch after the running one nor the budget beyond.
//
// The allowance is relative to the batch time on purpose: a commit has a
// fixed cost (the fsync) that no queue length avoids, and with a slow disk
// a budget below it would cap batches at a few appends and throughput with
// them. As allowed, a queue is always larger than the last batch, so
// batches grow up to max_batch when load needs it; a closed group of
// senders (each waits for its answer) is never refused, whatever the batch
// time; and the excess queue of an open overload stays near the budget.
type shedder struct {
	maxDelay time.Duration // <= 0: never shed
	workers  float64       // concurrent committers
	waiting  atomic.Int64  // appends queued or inside a transaction
	limit    atomic.Int64  // appends allowed to wait ahead; 0: no estimate yet

	retry atomic.Int64 // nanoseconds: the RetryAfter of a refusal

	mu   sync.Mutex // serializes observe on several committers
	size float64    // appends per transaction (EWMA)
	took float64    // seconds per transaction (EWMA)
}

// busy is the error of a refusal, with the resend hint.
func (s *shedder) busy() error { return &BusyError{RetryAfter: time.Duration(s.retry.Load())} }

// shedFloor: never shed while this few appends wait. A burst after a quiet
// spell is no overload, and the small batches of a quiet spell understate
// what a large batch commits per second (their time is mostly the fixed
// cost of a commit).
const shedFloor = 128

// admit counts n more waiting appends (one unit: admitted or refused
// whole, so a refusal never splits a sender's batch), or reports false
// (nothing counted) when the queue is already over its allowance.
func (s *shedder) admit(n int) bool {
	w := s.waiting.Add(int64(n))
	if s.maxDelay <= 0 || w <= shedFloor {
		return true
	}
	if l := s.limit.Load(); l == 0 || w-int64(n) <= l {
		return true
	}
	s.waiting.Add(-int64(n))
	return false
}

// done uncounts n appends once they are answered.
func (s *shedder) done(n int) { s.waiting.Add(-int64(n)) }

// observe feeds one committed batch of n appends that took d.
func (s *shedder) observe(n int, d time.Duration) {
	if n < 1 || d <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	size, took := float64(n), d.Seconds()
	if s.took == 0 {
		s.size, s.took = size, took
	} else {
		// Weight 1/4: a few batches follow a change of load or CPU share.
		s.size += (size - s.size) / 4
		s.took += (took - s.took) / 4
	}
	// At size/took appends per second: two batches, plus what commits
	// within the budget. The rate is a ratio of the averages, so a stalled
	// batch (a longer took) lowers it and lengthens the two batch times
	// alike: two batches' worth is allowed whatever the batch time.
	if 2*s.size < shedFloor {
		// Small batches understate what a large one commits per second
		// (their time is mostly the fixed cost of a commit): no estimate.
		s.limit.Store(0)
		return
	}
	rate := s.size / s.took
	s.retry.Store(int64(2 * s.took * float64(time.Second)))
	s.limit.Store(max(1, int64(s.workers*(2*s.size+rate*s.maxDelay.Seconds()))))
}
