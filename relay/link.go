package relay

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

// link is a transport connection plus the table of UDP flows riding its
// datagrams. Flow ids are chosen by the side that opens the flow's stream;
// in Longlink only the dialing side opens streams, so ids never collide.
type link struct {
	conn     transport.Conn
	metrics  *Metrics
	nextFlow atomic.Uint32
	mu       sync.RWMutex
	flows    map[uint32]func([]byte)
}

func newLink(c transport.Conn, m *Metrics) *link {
	l := &link{conn: c, metrics: m, flows: map[uint32]func([]byte){}}
	go l.readDatagrams()
	return l
}

func (l *link) readDatagrams() {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-l.conn.Done(); cancel() }()
	for {
		d, err := l.conn.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		flow, payload, err := wire.ParseDatagram(d)
		if err != nil {
			l.metrics.DatagramsDropped.WithLabelValues("malformed").Inc()
			continue
		}
		l.mu.RLock()
		h := l.flows[flow]
		l.mu.RUnlock()
		if h == nil {
			l.metrics.DatagramsDropped.WithLabelValues("unknown_flow").Inc()
			continue
		}
		h(payload)
	}
}

func (l *link) addFlow(id uint32, h func([]byte)) {
	l.mu.Lock()
	l.flows[id] = h
	l.mu.Unlock()
}

func (l *link) removeFlow(id uint32) {
	l.mu.Lock()
	delete(l.flows, id)
	l.mu.Unlock()
}

func (l *link) allocFlow() uint32 {
	for {
		if id := l.nextFlow.Add(1); id != 0 {
			return id
		}
	}
}

var dgramPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// send frames payload for flow id and sends it as one datagram.
func (l *link) send(id uint32, payload []byte) {
	bp := dgramPool.Get().(*[]byte)
	b := wire.AppendDatagram((*bp)[:0], id, payload)
	l.sendFramed(bp, b)
}

// sendNumbered sends payload as datagram seq of the numbered flow id.
func (l *link) sendNumbered(id, seq uint32, payload []byte) {
	bp := dgramPool.Get().(*[]byte)
	b := wire.AppendNumbered((*bp)[:0], id, seq, payload)
	l.sendFramed(bp, b)
}

// sendFramed sends the datagram b, built in the pooled buffer bp.
func (l *link) sendFramed(bp *[]byte, b []byte) {
	err := l.conn.SendDatagram(b)
	*bp = b
	dgramPool.Put(bp)
	switch {
	case err == transport.ErrDatagramTooLarge:
		l.metrics.DatagramsDropped.WithLabelValues("too_large").Inc()
	case err != nil:
		l.metrics.DatagramsDropped.WithLabelValues("send_error").Inc()
	}
}
