package wan

import (
	"hash/fnv"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/tools/wanemu/wan/internal/impair"
)

// DirectionStats counts what one link direction did.
type DirectionStats struct {
	Delivered, Lost, QueueFull, Overflow uint64
	DeliveredBytes                       uint64
}

// direction is one way of one link: the impairment pipeline and the delay
// line of packets waiting for their delivery time. Readers call admit; one
// goroutine (run) writes due packets to their destination.
type direction struct {
	label string
	pool  *sync.Pool
	stop  <-chan struct{}
	// cut drops every packet (World.Cut: a partition, not a kill).
	cut atomic.Bool

	mu    sync.Mutex
	pl    *impair.Pipeline
	line  delayLine
	seq   uint64
	stats DirectionStats
	wake  chan struct{}

	delivered, lost, queueFull, overflow, bytes prometheus.Counter
	inFlight                                    prometheus.Gauge
}

func newDirection(label string, im Impairment, seed uint64, m *metrics, pool *sync.Pool, stop <-chan struct{}) *direction {
	h := fnv.New64a()
	h.Write([]byte(label))
	return &direction{
		label:     label,
		pool:      pool,
		stop:      stop,
		pl:        impair.New(im.params(), seed^h.Sum64()),
		wake:      make(chan struct{}, 1),
		delivered: m.packets.WithLabelValues(label, impair.Deliver.String()),
		lost:      m.packets.WithLabelValues(label, impair.DropLoss.String()),
		queueFull: m.packets.WithLabelValues(label, impair.DropQueue.String()),
		overflow:  m.packets.WithLabelValues(label, "overflow"),
		bytes:     m.bytes.WithLabelValues(label),
		inFlight:  m.queued.WithLabelValues(label),
	}
}

// Stats returns a snapshot of the counters.
func (d *direction) Stats() DirectionStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// admit takes ownership of the buffer bp holding size bytes; it is written to
// out when due, or returned to the pool if the packet is dropped.
func (d *direction) admit(bp *[]byte, size int, out io.Writer) {
	now := time.Now()
	d.mu.Lock()
	at, v := d.pl.Admit(now, size)
	switch {
	case v == impair.DropLoss:
		d.stats.Lost++
		d.mu.Unlock()
		d.lost.Inc()
		d.pool.Put(bp)
		return
	case v == impair.DropQueue:
		d.stats.QueueFull++
		d.mu.Unlock()
		d.queueFull.Inc()
		d.pool.Put(bp)
		return
	case len(d.line) >= maxInFlight:
		d.stats.Overflow++
		d.mu.Unlock()
		d.overflow.Inc()
		d.pool.Put(bp)
		return
	}
	d.seq++
	d.line.push(pending{at: at, seq: d.seq, buf: bp, size: size, out: out})
	first := d.line[0].seq == d.seq
	d.mu.Unlock()
	if first {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// run writes packets to their destination when they are due, until stop.
func (d *direction) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []pending
	for {
		d.mu.Lock()
		now := time.Now()
		for len(d.line) > 0 && !d.line[0].at.After(now) {
			due = append(due, d.line.pop())
		}
		wait := time.Hour
		if len(d.line) > 0 {
			wait = d.line[0].at.Sub(now)
		}
		n := len(d.line)
		d.mu.Unlock()
		d.inFlight.Set(float64(n))
		var bytes uint64
		for _, p := range due {
			if _, err := p.out.Write((*p.buf)[:p.size]); err == nil {
				bytes += uint64(p.size)
			}
			d.pool.Put(p.buf)
		}
		if len(due) > 0 {
			d.mu.Lock()
			d.stats.Delivered += uint64(len(due))
			d.stats.DeliveredBytes += bytes
			d.mu.Unlock()
			d.delivered.Add(float64(len(due)))
			d.bytes.Add(float64(bytes))
			clear(due)
			due = due[:0]
		}
		timer.Reset(wait)
		select {
		case <-d.stop:
			d.mu.Lock()
			for _, p := range d.line {
				d.pool.Put(p.buf)
			}
			d.line = nil
			d.mu.Unlock()
			return
		case <-timer.C:
		case <-d.wake:
		}
	}
}

type pending struct {
	at   time.Time
	seq  uint64
	buf  *[]byte
	size int
	out  io.Writer
}

// delayLine is a min-heap of packets by delivery time, then arrival order.
// It is typed (not container/heap) so that a packet costs no allocation.
type delayLine []pending

func (h delayLine) less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}

func (h *delayLine) push(p pending) {
	*h = append(*h, p)
	l := *h
	for i := len(l) - 1; i > 0; {
		parent := (i - 1) / 2
		if !l.less(i, parent) {
			break
		}
		l[i], l[parent] = l[parent], l[i]
		i = parent
	}
}

func (h *delayLine) pop() pending {
	l := *h
	top := l[0]
	last := len(l) - 1
	l[0] = l[last]
	l[last] = pending{}
	l = l[:last]
	for i := 0; ; {
		small, left, right := i, 2*i+1, 2*i+2
		if left < len(l) && l.less(left, small) {
			small = left
		}
		if right < len(l) && l.less(right, small) {
			small = right
		}
		if small == i {
			break
		}
		l[i], l[small] = l[small], l[i]
		i = small
	}
	*h = l
	return top
}
