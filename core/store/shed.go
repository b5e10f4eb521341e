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

	// Refused streams (see admitAppend). nheld lets the common case, no
	// refusal outstanding, skip the lock.
	hmu   sync.Mutex
	held  map[streamKey]heldRefusal
	nheld atomic.Int64
}

// streamKey names one device's appends to one conversation: the SDK sends
// them in order and resends a refused one before the ones after it.
type streamKey struct{ appkey, conv, sender, device string }

// heldRefusal is the first refused append of a stream, which must be
// admitted before any later one of the stream.
type heldRefusal struct {
	cmid  string
	until time.Time
}

// holdFor bounds how long a refused append holds its stream when its resend
// does not come (the client gave up or went away); each refusal of the
// resend renews it.
const holdFor = 5 * time.Second

// admitAppend is admit that keeps each stream in order: once an append of a
// stream is refused, the stream's other appends are refused too until that
// one is resent and admitted. Without it, a refusal of message n while n+1
// was already on its way (a client sends several at a time) would store n+1
// first and give it the lower seq.
func (s *shedder) admitAppend(a *Append) bool {
	if s.maxDelay <= 0 {
		return s.admit()
	}
	if s.nheld.Load() == 0 {
		if s.admit() {
			return true
		}
		s.hmu.Lock()
		s.hold(streamOf(a), a.ClientMsgID, time.Now())
		s.hmu.Unlock()
		return false
	}
	k, now := streamOf(a), time.Now()
	s.hmu.Lock()
	defer s.hmu.Unlock()
	h, ok := s.held[k]
	if ok && now.After(h.until) {
		s.release(k)
		ok = false
	}
	if ok && h.cmid != a.ClientMsgID {
		return false
	}
	if !s.admit() {
		s.hold(k, a.ClientMsgID, now)
		return false
	}
	if ok {
		s.release(k)
	}
	return true
}

func streamOf(a *Append) streamKey {
	return streamKey{a.AppKey, a.ConvID, a.Sender, a.SenderDevice}
}

// hold records (or renews) the refusal of cmid as its stream's first; s.hmu
// is held.
func (s *shedder) hold(k streamKey, cmid string, now time.Time) {
	if s.held == nil {
		s.held = map[streamKey]heldRefusal{}
	}
	h, ok := s.held[k]
	if ok && h.cmid != cmid && !now.After(h.until) {
		return // an earlier append of the stream is still held
	}
	if !ok {
		s.nheld.Add(1)
		if len(s.held) >= 4096 {
			// Streams whose clients went away are only dropped when met
			// again; sweep them before the map grows further.
			for k2, h2 := range s.held {
				if now.After(h2.until) {
					s.release(k2)
				}
			}
		}
	}
	s.held[k] = heldRefusal{cmid: cmid, until: now.Add(holdFor)}
}

// release forgets a stream's refusal; s.hmu is held.
func (s *shedder) release(k streamKey) {
	if _, ok := s.held[k]; ok {
		delete(s.held, k)
		s.nheld.Add(-1)
	}
}

// busy is the error of a refusal, with the resend hint.
func (s *shedder) busy() error { return &BusyError{RetryAfter: time.Duration(s.retry.Load())} }

// shedFloor: never shed while this few appends wait. A burst after a quiet
// spell is no overload, and the small batches of a quiet spell understate
// what a large batch commits per second (their time is mostly the fixed
// cost of a commit).
const shedFloor = 128

// admit counts one more waiting append, or reports false (nothing counted)
// when the queue is already over its allowance.
func (s *shedder) admit() bool {
	n := s.waiting.Add(1)
	if s.maxDelay <= 0 || n <= shedFloor {
		return true
	}
	if l := s.limit.Load(); l == 0 || n-1 <= l {
		return true
	}
	s.waiting.Add(-1)
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
