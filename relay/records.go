package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/relay/wire"
)

// Sequenced streams (TUNNEL.md, "Sequenced streams"). Each end of a
// sequenced stream (the opener, an edge; the egress) has two halves: a
// sender for the direction it writes and a merger for the direction it
// reads. The sender numbers the stream's bytes as records, writes them to
// every live copy (each copy a tunnel stream, possibly on its own path)
// and keeps them until the other end acknowledges them, so that a copy
// that replaces a dead one starts where the other end stands: nothing is
// lost and nothing is delivered twice. The merger delivers each record
// once, from whichever copy brings it first, and acknowledges what it got.

var (
	errNoCopyLeft   = errors.New("relay: every copy of the sequenced stream ended")
	errCopyGap      = errors.New("relay: the live copies of a sequenced stream all start past a missing record")
	errBadAck       = errors.New("relay: acknowledgement of records never sent")
	errBackwardSeek = errors.New("relay: seek backwards")
)

const (
	// mergeQueueLimit bounds the records a merger holds for a slow reader;
	// beyond it the copies wait, and their transports' flow control holds
	// the sender back.
	mergeQueueLimit = 256 << 10
	// ackBytes: a merger that has taken this much without acknowledging it
	// says so at once; less waits up to ackDelay for data going the other
	// way to carry the acknowledgement.
	ackBytes = 64 << 10
	ackDelay = 50 * time.Millisecond
	// writeBatch is how much a copy's writer hands its stream at once.
	writeBatch = 256 << 10
	// copyCloseGrace is how long copies get to write their last records
	// after the stream ended before they are closed regardless.
	copyCloseGrace = 5 * time.Second
)

func copyLabel(i uint8) string { return strconv.Itoa(int(i)) }

// merger rebuilds one direction of a sequenced stream from its copies. Each
// copy brings records in order, numbered from the copy's first index (and
// jumping where a seek says); the merger hands record k to its reader the
// first time a copy brings it and drops later duplicates. It never holds a
// record out of order: a copy that is ahead of the others waits.
type merger struct {
	m   *Metrics
	out *sender // acknowledgements read from the copies trim it

	mu     sync.Mutex
	cond   sync.Cond
	next   uint64 // index of the next record to deliver
	queue  [][]byte
	queued int
	live   int      // copies added and not ended (a reserved replacement counts)
	waits  []uint64 // the record index each waiting copy waits for
	flow   uint64   // the egress flow id the first copy announced (opener side)
	hasID  bool
	end    bool  // the end record was delivered: EOF once the queue is read
	err    error // no more records will come
	// grace: a stall (no live copy, or every live copy past a missing
	// record) may last this long, for a copy that resumes the stream to
	// join, before the stream fails (0: it fails at once).
	grace   time.Duration
	stalled *time.Timer
	got     atomic.Uint64 // next, for the sender's acknowledgements
	// disjoint, once a disjoint copy belongs to the stream, says which
	// slot it has and how small its records are (for its metrics).
	disjoint atomic.Pointer[disjointCopy]
}

// disjointCopy names a stream's copy on a disjoint path: its slot, and the
// largest record it carries.
type disjointCopy struct {
	slot  uint8
	small int
}

// markDisjoint records that the copy in slot carries the stream's records
// of at most small bytes over a disjoint path.
func (g *merger) markDisjoint(slot uint8, small int) {
	g.disjoint.Store(&disjointCopy{slot: slot, small: small})
}

func newMerger(m *Metrics, grace time.Duration) *merger {
	g := &merger{m: m, grace: grace}
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

// ended reports whether the end record was delivered.
func (g *merger) ended() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.end
}

// received is how many records have been delivered (the acknowledgement).
func (g *merger) received() uint64 { return g.got.Load() }

// feed reads one copy, whose first record has index first, until it ends.
// It returns nil when the copy brought the end record, else why it ended;
// either way the copy is no longer counted.
func (g *merger) feed(copy uint8, first uint64, r io.Reader) error {
	firstBy := g.m.RedundantFirst.WithLabelValues(copyLabel(copy))
	win, dwin := g.m.DisjointWins.WithLabelValues("stream", "primary"), g.m.DisjointWins.WithLabelValues("stream", "disjoint")
	dup := g.m.DisjointDuplicates.WithLabelValues("stream")
	for idx := first; ; {
		f, err := wire.ReadFrame(r)
		if err != nil {
			g.copyEnded(err)
			return err
		}
		switch f.Kind {
		case wire.FrameAck:
			if g.out != nil {
				if err := g.out.acked(f.Index); err != nil {
					g.copyEnded(err)
					return err
				}
			}
			continue
		case wire.FrameSeek:
			if f.Index < idx {
				g.copyEnded(errBackwardSeek)
				return errBackwardSeek
			}
			idx = f.Index
			continue
		}
		end := f.Kind == wire.FrameEnd
		delivered, err := g.put(idx, f.Payload, end)
		if err != nil {
			g.copyEnded(err)
			return err
		}
		idx++
		if d := g.disjoint.Load(); d != nil && !end && len(f.Payload) <= d.small {
			switch {
			case !delivered:
				dup.Inc()
			case copy == d.slot:
				dwin.Inc()
			default:
				win.Inc()
			}
		}
		if delivered {
			firstBy.Inc()
			if g.out != nil {
				g.out.receivedMore(len(f.Payload))
			}
		} else if !end {
			g.m.RedundantDuplicateBytes.Add(float64(len(f.Payload)))
		}
		if end {
			g.copyEnded(nil)
			return nil
		}
	}
}

// put delivers record idx unless it is a duplicate, waiting while it is
// ahead of the stream or the queue is full.
func (g *merger) put(idx uint64, p []byte, end bool) (delivered bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		switch {
		case g.err != nil:
			return false, g.err
		case idx < g.next:
			return false, nil // a duplicate
		case idx > g.next:
			g.waits = append(g.waits, idx)
			g.checkStall()
			if g.err == nil {
				g.cond.Wait()
			}
			i := slices.Index(g.waits, idx)
			g.waits = slices.Delete(g.waits, i, i+1)
		case !end && g.queued >= mergeQueueLimit:
			g.cond.Wait()
		default:
			g.next++
			g.got.Store(g.next)
			if end {
				g.end = true
			} else {
				g.queue = append(g.queue, p)
				g.queued += len(p)
			}
			g.cond.Broadcast()
			return true, nil
		}
	}
}

// copyEnded takes a copy off the live count.
func (g *merger) copyEnded(error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.live--
	g.checkStall()
	g.cond.Broadcast()
}

// checkStall fails the stream, at once or after the grace, when no live
// copy can bring the next record: none is left, or every one waits past
// it. g.mu is held.
func (g *merger) checkStall() {
	if g.end || g.err != nil || !g.isStalled() {
		return
	}
	if g.grace == 0 {
		g.fail(g.stallErr())
		return
	}
	if g.stalled == nil {
		g.stalled = time.AfterFunc(g.grace, func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.stalled = nil
			if !g.end && g.err == nil && g.isStalled() {
				g.fail(g.stallErr())
			}
		})
	}
}

func (g *merger) isStalled() bool { return g.live == 0 || g.waitingAhead() == g.live }

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

func (g *merger) stallErr() error {
	if g.live == 0 {
		return errNoCopyLeft
	}
	return errCopyGap
}

func (g *merger) fail(err error) {
	if g.err == nil {
		g.err = err
	}
	if g.stalled != nil {
		g.stalled.Stop()
		g.stalled = nil
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

// sender writes one direction of a sequenced stream to every live copy as
// numbered records and keeps each record until the other end acknowledges
// it. Each copy has its own writer, which runs while the copy has
// something to write, so a copy whose connection stalls holds no other
// back; a copy that falls behind what the other end acknowledged (another
// copy brought it) skips ahead.
type sender struct {
	m      *Metrics
	in     *merger // the same end's receiving half: what acknowledgements announce
	window int     // Write waits while this many bytes are unacknowledged

	mu        sync.Mutex
	cond      sync.Cond
	base      uint64   // index of recs[0]: every record below it was acknowledged
	recs      [][]byte // records kept, from base on; nil is the end record
	held      int      // payload bytes in recs
	ended     bool     // the end record is in recs
	closed    bool     // aborted: nothing more is written
	copies    []*copyOut
	announced uint64 // the largest acknowledgement written on any copy
	unacked   int    // bytes received since then
	ackTimer  *time.Timer
}

// copyOut is one copy's writing side.
type copyOut struct {
	s    *sender
	slot uint8
	w    io.WriteCloser
	next uint64 // index of the next record to write
	// maxRecord, when positive, makes the copy carry only records of at
	// most that many bytes (and the end): a disjoint copy of small frames.
	maxRecord int
	prefix    []byte // written first (the egress's status and copy start)
	started   bool   // the first batch (with an acknowledgement) is out
	seek      bool   // the next record written needs a seek in front
	writing   bool   // a run goroutine is on it
	dead      bool
}

func newSender(m *Metrics, in *merger, window int) *sender {
	s := &sender{m: m, in: in, window: window}
	s.cond.L = &s.mu
	return s
}

// join adds a copy written to w, starting with record first (what the
// other end had when it opened the copy) or, when the other end has
// acknowledged more since (the copy took a while to arrive: other copies
// carried the stream meanwhile), with the oldest record kept. prefix, when
// set, gives what goes out before any frame, knowing the record the copy
// starts with. The copy's first batch carries an acknowledgement. It
// returns nil, nil when the stream has ended.
func (s *sender) join(slot uint8, w io.WriteCloser, first uint64, maxRecord int, prefix func(first uint64) []byte) (*copyOut, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first = max(first, s.base)
	var p []byte
	if prefix != nil {
		p = prefix(first)
	}
	return s.addCopy(slot, w, first, maxRecord, p)
}

// joinUnacked adds a copy written to w that starts with the oldest record
// the other end has not acknowledged (the opener's copies).
func (s *sender) joinUnacked(slot uint8, w io.WriteCloser, maxRecord int) (*copyOut, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addCopy(slot, w, s.base, maxRecord, nil)
}

func (s *sender) addCopy(slot uint8, w io.WriteCloser, first uint64, maxRecord int, prefix []byte) (*copyOut, error) {
	top := s.base + uint64(len(s.recs))
	if s.closed || s.ended && first >= top {
		return nil, nil
	}
	if first < s.base || first > top {
		return nil, fmt.Errorf("relay: a copy cannot start at record %d: records %d..%d are kept", first, s.base, top)
	}
	c := &copyOut{s: s, slot: slot, w: w, next: first, seek: first > 0, maxRecord: maxRecord, prefix: prefix}
	s.copies = append(s.copies, c)
	c.kick()
	return c, nil
}

// kick starts the copy's writer unless one runs. s.mu is held.
func (c *copyOut) kick() {
	if !c.writing && !c.dead {
		c.writing = true
		go c.run()
	}
}

// Write queues p as records for every live copy. It returns once they are
// queued; it waits while window bytes are unacknowledged (a copy that
// replaces a dead one may need them).
func (s *sender) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	written := 0
	for len(p) > 0 {
		for !s.closed && !s.ended && s.held >= s.window {
			s.cond.Wait()
		}
		if s.closed || s.ended {
			return written, net.ErrClosed
		}
		n := min(len(p), wire.MaxRecordLen)
		s.recs = append(s.recs, append([]byte(nil), p[:n]...))
		s.held += n
		s.m.ResumeBuffered.Add(float64(n))
		for _, c := range s.copies {
			c.kick()
		}
		p, written = p[n:], written+n
	}
	return written, nil
}

// acked drops the records below received, which the other end has.
func (s *sender) acked(received uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	top := s.base + uint64(len(s.recs))
	if received > top {
		return errBadAck
	}
	if received <= s.base {
		return nil
	}
	k := int(received - s.base)
	freed := 0
	for i := range k {
		freed += len(s.recs[i])
		s.recs[i] = nil
	}
	s.recs = s.recs[k:]
	if cap(s.recs) > 64 && len(s.recs) < cap(s.recs)/4 {
		s.recs = append([][]byte(nil), s.recs...)
	}
	s.base = received
	s.held -= freed
	s.m.ResumeBuffered.Sub(float64(freed))
	s.cond.Broadcast()
	return nil
}

// receivedMore is the merger telling that n more bytes arrived: the
// acknowledgement goes out with the next data written, or after ackDelay,
// or at once past ackBytes.
func (s *sender) receivedMore(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unacked += n
	switch {
	case s.unacked >= ackBytes:
		s.kickOne()
	case s.ackTimer == nil:
		s.ackTimer = time.AfterFunc(ackDelay, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.ackTimer = nil
			if s.in.received() > s.announced {
				s.kickOne()
			}
		})
	}
}

// kickOne starts the writer of the first live copy, which writes the
// acknowledgement due. s.mu is held.
func (s *sender) kickOne() {
	for _, c := range s.copies {
		if !c.dead {
			c.kick()
			return
		}
	}
}

// end queues the end record: each copy closes its stream once it has
// written it. Copies still writing after copyCloseGrace are closed
// regardless.
func (s *sender) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.closed {
		return
	}
	s.ended = true
	s.recs = append(s.recs, nil)
	for _, c := range s.copies {
		c.kick()
	}
	s.cond.Broadcast()
	time.AfterFunc(copyCloseGrace, s.abort)
}

// abort closes every copy's stream now and forgets the records.
func (s *sender) abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for _, c := range s.copies {
		if !c.dead {
			c.dead = true
			_ = c.w.Close()
		}
	}
	s.m.ResumeBuffered.Sub(float64(s.held))
	s.recs, s.held = nil, 0
	if s.ackTimer != nil {
		s.ackTimer.Stop()
	}
	s.cond.Broadcast()
}

// liveCopies counts the copies still written.
func (s *sender) liveCopies() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.copies {
		if !c.dead {
			n++
		}
	}
	return n
}

// lose drops the copy while the stream goes on. s.mu is held.
func (c *copyOut) lose(reason string) {
	if c.dead {
		return
	}
	c.dead = true
	_ = c.w.Close()
	s := c.s
	for i, o := range s.copies {
		if o == c {
			s.copies = append(s.copies[:i], s.copies[i+1:]...)
			break
		}
	}
	if !s.ended && !s.closed {
		s.m.RedundantCopies.WithLabelValues("lost_" + reason).Inc()
	}
	s.cond.Broadcast()
}

// lost drops the copy from outside the sender (its reading side ended).
func (c *copyOut) lost(reason string) {
	c.s.mu.Lock()
	c.lose(reason)
	c.s.mu.Unlock()
}

// run writes what the copy has not written yet, batching what accumulated
// while the last write was on its way, until it has caught up. After the
// end record it closes the stream.
func (c *copyOut) run() {
	s := c.s
	var batch []byte
	s.mu.Lock()
	for {
		if c.dead {
			c.writing = false
			s.mu.Unlock()
			return
		}
		batch = c.fill(batch[:0])
		if len(batch) == 0 {
			if s.ended && c.next == s.base+uint64(len(s.recs)) {
				// The end record is written: the copy is done.
				c.dead = true
				_ = c.w.Close()
			}
			c.writing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		_, err := c.w.Write(batch)
		s.mu.Lock()
		if err != nil {
			c.lose("error")
		}
	}
}

// fill appends the copy's next frames to b: its prefix, an
// acknowledgement when one is due, and the records it has not written.
// s.mu is held.
func (c *copyOut) fill(b []byte) []byte {
	s := c.s
	if c.prefix != nil {
		b, c.prefix = append(b, c.prefix...), nil
	}
	if got := s.in.received(); !c.started || got > s.announced {
		b = wire.AppendAck(b, got)
		c.started = true
		if got > s.announced {
			s.announced, s.unacked = got, 0
		}
	}
	if c.next < s.base {
		// Another copy brought these; the other end has them.
		c.next, c.seek = s.base, true
	}
	top := s.base + uint64(len(s.recs))
	for ; c.next < top && len(b) < writeBatch; c.next++ {
		r := s.recs[c.next-s.base]
		if r != nil && c.maxRecord > 0 && len(r) > c.maxRecord {
			c.seek = true
			continue
		}
		if c.seek {
			b = wire.AppendSeek(b, c.next)
			c.seek = false
		}
		if r == nil {
			b = wire.AppendEndRecord(b)
		} else {
			b = wire.AppendRecord(b, r)
			if c.maxRecord > 0 {
				s.m.DisjointSent.WithLabelValues("stream").Inc()
			}
		}
	}
	return b
}
