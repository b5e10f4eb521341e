package relay

import (
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

// The egress's side of redundant streams: it pairs the copies of one flow
// by trace id. The first copy to arrive creates the flow and dials the
// service (one PROXY header, one gateway session); later copies join it.
// A copy that ends leaves the flow alive; the flow ends when the service or
// the opener ends it, or when no copy is left. Ended flows leave a tombstone
// for tombstoneTTL, so that a late copy is refused instead of opening a
// second session (which would replay the client's login).

const (
	// tombstoneTTL must exceed the spread between the arrivals of one
	// flow's copies (opened together; each hop reads a header within
	// header_timeout).
	tombstoneTTL = time.Minute
	// maxTombstones bounds the table; the oldest are evicted (counted).
	maxTombstones = 1 << 17
)

var (
	errFlowEnded     = errors.New("redundant flow already ended")
	errFlowMismatch  = errors.New("copy does not match its flow")
	errTooManyCopies = errors.New("redundant flow has all its copies")
)

type pairTable struct {
	m     *Metrics
	mu    sync.Mutex
	flows map[wire.TraceID]*pairedFlow
	tombs map[wire.TraceID]struct{}
	order []tombstone // oldest first, from head
	head  int
}

type tombstone struct {
	trace   wire.TraceID
	expires time.Time
}

func newPairTable(m *Metrics) *pairTable {
	return &pairTable{m: m, flows: map[wire.TraceID]*pairedFlow{}, tombs: map[wire.TraceID]struct{}{}}
}

// pairedFlow is one redundant flow at the egress.
type pairedFlow struct {
	hdr    wire.Header // the first copy's, to check the others against
	id     uint64      // written to every copy: tells the opener which egress flow it is
	copies int
	ready  chan struct{} // closed once the service is dialed (or failed)
	status wire.Status   // set before ready is closed
	conn   net.Conn
	in     *merger // copies → service
	out    *fanout // service → copies
}

// join finds or creates the flow of copy h. created tells the caller to
// dial the service and call start or fail.
func (t *pairTable) join(h *wire.Header) (f *pairedFlow, created bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(time.Now())
	if _, ok := t.tombs[h.Trace]; ok {
		return nil, false, errFlowEnded
	}
	if f, ok := t.flows[h.Trace]; ok {
		if f.hdr.Kind != h.Kind || f.hdr.Service != h.Service || f.hdr.Cluster != h.Cluster || f.hdr.Client != h.Client {
			return nil, false, errFlowMismatch
		}
		if f.copies >= wire.MaxCopies {
			return nil, false, errTooManyCopies
		}
		f.copies++
		// Counted live before the caller waits: the flow does not end
		// for lack of copies while this one is being set up.
		f.in.add()
		return f, false, nil
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	f = &pairedFlow{hdr: *h, id: binary.BigEndian.Uint64(id[:]), copies: 1, ready: make(chan struct{}),
		in: newMerger(t.m), out: newFanout(t.m)}
	f.in.add()
	t.flows[h.Trace] = f
	t.m.RedundantFlows.Inc()
	return f, true, nil
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

// terminateRedundant is the egress for one copy of a redundant stream. It
// returns when the copy ends.
func (n *Node) terminateRedundant(s transport.Stream, h *wire.Header, svc Service) {
	f, created, err := n.pairs.join(h)
	if err != nil {
		if errors.Is(err, errFlowEnded) {
			n.m.RedundantCopies.WithLabelValues("refused_late").Inc()
		}
		n.reject(s, h.Kind, wire.StatusRefused, err.Error())
		return
	}
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
	c := f.out.join(h.Copy, s, func(start uint64) []byte {
		b := wire.AppendStatus(make([]byte, 0, 2+wire.CopyStartLen), wire.StatusOK, "")
		return wire.AppendCopyStart(b, f.id, start)
	})
	if c == nil { // the flow ended meanwhile
		f.in.copyEnded(errFlowEnded)
		n.reject(s, h.Kind, wire.StatusRefused, errFlowEnded.Error())
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
