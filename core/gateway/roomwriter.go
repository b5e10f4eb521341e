package gateway

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
)

// roomWriters is the chatroom fan-out's writer pool: a fixed number of
// goroutines (room_writers, one per CPU by default) that walk the members of
// the rooms flushed together (a round) and give each member connection its
// room.messages frame. A connection with nothing else to write gets the
// frame sealed and written at once with one non-blocking write, by the pool
// goroutine itself (link.FrameWriter: no goroutine, no allocation per
// write); a busy one has it queued behind what it is writing. A full
// socket buffer never makes a pool goroutine wait: the unsent rest goes to
// the connection's own writer, which drops it after write_timeout.
//
// One round at a time: the room loop starts a round and hears when its last
// member is done. A batch interval that ends while a round is still being
// written is stretched to the end of that round (the messages keep
// gathering), so the frames per second stay within what the CPUs can write
// and a saturated gateway answers with larger frames instead of a queue.
type roomWriters struct {
	g     *Gateway
	start []chan struct{} // one per writer: a round is ready
	done  chan struct{}   // the last writer of a round finished it

	// The round being written; set by the room loop before it signals
	// start, not touched by it again before done.
	batches []roomBatch
	members []*Session // every batch's members, one after the other
	jobs    []roomJob
	next    atomic.Int32 // next job to take
	left    atomic.Int32 // writers still in the round
	began   time.Time
}

// roomBatch is one room's frame in a round.
type roomBatch struct {
	frame link.Frame // sealed per connection, compressed once
	body  []byte     // uncompressed, for other transports
	msgs  int
}

// roomJob is a run of one batch's members, taken by one writer.
type roomJob struct {
	batch  int
	lo, hi int // in members
}

// roomJobSize is the members a writer takes at a time: small enough that
// the writers share a round evenly, large enough that taking one is rare.
const roomJobSize = 256

func newRoomWriters(g *Gateway, n int) *roomWriters {
	p := &roomWriters{g: g, start: make([]chan struct{}, n), done: make(chan struct{}, 1)}
	for i := range p.start {
		p.start[i] = make(chan struct{}, 1)
	}
	return p
}

// run starts the writers; they end with close.
func (p *roomWriters) run() {
	p.g.wg.Add(len(p.start))
	for _, ch := range p.start {
		go p.writer(ch)
	}
}

// close ends the writers once the round in progress (if any) is done; the
// caller has waited for it.
func (p *roomWriters) close() {
	for _, ch := range p.start {
		close(ch)
	}
}

// reset empties the round's lists, keeping their memory.
func (p *roomWriters) reset() {
	clear(p.batches)
	clear(p.members)
	p.batches, p.members, p.jobs = p.batches[:0], p.members[:0], p.jobs[:0]
}

// begin starts writing the batches and members added since reset. It
// returns false when there is nothing to write (no round started).
func (p *roomWriters) begin() bool {
	if len(p.members) == 0 {
		return false
	}
	p.next.Store(0)
	p.left.Store(int32(len(p.start)))
	p.began = time.Now()
	for _, ch := range p.start {
		ch <- struct{}{}
	}
	return true
}

// add puts a room's batch into the next round; its members are
// members[lo:], appended by the caller.
func (p *roomWriters) add(b roomBatch, lo int) {
	bi := len(p.batches)
	p.batches = append(p.batches, b)
	for i := lo; i < len(p.members); i += roomJobSize {
		p.jobs = append(p.jobs, roomJob{batch: bi, lo: i, hi: min(i+roomJobSize, len(p.members))})
	}
}

func (p *roomWriters) writer(start chan struct{}) {
	defer p.g.wg.Done()
	w := link.NewFrameWriter()
	for range start {
		for {
			i := int(p.next.Add(1)) - 1
			if i >= len(p.jobs) {
				break
			}
			p.write(w, p.jobs[i])
		}
		if p.left.Add(-1) == 0 {
			p.g.m.roomRoundSeconds.Observe(time.Since(p.began).Seconds())
			p.done <- struct{}{}
		}
	}
}

// write gives one job's members their frame.
func (p *roomWriters) write(w *link.FrameWriter, j roomJob) {
	g := p.g
	b := &p.batches[j.batch]
	frames, skipped, direct := 0, 0, 0
	for _, s := range p.members[j.lo:j.hi] {
		var out roomOutcome
		if lc, isLink := s.t.(*linkConn); isLink {
			out = lc.roomWrite(w, &b.frame)
		} else if s.t.Push(imapi.OpRoomMessages, b.body) {
			out = roomQueued
		} else {
			out = roomSlow
		}
		switch out {
		case roomWritten:
			frames++
			direct++
		case roomQueued:
			frames++
		case roomSkipped:
			skipped++
		case roomSlow:
			g.m.roomSlowDrops.Inc()
			if g.unregister(s, ReasonSlow, true) {
				g.m.slowConsumers.Inc()
			}
		}
	}
	g.m.roomFrames.Add(float64(frames))
	g.m.roomDirectWrites.Add(float64(direct))
	g.m.roomDeliveries.Add(float64(frames * b.msgs))
	if skipped > 0 {
		g.m.roomSkipped.Add(float64(skipped * b.msgs))
	}
}

// roomOutcome is what became of a member's room frame.
type roomOutcome int

const (
	roomWritten roomOutcome = iota // written by the pool (maybe in part, the rest queued)
	roomQueued                     // queued for the connection's writer
	roomSkipped                    // the connection is room_max_queued frames behind
	roomSlow                       // the send queue is full: drop the member
	roomGone                       // the connection is closing, or refused the frame
)

// roomWrite gives a room frame to the connection from a pool writer: when
// the connection has nothing else to write the frame is written at once;
// otherwise it is queued behind the rest, so frames keep their order.
func (l *linkConn) roomWrite(w *link.FrameWriter, f *link.Frame) roomOutcome {
	l.mu.Lock()
	if l.dead || l.closing {
		l.mu.Unlock()
		return roomGone
	}
	if len(l.queue) >= l.g.cfg.RoomMaxQueued {
		// Still behind with earlier frames: this batch is skipped for it,
		// so its lag stays bounded and the room never waits.
		l.mu.Unlock()
		return roomSkipped
	}
	out, partial := l.writeLocked(w, f, false)
	if partial {
		l.g.m.roomPartialWrites.Inc()
	}
	return out
}

// writeLocked writes f from a pool goroutine (a room writer, a reader of
// woken connections) with one non-blocking write when the connection has
// nothing else to write, and queues it behind the rest otherwise (response:
// as enqueueLocked's). partial: the socket took only part of it and the
// connection's writer goroutine sends the rest. l.mu is held on entry and
// released on return.
func (l *linkConn) writeLocked(w *link.FrameWriter, f *link.Frame, response bool) (out roomOutcome, partial bool) {
	if l.writing || l.held || len(l.queue) > 0 {
		ok := l.enqueueLocked(*f, response)
		l.mu.Unlock()
		if !ok {
			return roomSlow, false
		}
		return roomQueued, false
	}
	// The pool is the connection's writer for the moment: frames queued
	// meanwhile wait, and go out after this one.
	l.writing = true
	l.mu.Unlock()
	res, err := w.TryWrite(l.c, f)
	l.mu.Lock()
	switch {
	case res == link.Written:
		l.g.m.framesOut.Inc()
		l.writing = false
		l.kickWriter()
		l.mu.Unlock()
		return roomWritten, false
	case res == link.Pending:
		// The socket took part of it: the connection's writer sends the
		// rest (and whatever follows), with write_timeout.
		l.g.m.framesOut.Inc()
		l.unflushed = true
		go l.writeLoop() // l.writing stays set
		l.mu.Unlock()
		return roomWritten, true
	case err != nil && !errors.Is(err, link.ErrFrameTooLarge) && !errors.Is(err, link.ErrBadFrame):
		l.writing = false
		l.dead = true
		l.mu.Unlock()
		l.closeNow()
		return roomGone, false
	case err != nil:
		l.writing = false
		l.kickWriter()
		l.mu.Unlock()
		return roomGone, false
	}
	// Not tried (no socket of its own, or a stale write deadline): the
	// connection's writer writes it.
	l.writing = false
	if l.dead || l.closing {
		l.kickWriter()
		l.mu.Unlock()
		return roomGone, false
	}
	ok := l.enqueueLocked(*f, response)
	l.mu.Unlock()
	if !ok {
		return roomSlow, false
	}
	return roomQueued, false
}
