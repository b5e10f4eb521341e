package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

// The egress's side of numbered UDP flows (TUNNEL.md, "Disjoint copies"):
// an edge opens a flow's first copy, which creates the flow here (one
// socket to the service, so the service sees one client), and a copy
// through another relay that joins it. Both bring the flow's datagrams
// with a sequence number; the first arrival of each number goes to the
// service. Datagrams from the service are numbered here and sent on every
// copy (on a copy with a small limit, only those within it). The flow
// lives as long as its first copy's stream, as an unnumbered flow does.

// udpPairTable holds the egress's numbered flows by trace id.
type udpPairTable struct {
	mu      sync.Mutex
	flows   map[wire.TraceID]*numberedFlow
	waiting map[wire.TraceID][]chan struct{}
}

func newUDPPairTable() *udpPairTable {
	return &udpPairTable{flows: map[wire.TraceID]*numberedFlow{}, waiting: map[wire.TraceID][]chan struct{}{}}
}

// numberedFlow is one numbered UDP flow at the egress.
type numberedFlow struct {
	hdr   wire.Header
	conn  net.Conn
	seen  dedupe
	next  atomic.Uint32 // the last number given to a datagram from the service
	small atomic.Int64  // the disjoint copy's limit, once one joined
	last  atomic.Int64  // unix ns of the last datagram either way

	mu     sync.Mutex
	copies []*udpCopy
}

// udpCopy is one copy of a numbered flow: its connection and flow id
// towards the edge.
type udpCopy struct {
	l     *link
	id    uint32
	small int
	s     transport.Stream
}

// add registers the creating copy's flow; a flow of that trace that is
// already there is refused.
func (t *udpPairTable) add(f *numberedFlow) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.flows[f.hdr.Trace]; ok {
		return false
	}
	t.flows[f.hdr.Trace] = f
	for _, w := range t.waiting[f.hdr.Trace] {
		close(w)
	}
	delete(t.waiting, f.hdr.Trace)
	return true
}

func (t *udpPairTable) remove(f *numberedFlow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.flows[f.hdr.Trace] == f {
		delete(t.flows, f.hdr.Trace)
	}
}

// find returns the flow a joining copy h belongs to, waiting up to
// joinWait for its creating copy.
func (t *udpPairTable) find(ctx context.Context, h *wire.Header) (*numberedFlow, error) {
	t.mu.Lock()
	f := t.flows[h.Trace]
	var wait chan struct{}
	if f == nil {
		wait = make(chan struct{})
		t.waiting[h.Trace] = append(t.waiting[h.Trace], wait)
	}
	t.mu.Unlock()
	if wait != nil {
		timer := time.NewTimer(joinWait)
		select {
		case <-wait:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		t.mu.Lock()
		ws := t.waiting[h.Trace]
		for i, w := range ws {
			if w == wait {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(t.waiting, h.Trace)
		} else {
			t.waiting[h.Trace] = ws
		}
		f = t.flows[h.Trace]
		t.mu.Unlock()
	}
	switch {
	case f == nil:
		return nil, errNoSuchFlow
	case f.hdr.Service != h.Service || f.hdr.Cluster != h.Cluster || f.hdr.Client != h.Client:
		return nil, errFlowMismatch
	}
	return f, nil
}

func (f *numberedFlow) addCopy(c *udpCopy) {
	f.mu.Lock()
	f.copies = append(f.copies, c)
	f.mu.Unlock()
	if c.small > 0 {
		f.small.Store(int64(c.small))
	}
}

func (f *numberedFlow) removeCopy(c *udpCopy) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, o := range f.copies {
		if o == c {
			f.copies = append(f.copies[:i], f.copies[i+1:]...)
			return
		}
	}
}

// up is a copy's datagram towards the service: the first of its number
// goes on, later ones are dropped.
func (n *Node) numberedUp(f *numberedFlow, disjoint bool) func([]byte) {
	up := n.m.Datagrams.WithLabelValues("up")
	dup := n.m.DisjointDuplicates.WithLabelValues("udp")
	win := n.m.DisjointWins.WithLabelValues("udp", "primary")
	if disjoint {
		win = n.m.DisjointWins.WithLabelValues("udp", "disjoint")
	}
	return func(p []byte) {
		seq, data, err := wire.ParseNumbered(p)
		if err != nil {
			n.m.DatagramsDropped.WithLabelValues("malformed").Inc()
			return
		}
		f.last.Store(time.Now().UnixNano())
		small := int(f.small.Load())
		if !f.seen.first(seq) {
			if len(data) <= small {
				dup.Inc()
			}
			return
		}
		if len(data) <= small {
			win.Inc()
		}
		up.Inc()
		_, _ = f.conn.Write(data)
	}
}

// terminateNumbered is the egress for one copy of a numbered UDP flow. It
// returns when the copy's stream ends; the creating copy's end ends the
// flow.
func (n *Node) terminateNumbered(in *link, s transport.Stream, h *wire.Header, svc Service) {
	c := &udpCopy{l: in, id: h.Flow, small: int(h.Small), s: s}
	if h.Join {
		f, err := n.udpPairs.find(n.ctx, h)
		if err != nil {
			st := wire.StatusRefused
			if errors.Is(err, errNoSuchFlow) {
				st = wire.StatusGone
			}
			n.reject(s, h.Kind, st, err.Error())
			return
		}
		f.addCopy(c)
		defer f.removeCopy(c)
		in.addFlow(h.Flow, n.numberedUp(f, c.small > 0))
		defer in.removeFlow(h.Flow)
		var b [2]byte
		if _, err := s.Write(wire.AppendStatus(b[:0], wire.StatusOK, "")); err != nil {
			_ = s.Close()
			return
		}
		n.m.Streams.WithLabelValues(h.Kind.String(), "terminated").Inc()
		_, _ = io.Copy(io.Discard, s)
		_ = s.Close()
		return
	}
	conn, err := net.Dial("udp", svc.Address)
	if err != nil {
		n.m.EgressDials.WithLabelValues(h.Service, "error").Inc()
		n.reject(s, h.Kind, wire.StatusUnreachable, h.Service)
		return
	}
	n.m.EgressDials.WithLabelValues(h.Service, "ok").Inc()
	f := &numberedFlow{hdr: *h, conn: conn}
	f.last.Store(time.Now().UnixNano())
	if !n.udpPairs.add(f) {
		_ = conn.Close()
		n.reject(s, h.Kind, wire.StatusRefused, "numbered flow already open")
		return
	}
	f.addCopy(c)
	in.addFlow(h.Flow, n.numberedUp(f, c.small > 0))
	defer func() {
		in.removeFlow(h.Flow)
		n.udpPairs.remove(f)
		_ = conn.Close()
		f.mu.Lock()
		for _, o := range f.copies {
			_ = o.s.Close()
		}
		f.mu.Unlock()
	}()
	var b [2]byte
	if _, err := s.Write(wire.AppendStatus(b[:0], wire.StatusOK, "")); err != nil {
		_ = s.Close()
		return
	}
	n.m.Streams.WithLabelValues(h.Kind.String(), "terminated").Inc()
	go n.numberedDown(f, s)
	_, _ = io.Copy(io.Discard, s)
	_ = s.Close()
}

// numberedDown numbers the service's datagrams and sends each on every
// copy that carries it, until the service socket closes or the flow is
// idle for udp_idle_timeout (then it closes the creating copy's stream s).
func (n *Node) numberedDown(f *numberedFlow, s transport.Stream) {
	down := n.m.Datagrams.WithLabelValues("down")
	sent := n.m.DisjointSent.WithLabelValues("udp")
	idle := n.cfg.Egress.UDPIdleTimeout.D()
	buf := make([]byte, 64<<10)
	var copies []*udpCopy
	for {
		_ = f.conn.SetReadDeadline(time.Now().Add(idle))
		k, err := f.conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, f.last.Load())) < idle {
				continue
			}
			_ = s.Close()
			return
		}
		f.last.Store(time.Now().UnixNano())
		down.Inc()
		seq := f.next.Add(1)
		f.mu.Lock()
		copies = append(copies[:0], f.copies...)
		f.mu.Unlock()
		for _, c := range copies {
			if c.small == 0 || k <= c.small {
				c.l.sendNumbered(c.id, seq, buf[:k])
				if c.small > 0 {
					sent.Inc()
				}
			}
		}
	}
}
