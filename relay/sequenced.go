package relay

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

// The opener's side of a sequenced stream (an edge's Tunnel): it opens the
// copies, and when one fails (its stream breaks, or its next hop falls
// silent for resume.after) it opens a replacement in the same slot on the
// best other path. The replacement starts with the records the egress has
// not acknowledged and tells the egress how far the opener has read, so
// the egress starts there: the client's connection goes on as if nothing
// happened.

var (
	errSuspect       = errors.New("relay: the copy's next hop fell silent")
	errOtherEgress   = errors.New("relay: the copy reached another egress")
	errResumeExpired = errors.New("relay: no path took the stream within resume.grace")
)

// seqTunnel is one sequenced stream at its opener.
type seqTunnel struct {
	r      *Router
	h      wire.Header // the copies' header; each sets Copy and Join
	out    *sender
	in     *merger
	resume bool
	grace  time.Duration
	// small is the record limit of the stream's disjoint copy (0: it has
	// none), dslot that copy's slot.
	small int
	dslot uint8

	mu         sync.Mutex
	closed     bool
	known      bool // a copy start arrived: later copies join the egress's flow
	pending    int  // copies live or being replaced; none left: the stream is over
	statusOK   bool
	status     error // the first refusal, when every copy failed
	statusDone chan struct{}
	since      [wire.MaxCopies]time.Time // when the slot's copy failed, until a replacement answers
	copies     [wire.MaxCopies]*seqCopy  // the live copy of each slot
	dopening   bool                      // the disjoint copy is being opened
	noPath     bool                      // counted once without a relay for the disjoint copy
	closeOnce  sync.Once
}

// seqCopy is one copy of an opener's sequenced stream.
type seqCopy struct {
	t       *seqTunnel
	slot    uint8
	s       transport.Stream
	p       *peer
	out     *copyOut
	unwatch func()
	once    sync.Once
}

// openSequenced opens n copies of the stream h (slot i on the lane of its
// index), and the disjoint copy (slot n) when routing.disjoint is on and
// another relay is up. It fails only when no copy could be opened.
func (r *Router) openSequenced(ctx context.Context, h wire.Header, n int) (*Tunnel, error) {
	h.Sequenced = true
	rc := r.cfg.Resume
	t := &seqTunnel{r: r, h: h, resume: rc.Enabled, grace: rc.Grace.D(), statusDone: make(chan struct{})}
	mergeGrace := time.Duration(0)
	if t.resume {
		// A copy's failure and its replacement's reservation are not one
		// step: the merger must not end in between. The tunnel ends it
		// when it gives up.
		mergeGrace = t.grace
	}
	t.in = newMerger(r.m, mergeGrace)
	t.out = newSender(r.m, t.in, rc.Buffer)
	t.in.out = t.out
	var first *peer
	var lastErr error
	for i := range n {
		t.in.add()
		t.pending++
		c, err := t.openCopy(ctx, uint8(i), nil, nil)
		if err != nil {
			r.m.RedundantCopies.WithLabelValues("open_failed").Inc()
			t.in.copyEnded(err)
			t.pending--
			lastErr = err
			continue
		}
		if first == nil {
			first = c.p
		}
	}
	if first == nil {
		t.out.abort()
		return nil, lastErr
	}
	if small := r.cfg.Disjoint.small(); small > 0 {
		t.small, t.dslot = small, uint8(n)
		t.in.markDisjoint(t.dslot, small)
		t.addDisjoint(ctx)
	}
	return &Tunnel{red: t, path: first.hop.label(), peer: first}, nil
}

// addDisjoint opens the stream's disjoint copy through a relay that none
// of its live copies takes, if one is up and the copy is missing (else the
// router retries when its cluster has two relays up). The copy
// only joins the egress's flow (the copies that open it follow one path,
// so that they reach the same egress) and carries records of at most
// t.small bytes both ways.
func (t *seqTunnel) addDisjoint(ctx context.Context) {
	t.mu.Lock()
	if t.closed || t.copies[t.dslot] != nil || t.dopening || t.in.ended() {
		t.mu.Unlock()
		return
	}
	var used []*peer
	for _, c := range t.copies {
		if c != nil {
			used = append(used, c.p)
		}
	}
	p := t.r.disjointPeer(t.h.Cluster, used...)
	if p == nil {
		counted := t.noPath
		t.noPath = true
		// It gets one when another relay is up (Router.retryDisjoint).
		// Registered under t.mu: close and giveUp forget it after they
		// mark the stream over, so an ended stream never stays.
		t.r.waitDisjoint(t)
		t.mu.Unlock()
		if !counted {
			t.r.m.DisjointCopies.WithLabelValues("stream", "no_path").Inc()
		}
		return
	}
	t.dopening = true
	t.pending++
	t.in.add()
	t.mu.Unlock()
	_, err := t.openCopy(ctx, t.dslot, nil, p)
	t.mu.Lock()
	t.dopening = false
	giveUp := false
	if err != nil {
		t.pending--
		giveUp = t.pending == 0
	}
	t.mu.Unlock()
	if err != nil {
		t.r.m.DisjointCopies.WithLabelValues("stream", "open_failed").Inc()
		t.in.copyEnded(err)
		if giveUp {
			t.giveUp()
		}
		return
	}
	t.r.m.DisjointCopies.WithLabelValues("stream", "opened").Inc()
}

// openCopy opens the copy of slot on the best path (avoiding avoid when
// another is up), or through via when given, and starts it. The caller
// has counted it in the merger.
func (t *seqTunnel) openCopy(ctx context.Context, slot uint8, avoid, via *peer) (*seqCopy, error) {
	h := t.h
	h.Copy = slot
	t.mu.Lock()
	h.Join = t.known
	t.mu.Unlock()
	maxRecord := 0
	var s transport.Stream
	p := via
	var err error
	if via != nil {
		if t.small > 0 && slot == t.dslot {
			h.Join, h.Small, maxRecord = true, uint16(t.small), t.small
		}
		s, _, err = t.r.openVia(ctx, &h, nil, via)
	} else {
		s, _, p, err = t.r.open(ctx, &h, nil, avoid)
	}
	if err != nil {
		return nil, err
	}
	c := &seqCopy{t: t, slot: slot, s: s, p: p}
	out, err := t.out.joinUnacked(slot, s, maxRecord)
	if out == nil || err != nil {
		_ = s.Close()
		if err == nil {
			err = io.ErrClosedPipe // the stream ended meanwhile
		}
		return nil, err
	}
	c.out = out
	t.mu.Lock()
	t.copies[slot] = c
	t.mu.Unlock()
	t.r.m.RedundantCopies.WithLabelValues("opened").Inc()
	c.unwatch = p.watch(func() { c.fail(errSuspect) })
	go c.read()
	return c, nil
}

// read takes the copy's status, copy start and records. It alone takes
// the copy off the merger's count (feed does when it ran).
func (c *seqCopy) read() {
	t := c.t
	err := wire.ReadStatus(c.s)
	var b [wire.CopyStartLen]byte
	if err == nil {
		_, err = io.ReadFull(c.s, b[:])
	}
	var first uint64
	if err == nil {
		var flow uint64
		flow, first, _ = wire.ParseCopyStart(b[:])
		if !t.in.sameFlow(flow) {
			// It reached another egress than the first copy (the paths
			// changed meanwhile): its records belong to another flow.
			err = errOtherEgress
		}
	}
	if err != nil {
		t.in.copyEnded(err)
		c.fail(err)
		return
	}
	t.copyOK(c.slot)
	if err := t.in.feed(c.slot, first, c.s); err != nil {
		c.fail(err)
		return
	}
	// The end record: the egress ended the stream.
	c.once.Do(func() { c.unwatch() })
}

// fail takes the copy out and, unless the stream is over, has its slot
// resumed on another path.
func (c *seqCopy) fail(err error) {
	c.once.Do(func() {
		c.unwatch()
		_ = c.s.Close()
		reason := "error"
		var se *wire.StatusError
		switch {
		case errors.As(err, &se):
			reason = "refused"
		case errors.Is(err, errOtherEgress):
			reason = "other_flow"
		}
		c.out.lost(reason)
		c.t.copyFailed(c, err)
	})
}

func (t *seqTunnel) copyFailed(c *seqCopy, err error) {
	var se *wire.StatusError
	refused := errors.As(err, &se)
	gone := refused && se.Status == wire.StatusGone
	now := time.Now()
	t.mu.Lock()
	if t.copies[c.slot] == c {
		t.copies[c.slot] = nil
	}
	if t.small > 0 && c.slot == t.dslot {
		// The disjoint copy is not resumed like the others: it is opened
		// again only through a relay none of the stream's copies takes.
		t.pending--
		giveUp := t.pending == 0
		t.mu.Unlock()
		t.r.m.DisjointCopies.WithLabelValues("stream", "lost").Inc()
		t.r.log.Debug("disjoint copy failed", "trace", t.h.Trace.String(), "path", c.p.hop.label(), "err", err)
		switch {
		case giveUp:
			t.giveUp()
		case !refused && t.resume:
			go t.addDisjoint(t.r.ctx)
		}
		return
	}
	// A path that failed is worth another try; a refusal is final (the
	// service, the budget or the request is wrong, or the flow is gone),
	// except a relay's "no route" for a stream that already works.
	retry := !refused || t.known && se.Status == wire.StatusNoRoute
	resume := t.resume && retry && !t.closed && !t.in.ended()
	if resume {
		if t.since[c.slot].IsZero() {
			t.since[c.slot] = now
		}
		resume = now.Sub(t.since[c.slot]) < t.grace
	}
	if refused && t.status == nil {
		t.status = err
	}
	if gone {
		t.r.m.Resumes.WithLabelValues("gone").Inc()
	}
	giveUp := false
	if resume {
		t.in.add() // the replacement, reserved before this copy is let go
	} else {
		t.pending--
		giveUp = t.pending == 0
	}
	t.mu.Unlock()
	t.r.log.Debug("sequenced copy failed", "trace", t.h.Trace.String(), "slot", c.slot, "path", c.p.hop.label(), "err", err, "resume", resume)
	switch {
	case resume:
		go t.replace(c.slot, c.p)
	case giveUp:
		t.giveUp()
	}
}

// replace opens a copy for slot on another path than avoid (if one is
// up), retrying with backoff until the slot has been without a copy for
// resume.grace.
func (t *seqTunnel) replace(slot uint8, avoid *peer) {
	backoff := 50 * time.Millisecond
	closed := false
	for {
		t.mu.Lock()
		closed = t.closed
		over := closed || time.Since(t.since[slot]) >= t.grace
		t.mu.Unlock()
		if over {
			break
		}
		ctx, cancel := context.WithTimeout(t.r.ctx, t.r.cfg.OpenTimeout.D())
		nc, err := t.openCopy(ctx, slot, avoid, nil)
		cancel()
		if err == nil {
			t.r.log.Debug("sequenced copy replaced", "trace", t.h.Trace.String(), "slot", slot, "path", nc.p.hop.label())
			if t.small > 0 {
				// The copies' paths changed: a relay may have become free
				// for a lost disjoint copy.
				t.addDisjoint(t.r.ctx)
			}
			return
		}
		t.r.log.Debug("sequenced copy not replaced", "trace", t.h.Trace.String(), "slot", slot, "err", err)
		select {
		case <-t.r.ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
	if !closed {
		t.r.m.Resumes.WithLabelValues("failed").Inc()
	}
	t.mu.Lock()
	t.pending--
	giveUp := t.pending == 0
	t.mu.Unlock()
	t.in.copyEnded(errResumeExpired)
	if giveUp {
		t.giveUp()
	}
}

// copyOK records that slot's copy has its egress flow (its copy start
// arrived): the stream's status is OK, later copies join the flow, and a
// resumed slot is counted.
func (t *seqTunnel) copyOK(slot uint8) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.known = true
	if !t.statusOK {
		t.statusOK = true
		close(t.statusDone)
	}
	if s := t.since[slot]; !s.IsZero() {
		t.r.m.ResumeSeconds.Observe(time.Since(s).Seconds())
		t.r.m.Resumes.WithLabelValues("ok").Inc()
		t.since[slot] = time.Time{}
	}
}

// path names the next hop of the first live copy ("" when none).
func (t *seqTunnel) path() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.copies {
		if c != nil {
			return c.p.hop.label()
		}
	}
	return ""
}

// giveUp ends a stream that has no copy left and none coming.
func (t *seqTunnel) giveUp() {
	t.mu.Lock()
	t.closed = true
	if !t.statusOK {
		select {
		case <-t.statusDone:
		default:
			close(t.statusDone)
		}
	}
	t.mu.Unlock()
	t.in.close()
	t.out.abort()
	t.r.forgetDisjoint(t)
}

// Status waits for the first copy's OK, or for the stream to give up.
func (t *seqTunnel) Status() error {
	<-t.statusDone
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.statusOK:
		return nil
	case t.status != nil:
		return t.status
	}
	return errNoCopyLeft
}

func (t *seqTunnel) close() {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		t.out.end()
		t.in.close()
		t.r.forgetDisjoint(t)
	})
}
