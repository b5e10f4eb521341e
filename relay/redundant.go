package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

// Redundant streams (TUNNEL.md, "Redundant streams"): the sender opens
// several copies of one stream, each on its own tunnel connection, and
// writes every record to each; the receiver delivers each record the first
// time a copy brings it. A packet lost on one connection then costs nothing
// as long as another copy carries the record: no loss detection, no
// retransmission, no head-of-line wait. Both ends of a redundant stream use
// the same two halves: a fanout for the direction they write and a merger
// for the direction they read.

var (
	errNoCopyLeft = errors.New("relay: every copy of the redundant stream ended")
	errCopyGap    = errors.New("relay: the live copies of a redundant stream all start past a missing record")
)

const (
	// mergeQueueLimit bounds the records a merger holds for a slow reader;
	// beyond it the copies wait, and their transports' flow control holds
	// the sender back.
	mergeQueueLimit = 256 << 10
	// fanoutRoom: Write blocks while every live copy has this much unsent.
	fanoutRoom = 256 << 10
	// fanoutLagging: a copy with this much unsent while another copy has
	// room is dropped (its connection is stalled; it would hold memory and
	// protect nothing).
	fanoutLagging = 4 << 20
	// copyCloseGrace is how long copies get to write their last records
	// after the stream ended before they are closed regardless.
	copyCloseGrace = 5 * time.Second
)

func copyLabel(i uint8) string { return strconv.Itoa(int(i)) }

// merger rebuilds one direction of a redundant stream from its copies. Each
// copy brings the same records in order, numbered by position from the
// copy's first index; the merger hands record k to its reader the first time
// a copy brings it and drops later duplicates. It never holds a record out
// of order: a copy that is ahead of the others (it joined late) waits.
type merger struct {
	m      *Metrics
	mu     sync.Mutex
	cond   sync.Cond
	next   uint64 // index of the next record to deliver
	queue  [][]byte
	queued int
	live   int      // copies added and not ended
	waits  []uint64 // the record index each waiting copy waits for
	flow   uint64   // the egress flow id the first copy announced (opener side)
	hasID  bool
	end    bool  // the end record was delivered: EOF once the queue is read
	err    error // no more records will come
}

func newMerger(m *Metrics) *merger {
	g := &merger{m: m}
	g.cond.L = &g.mu
	return g
}

// add counts a copy that will feed; it must be called before the copy's
// feed (or copyEnded) so that the merger does not end between two copies.
func (g *merger) add() {
	g.mu.Lock()
	g.live++
	g.mu.Unlock()
}

// sameFlow reports whether a copy that announced egress flow id belongs
// here: the first copy sets the id; a copy with another id reached another
// egress, and its records are not ours.
func (g *merger) sameFlow(id uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.hasID {
		g.flow, g.hasID = id, true
	}
	return g.flow == id
}

// feed reads one copy, whose first record has index first, until it ends.
// It returns nil when the copy brought the end record, else why it ended.
func (g *merger) feed(copy uint8, first uint64, r io.Reader) error {
	firstBy := g.m.RedundantFirst.WithLabelValues(copyLabel(copy))
	for idx := first; ; idx++ {
		p, err := wire.ReadRecord(r)
		end := errors.Is(err, wire.ErrEndOfRecords)
		if err != nil && !end {
			g.copyEnded(err)
			return err
		}
		g.mu.Lock()
		deliver := false
	wait:
		for {
			switch {
			case g.err != nil:
				g.mu.Unlock()
				g.copyEnded(g.err)
				return g.err
			case idx < g.next:
				break wait // a duplicate
			case idx > g.next:
				if g.waitingAhead()+1 == g.live {
					// Every live copy is past the missing record.
					g.fail(errCopyGap)
					continue
				}
				g.waits = append(g.waits, idx)
				g.cond.Wait()
				g.waits = slices.Delete(g.waits, slices.Index(g.waits, idx), slices.Index(g.waits, idx)+1)
			case !end && g.queued >= mergeQueueLimit:
				g.cond.Wait()
			default:
				deliver = true
				break wait
			}
		}
		switch {
		case deliver:
			g.next++
			if end {
				g.end = true
			} else {
				g.queue = append(g.queue, p)
				g.queued += len(p)
			}
			firstBy.Inc()
			g.cond.Broadcast()
		case !end:
			g.m.RedundantDuplicateBytes.Add(float64(len(p)))
		}
		g.mu.Unlock()
		if end {
			g.copyEnded(nil)
			return nil
		}
	}
}

// copyEnded takes a copy off the live count; when none is left before the
// end record, or every one left waits for a record none of them has, the
// merged stream fails.
func (g *merger) copyEnded(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.live--
	switch {
	case g.end || g.err != nil:
	case g.live == 0:
		g.fail(errNoCopyLeft)
	case g.waitingAhead() == g.live:
		g.fail(errCopyGap)
	}
	g.cond.Broadcast()
}

// waitingAhead counts the waiting copies that are past the next record. A
// copy whose record was delivered while it waited is not one of them,
// though it has not woken up yet: it will go on as a duplicate. (Counting
// it made a copy's end fail a stream that the waiting copy would finish.)
func (g *merger) waitingAhead() int {
	n := 0
	for _, idx := range g.waits {
		if idx > g.next {
			n++
		}
	}
	return n
}

func (g *merger) fail(err error) {
	if g.err == nil {
		g.err = err
	}
	g.cond.Broadcast()
}

// Read returns the merged records' bytes in order; io.EOF after the end
// record.
func (g *merger) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for len(g.queue) == 0 {
		switch {
		case g.end:
			return 0, io.EOF
		case g.err != nil:
			return 0, g.err
		}
		g.cond.Wait()
	}
	n := copy(p, g.queue[0])
	if n == len(g.queue[0]) {
		g.queue[0] = nil
		g.queue = g.queue[1:]
	} else {
		g.queue[0] = g.queue[0][n:]
	}
	g.queued -= n
	g.cond.Broadcast()
	return n, nil
}

// close ends the merged stream for its reader and its copies.
func (g *merger) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.queue, g.queued = nil, 0
	g.fail(net.ErrClosed)
}

// fanout writes one direction of a redundant stream to every live copy as
// records. Each copy has its own writer goroutine and queue, so a copy whose
// connection stalls holds no other copy back.
type fanout struct {
	m      *Metrics
	mu     sync.Mutex
	cond   sync.Cond
	copies []*copyOut
	next   uint64 // index of the next record
	ended  bool
}

// copyOut is one copy's writing side.
type copyOut struct {
	f       *fanout
	idx     uint8
	s       io.WriteCloser
	pending [][]byte
	queued  int  // bytes queued or being written
	writing bool // a run goroutine is on it
	dead    bool
}

// push queues b for the copy and starts its writer if none is running.
// Writers run only while there is something to write, so an idle copy
// holds no goroutine. Call with f.mu held.
func (c *copyOut) push(b []byte) {
	c.pending = append(c.pending, b)
	c.queued += len(b)
	if !c.writing {
		c.writing = true
		go c.run()
	}
}

func newFanout(m *Metrics) *fanout {
	f := &fanout{m: m}
	f.cond.L = &f.mu
	return f
}

// join adds a copy written to s. Its first bytes are prefix(start), where
// start is the index of the first record it will carry (the egress writes
// the status and the copy start there). It returns nil when the stream has
// ended.
func (f *fanout) join(idx uint8, s io.WriteCloser, prefix func(start uint64) []byte) *copyOut {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended {
		return nil
	}
	c := &copyOut{f: f, idx: idx, s: s}
	if prefix != nil {
		c.push(prefix(f.next))
	}
	f.copies = append(f.copies, c)
	return c
}

// Write sends p as records to every live copy. It returns once they are
// queued; it blocks while every copy has fanoutRoom bytes unsent.
func (f *fanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	written := 0
	for len(p) > 0 {
		n := min(len(p), wire.MaxRecordLen)
		for {
			if f.ended {
				return written, net.ErrClosed
			}
			live, room := 0, false
			for _, c := range f.copies {
				if !c.dead {
					live++
					room = room || c.queued < fanoutRoom
				}
			}
			if live == 0 {
				return written, errNoCopyLeft
			}
			if room {
				break
			}
			f.cond.Wait()
		}
		rec := wire.AppendRecord(make([]byte, 0, wire.RecordOverhead+n), p[:n])
		for _, c := range f.copies {
			switch {
			case c.dead:
			case c.queued >= fanoutLagging:
				c.lose("lagging")
			default:
				c.push(rec)
			}
		}
		f.next++
		f.cond.Broadcast()
		p, written = p[n:], written+n
	}
	return written, nil
}

// end writes the end record to every live copy; each copy closes its stream
// once everything before it is written. Copies still writing after
// copyCloseGrace are closed regardless.
func (f *fanout) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended {
		return
	}
	f.ended = true
	rec := wire.AppendEndRecord(nil)
	for _, c := range f.copies {
		if !c.dead {
			c.push(rec)
		}
	}
	f.cond.Broadcast()
	time.AfterFunc(copyCloseGrace, f.abort)
}

// abort closes every copy's stream now.
func (f *fanout) abort() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.copies {
		if !c.dead {
			c.dead = true
			_ = c.s.Close()
		}
	}
	f.cond.Broadcast()
}

// lose drops a copy whose stream failed or stalled while the stream it
// belongs to goes on. Call with f.mu held.
func (c *copyOut) lose(reason string) {
	if c.dead {
		return
	}
	c.dead = true
	_ = c.s.Close()
	if !c.f.ended {
		c.f.m.RedundantCopies.WithLabelValues("lost_" + reason).Inc()
	}
	c.f.cond.Broadcast()
}

// lost drops the copy from outside the fanout (its reading side ended).
func (c *copyOut) lost(reason string) {
	c.f.mu.Lock()
	c.lose(reason)
	c.f.mu.Unlock()
}

// run writes the copy's queue, batching what accumulated while the last
// write was on its way, until the queue is empty. After the end record it
// closes the stream.
func (c *copyOut) run() {
	f := c.f
	var batch []byte
	f.mu.Lock()
	for {
		if c.dead || len(c.pending) == 0 {
			if !c.dead && f.ended { // the end record is written
				c.dead = true
				_ = c.s.Close()
			}
			c.writing = false
			f.mu.Unlock()
			return
		}
		batch = batch[:0]
		for i, b := range c.pending {
			batch = append(batch, b...)
			c.pending[i] = nil
		}
		c.pending = c.pending[:0]
		n := len(batch)
		f.mu.Unlock()

		_, err := c.s.Write(batch)

		f.mu.Lock()
		c.queued -= n
		if err != nil {
			c.lose("error")
		}
		f.cond.Broadcast()
	}
}

// redundantTunnel is the opener's side of a redundant stream (an edge's
// Tunnel): the header of every copy is written by Router.open, then the
// copies carry records both ways.
type redundantTunnel struct {
	out *fanout
	in  *merger
	m   *Metrics

	mu         sync.Mutex
	copies     int // copies whose status is awaited
	failed     int
	status     error
	statusDone chan struct{}
	closeOnce  sync.Once
}

// openRedundant opens n copies of the stream h, each on the lane of its
// index. It fails only when no copy could be opened.
func (r *Router) openRedundant(ctx context.Context, h wire.Header, n int) (*Tunnel, error) {
	h.Redundant = true
	type opened struct {
		s    transport.Stream
		copy uint8
	}
	var streams []opened
	var first *peer
	var lastErr error
	for i := range n {
		hc := h
		hc.Copy = uint8(i)
		s, _, p, err := r.open(ctx, &hc, nil)
		if err != nil {
			r.m.RedundantCopies.WithLabelValues("open_failed").Inc()
			lastErr = err
			continue
		}
		r.m.RedundantCopies.WithLabelValues("opened").Inc()
		if first == nil {
			first = p
		}
		streams = append(streams, opened{s, hc.Copy})
	}
	if len(streams) == 0 {
		return nil, lastErr
	}
	t := &redundantTunnel{out: newFanout(r.m), in: newMerger(r.m), m: r.m, copies: len(streams), statusDone: make(chan struct{})}
	for _, o := range streams {
		t.in.add()
		c := t.out.join(o.copy, o.s, nil)
		go t.read(o.copy, o.s, c)
	}
	return &Tunnel{red: t, path: first.hop.label(), peer: first}, nil
}

// read takes one copy's status, copy start and records.
func (t *redundantTunnel) read(idx uint8, s transport.Stream, c *copyOut) {
	err := wire.ReadStatus(s)
	t.reportStatus(err)
	if err != nil {
		t.in.copyEnded(err)
		reason := "error"
		if errors.As(err, new(*wire.StatusError)) {
			reason = "refused"
		}
		c.lost(reason)
		return
	}
	var b [wire.CopyStartLen]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		t.in.copyEnded(err)
		c.lost("error")
		return
	}
	flow, first, _ := wire.ParseCopyStart(b[:])
	if !t.in.sameFlow(flow) {
		// It reached another egress than the first copy (a path change
		// while the copies were opened): its records belong to another
		// gateway session.
		t.in.copyEnded(errors.New("relay: copy reached another egress"))
		c.lost("other_flow")
		return
	}
	if err := t.in.feed(idx, first, s); err != nil {
		c.lost("error")
	}
}

// reportStatus makes the tunnel's status OK at the first copy that is, and
// a copy's error when every copy failed.
func (t *redundantTunnel) reportStatus(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.statusDone:
		return
	default:
	}
	if err == nil {
		close(t.statusDone)
		return
	}
	t.failed++
	if t.status == nil {
		t.status = err // the first refusal says why
	}
	if t.failed == t.copies {
		close(t.statusDone)
	}
}

// Status waits for the first copy's OK, or for every copy's refusal.
func (t *redundantTunnel) Status() error {
	<-t.statusDone
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failed == t.copies {
		return t.status
	}
	return nil
}

func (t *redundantTunnel) close() {
	t.closeOnce.Do(func() {
		t.out.end()
		t.in.close()
	})
}
