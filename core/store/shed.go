package store

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBusy refuses an append because the appends already waiting for a group
// commit would take longer than Config.MaxQueueDelay to commit. Nothing was
// stored; the caller answers with a retryable error and the client resends
// the same client_msg_id later (appends are idempotent).
var ErrBusy = errors.New("store: busy")

// Early shedding: a queue in front of the single writer only adds latency
// once it holds more than the writer commits within the latency budget, and
// under overload it grows without bound (seconds of delay for everyone).
// The shedder estimates the time the waiting appends need to commit and
// refuses new ones past the budget, so what is accepted stays fast and what
// is refused is refused at once.
type shedder struct {
	maxDelay time.Duration // <= 0: never shed
	workers  int64         // concurrent committers
	waiting  atomic.Int64  // appends queued or inside a transaction
	perMsg   atomic.Int64  // nanoseconds of transaction time per append (EWMA)
	mu       sync.Mutex    // serializes observe on several committers
}

// shedFloor: never shed while fewer appends wait. Small batches say little
// about the per-append cost (the fixed cost of a commit dominates them), and
// a handful of waiting appends is one batch away anyway.
const shedFloor = 16

// admit counts one more waiting append, or reports false (nothing counted)
// when the queue already holds more than the budget.
func (s *shedder) admit() bool {
	n := s.waiting.Add(1)
	if s.maxDelay <= 0 || n <= shedFloor {
		return true
	}
	per := s.perMsg.Load()
	if per == 0 || time.Duration((n-1)*per/s.workers) <= s.maxDelay {
		return true
	}
	s.waiting.Add(-1)
	return false
}

// done uncounts n appends once they are answered.
func (s *shedder) done(n int) { s.waiting.Add(-int64(n)) }

// observe feeds one committed batch of n appends that took d.
func (s *shedder) observe(n int, d time.Duration) {
	if n < shedFloor {
		return
	}
	per := int64(d) / int64(n)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.perMsg.Load()
	if old == 0 {
		s.perMsg.Store(per)
		return
	}
	// Weight 1/4: a few batches follow a change of load or of CPU share.
	s.perMsg.Store(old + (per-old)/4)
}
