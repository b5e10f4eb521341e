package relay

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

// The egress's side of sequenced streams: it pairs the copies of one flow
// by trace id. The first copy to arrive creates the flow and dials the
// service (one PROXY header, one gateway session); later copies join it. A
// copy marked join never creates a flow: it waits up to joinWait for the
// copy that does, and is refused (gone) if none comes. A copy that ends
// leaves the flow alive; the flow ends when the service or the opener ends
// it, or when no copy has been live for resume.grace (the opener resumes
// within it). Ended flows leave a tombstone for tombstoneTTL, so that a
// late copy is refused instead of opening a second session (which would
// replay the client's login).

const (
	// tombstoneTTL must exceed the spread between the arrivals of one
	// flow's copies (opened together; each hop reads a header within
	// header_timeout) and resume.grace.
	tombstoneTTL = time.Minute
	// maxTombstones bounds the table; the oldest are evicted (counted).
	maxTombstones = 1 << 17
	// joinWait is how long a joining copy that overtook the copy opening
	// its flow waits for it.
	joinWait = 3 * time.Second
)

var (
	errFlowEnded     = errors.New("sequenced flow already ended")
	errNoSuchFlow    = errors.New("no sequenced flow to join")
	errFlowMismatch  = errors.New("copy does not match its flow")
	errTooManyCopies = errors.New("sequenced flow has all its copies")
)

type pairTable struct {
	m       *Metrics
	grace   time.Duration // the mergers' stall grace (resume.grace)
	window  int           // the senders' window (resume.buffer)
	mu      sync.Mutex
	flows   map[wire.TraceID]*pairedFlow
	tombs   map[wire.TraceID]struct{}
	order   []tombstone // oldest first, from head
	head    int
	waiting map[wire.TraceID][]chan struct{} // joining copies waiting for their flow
}

type tombstone struct {
	trace   wire.TraceID
	expires time.Time
}

func newPairTable(m *Metrics, rc ResumeConfig) *pairTable {
	return &pairTable{m: m, grace: rc.Grace.D(), window: rc.Buffer, flows: map[wire.TraceID]*pairedFlow{},
		tombs: map[wire.TraceID]struct{}{}, waiting: map[wire.TraceID][]chan struct{}{}}
}

// pairedFlow is one sequenced flow at the egress.
type pairedFlow struct {
	hdr    wire.Header   // the first copy's, to check the others against
	id     uint64        // written to every copy: tells the opener which egress flow it is
	copies int           // live copies
	ready  chan struct{} // closed once the service is dialed (or failed)
	status wire.Status   // set before ready is closed
	conn   net.Conn
	in     *merger // copies → service
	out    *sender // service → copies
}

// join finds or creates the flow of copy h. created tells the caller to
// dial the service and call start or fail. A joining copy (h.Join) waits
// for its flow up to joinWait, or until ctx is done.
func (t *pairTable) join(ctx context.Context, h *wire.Header) (f *pairedFlow, created bool, err error) {
	f, created, wait, err := t.tryJoin(h)
	if wait == nil {
		return f, created, err
	}
	timer := time.NewTimer(joinWait)
	defer timer.Stop()
	select {
	case <-wait:
	case <-timer.C:
	case <-ctx.Done():
	}
	t.mu.Lock()
	t.unwait(h.Trace, wait)
	t.mu.Unlock()
	f, created, _, err = t.tryJoin(h)
	if err == nil && f == nil {
		err = errNoSuchFlow
	}
	return f, created, err
}

// tryJoin joins or creates h's flow; for a joining copy whose flow does
// not exist yet it returns a channel closed when a flow is created for
// the trace (and f nil).
func (t *pairTable) tryJoin(h *wire.Header) (f *pairedFlow, created bool, wait chan struct{}, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(time.Now())
	if _, ok := t.tombs[h.Trace]; ok {
		return nil, false, nil, errFlowEnded
	}
	if f, ok := t.flows[h.Trace]; ok {
		if f.hdr.Kind != h.Kind || f.hdr.Service != h.Service || f.hdr.Cluster != h.Cluster || f.hdr.Client != h.Client {
			return nil, false, nil, errFlowMismatch
		}
		if f.copies >= wire.MaxCopies {
			return nil, false, nil, errTooManyCopies
		}
		f.copies++
		// Counted live before the caller waits: the flow does not end
		// for lack of copies while this one is being set up.
		f.in.add()
		return f, false, nil, nil
	}
	if h.Join {
		wait = make(chan struct{})
		t.waiting[h.Trace] = append(t.waiting[h.Trace], wait)
		return nil, false, wait, nil
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	f = &pairedFlow{hdr: *h, id: binary.BigEndian.Uint64(id[:]), copies: 1, ready: make(chan struct{}),
		in: newMerger(t.m, t.grace)}
	f.out = newSender(t.m, f.in, t.window)
	f.in.out = f.out
	f.in.add()
	t.flows[h.Trace] = f
	t.m.RedundantFlows.Inc()
	for _, w := range t.waiting[h.Trace] {
		close(w)
	}
	delete(t.waiting, h.Trace)
	return f, true, nil, nil
}

// unwait forgets a waiting copy's channel (it may have been closed and
// removed already). t.mu is held.
func (t *pairTable) unwait(trace wire.TraceID, wait chan struct{}) {
	ws := t.waiting[trace]
	for i, w := range ws {
		if w == wait {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(t.waiting, trace)
	} else {
		t.waiting[trace] = ws
	}
}

// leave counts a copy of f gone.
func (t *pairTable) leave(f *pairedFlow) {
	t.mu.Lock()
	f.copies--
	t.mu.Unlock()
}

// end removes the flow and leaves its tombstone.
func (t *pairTable) end(f *pairedFlow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.flows[f.hdr.Trace] != f {
		return
	}
	delete(t.flows, f.hdr.Trace)
	t.m.RedundantFlows.Dec()
	now := time.Now()
	t.sweep(now)
	if len(t.tombs) >= maxTombstones {
		t.evict()
		t.m.RedundantTombstones.WithLabelValues("evicted").Inc()
	}
	t.tombs[f.hdr.Trace] = struct{}{}
	t.order = append(t.order, tombstone{f.hdr.Trace, now.Add(tombstoneTTL)})
	t.m.RedundantTombstones.WithLabelValues("added").Inc()
}

func (t *pairTable) sweep(now time.Time) {
	for t.head < len(t.order) && now.After(t.order[t.head].expires) {
		t.evict()
	}
}

// evict drops the oldest tombstone.
func (t *pairTable) evict() {
	delete(t.tombs, t.order[t.head].trace)
	t.order[t.head] = tombstone{}
	t.head++
	if t.head > len(t.order)/2 {
		t.order = append(t.order[:0], t.order[t.head:]...)
		t.head = 0
	}
}

// terminateSequenced is the egress for one copy of a sequenced stream. It
// returns when the copy ends.
func (n *Node) terminateSequenced(s transport.Stream, h *wire.Header, svc Service) {
	// Every copy opens with the opener's acknowledgement: how many records
	// towards it the opener has, which is where this copy's start.
	t := time.AfterFunc(n.live.Load().HeaderTimeout.D(), func() { _ = s.Close() })
	ack, err := wire.ReadFrame(s)
	if !t.Stop() || err != nil || ack.Kind != wire.FrameAck {
		n.reject(s, h.Kind, wire.StatusBadRequest, "a copy must start with an acknowledgement")
		return
	}
	f, created, err := n.pairs.join(n.ctx, h)
	if err != nil {
		st := wire.StatusRefused
		if errors.Is(err, errFlowEnded) || errors.Is(err, errNoSuchFlow) {
			st = wire.StatusGone
			n.m.RedundantCopies.WithLabelValues("refused_late").Inc()
		}
		n.reject(s, h.Kind, st, err.Error())
		return
	}
	defer n.pairs.leave(f)
	if created {
		n.dialPaired(f, h, svc)
	} else {
		n.m.RedundantCopies.WithLabelValues("joined").Inc()
		select {
		case <-f.ready:
		case <-n.ctx.Done():
			f.in.copyEnded(n.ctx.Err())
			_ = s.Close()
			return
		}
	}
	if f.status != wire.StatusOK {
		f.in.copyEnded(errors.New("service unreachable"))
		n.reject(s, h.Kind, f.status, h.Service)
		return
	}
	var c *copyOut
	if err = f.out.acked(ack.Index); err == nil {
		c, err = f.out.join(h.Copy, s, ack.Index, int(h.Small), func(first uint64) []byte {
			b := wire.AppendStatus(make([]byte, 0, 2+wire.CopyStartLen), wire.StatusOK, "")
			return wire.AppendCopyStart(b, f.id, first)
		})
	}
	if c != nil && err == nil && h.Small > 0 {
		// A disjoint copy: it brings and takes the small records only.
		f.in.markDisjoint(h.Copy, int(h.Small))
	}
	if c == nil || err != nil {
		// The flow ended meanwhile, or the opener asks for records this
		// end no longer has.
		f.in.copyEnded(errFlowEnded)
		reason := errFlowEnded.Error()
		if err != nil {
			reason = err.Error()
		}
		n.reject(s, h.Kind, wire.StatusGone, reason)
		return
	}
	if created {
		// Only now, so that the first copy carries the service's bytes
		// from the first record on.
		n.wg.Add(1)
		go n.carryPaired(f)
	}
	n.m.Streams.WithLabelValues(h.Kind.String(), "terminated").Inc()
	if err := f.in.feed(h.Copy, 0, s); err != nil {
		c.lost("error")
	}
}

// dialPaired connects the flow to its service; on failure every copy is
// refused.
func (n *Node) dialPaired(f *pairedFlow, h *wire.Header, svc Service) {
	defer close(f.ready)
	d := net.Dialer{Timeout: n.cfg.Egress.DialTimeout.D()}
	conn, err := d.DialContext(n.ctx, "tcp", svc.Address)
	if err == nil && svc.proxy() {
		if _, err = proxyHeader(h.Client, conn).WriteTo(conn); err != nil {
			_ = conn.Close()
		}
	}
	if err != nil {
		n.m.EgressDials.WithLabelValues(h.Service, "error").Inc()
		n.log.Warn("egress: service unreachable", "service", h.Service, "addr", svc.Address, "err", err)
		f.status = wire.StatusUnreachable
		n.pairs.end(f)
		return
	}
	n.m.EgressDials.WithLabelValues(h.Service, "ok").Inc()
	f.conn = conn
}

// carryPaired moves the flow's bytes between its service connection and
// its copies until either side ends or no copy is left.
func (n *Node) carryPaired(f *pairedFlow) {
	defer n.wg.Done()
	up, down := n.m.Bytes.WithLabelValues("up"), n.m.Bytes.WithLabelValues("down")
	done := make(chan struct{}, 2)
	go func() {
		// copies → service
		bp := copyBufPool.Get().(*[]byte)
		defer copyBufPool.Put(bp)
		for {
			k, err := f.in.Read(*bp)
			if k > 0 {
				if _, werr := f.conn.Write((*bp)[:k]); werr != nil {
					break
				}
				up.Add(float64(k))
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}()
	go func() {
		// service → copies
		bp := copyBufPool.Get().(*[]byte)
		defer copyBufPool.Put(bp)
		for {
			k, err := f.conn.Read(*bp)
			if k > 0 {
				if _, werr := f.out.Write((*bp)[:k]); werr != nil {
					break
				}
				down.Add(float64(k))
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					n.log.Debug("egress: service read", "service", f.hdr.Service, "trace", f.hdr.Trace.String(), "err", err)
				}
				break
			}
		}
		done <- struct{}{}
	}()
	ended := 0
	select {
	case <-done:
		ended++
	case <-n.ctx.Done():
	}
	// Whichever side ended, the flow ends: the copies get the end record
	// after what the service sent, the service its connection closed.
	n.pairs.end(f)
	_ = f.conn.Close()
	f.out.end()
	f.in.close()
	for ; ended < 2; ended++ {
		<-done
	}
}
