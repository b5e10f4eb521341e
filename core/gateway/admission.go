package gateway

import (
	"container/list"
	"sync"
	"time"
)

// handshakeGate admits Link handshakes a few at a time, in the order they
// asked. A handshake's X25519 operations are most of what a login costs
// the gateway's CPU; after a core restarts every client of it comes back
// at once, and when all their handshakes run together they share the CPU
// fairly, so all of them finish late, past the clients' timeouts, and the
// clients come back once more (a congestion collapse: 20,624 connections
// for 4,000 clients, 538 of them back after 90 s). With a few running at
// once, each one finishes in about its own CPU time and the rest wait
// their turn; one that waited longer than its client would (handshake_wait
// from its accept) is closed without a handshake.
//
// The wait for the client's hello happens before the gate (it costs no
// CPU, and a slow client must not hold a slot).
type handshakeGate struct {
	m       *metrics
	mu      sync.Mutex
	free    int
	waiters list.List // *gateWaiter, oldest first
}

type gateWaiter struct {
	ready   chan struct{} // closed when granted
	granted bool
}

func newHandshakeGate(slots int, m *metrics) *handshakeGate {
	return &handshakeGate{m: m, free: slots}
}

// acquire waits for a slot until deadline (or until stop is closed) and
// reports whether it holds one; release gives it back. Slots are granted
// in the order acquire was called.
func (h *handshakeGate) acquire(deadline time.Time, stop <-chan struct{}) bool {
	start := time.Now()
	h.mu.Lock()
	if h.free > 0 && h.waiters.Len() == 0 {
		h.free--
		h.mu.Unlock()
		h.granted(start)
		return true
	}
	w := &gateWaiter{ready: make(chan struct{})}
	e := h.waiters.PushBack(w)
	h.m.handshakesQueued.Inc()
	h.mu.Unlock()

	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-w.ready:
		h.granted(start)
		return true
	case <-t.C:
	case <-stop:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.granted {
		// Granted as the deadline passed: the next one takes the slot.
		h.releaseLocked()
	} else {
		h.waiters.Remove(e)
		h.m.handshakesQueued.Dec()
	}
	h.m.handshakeDrops.WithLabelValues("waited").Inc()
	return false
}

func (h *handshakeGate) granted(since time.Time) {
	h.m.handshakeWait.Observe(time.Since(since).Seconds())
	h.m.handshakesRunning.Inc()
}

// release gives a slot back: to the oldest waiter, else to the pool.
func (h *handshakeGate) release() {
	h.m.handshakesRunning.Dec()
	h.mu.Lock()
	h.releaseLocked()
	h.mu.Unlock()
}

func (h *handshakeGate) releaseLocked() {
	if e := h.waiters.Front(); e != nil {
		w := h.waiters.Remove(e).(*gateWaiter)
		h.m.handshakesQueued.Dec()
		w.granted = true
		close(w.ready)
		return
	}
	h.free++
}

// queued is the number of handshakes waiting for a slot.
func (h *handshakeGate) queued() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.waiters.Len()
}
