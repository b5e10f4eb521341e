package relay

import (
	"context"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

// peer is one next hop: a warm connection, redialed with backoff, and the
// probe results that rank it.
type peer struct {
	r   *Router
	hop Hop
	tr  transport.Transport

	up     atomic.Bool
	mu     sync.Mutex
	link   *link
	srtt   float64 // seconds
	jitter float64
	loss   float64
	stopCh chan struct{}
	once   sync.Once
}

func newPeer(r *Router, h Hop, tr transport.Transport) *peer {
	return &peer{r: r, hop: h, tr: tr, stopCh: make(chan struct{})}
}

func (p *peer) stop() {
	p.once.Do(func() {
		close(p.stopCh)
		p.mu.Lock()
		if p.link != nil {
			_ = p.link.conn.Close()
		}
		p.mu.Unlock()
	})
}

func (p *peer) currentLink() *link {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.link
}

func (p *peer) stats() (rtt, jitter time.Duration, loss float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Duration(p.srtt * float64(time.Second)), time.Duration(p.jitter * float64(time.Second)), p.loss
}

// score ranks a path: smoothed RTT plus twice the jitter, inflated by loss
// (every 10% of loss doubles the score). Lower is better.
func (p *peer) score() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := (p.srtt + 2*p.jitter) * (1 + 10*p.loss)
	return time.Duration(s * float64(time.Second))
}

func (p *peer) run(ctx context.Context) {
	label := p.hop.label()
	m := p.r.m
	m.PathUp.WithLabelValues(label).Set(0)
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.stopCh:
			return
		default:
		}
		if p.tr == nil {
			p.r.log.Error("next hop uses an unavailable transport", "path", label, "transport", p.hop.Transport)
			return
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := p.tr.Dial(dctx, p.hop.Address)
		cancel()
		if err != nil {
			m.PeerDials.WithLabelValues(label, "error").Inc()
			p.r.log.Debug("next hop dial failed", "path", label, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-p.stopCh:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 3*time.Second)
			continue
		}
		m.PeerDials.WithLabelValues(label, "ok").Inc()
		backoff = 100 * time.Millisecond
		l := newLink(conn, m)
		p.mu.Lock()
		p.link = l
		p.srtt, p.jitter, p.loss = 0, 0, 0
		p.mu.Unlock()
		select {
		case <-p.stopCh: // stopped while dialing
			_ = conn.Close()
			return
		default:
		}
		p.probe(ctx, l)
		// Down: close the connection so every flow on it ends and its
		// clients reconnect over the new primary path.
		p.up.Store(false)
		p.mu.Lock()
		p.link = nil
		p.mu.Unlock()
		_ = conn.Close()
		m.PathUp.WithLabelValues(label).Set(0)
		p.r.poke()
		p.r.log.Warn("next hop down", "path", label)
	}
}

// probe sends a probe every interval on a dedicated stream and returns when
// the hop is down: DownAfter consecutive probes unanswered within Timeout, or
// the connection gone.
func (p *peer) probe(ctx context.Context, l *link) {
	cfg := p.r.cfg.Probe
	label := p.hop.label()
	m := p.r.m
	octx, cancel := context.WithTimeout(ctx, cfg.Timeout.D()+time.Second)
	s, err := l.conn.OpenStream(octx)
	cancel()
	if err != nil {
		return
	}
	defer s.Close()
	var hb [wire.MaxHeaderLen]byte
	b, _ := wire.AppendHeader(hb[:0], &wire.Header{Kind: wire.KindProbe, Hops: 1})
	if _, err := s.Write(b); err != nil {
		return
	}

	type sample struct {
		seq  uint64
		sent time.Time
		rtt  float64 // -1 while outstanding, -2 when lost
	}
	var mu sync.Mutex
	var lastAnswered uint64 // newest probe that came back
	window := make([]sample, cfg.Window)
	replies := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, wire.ProbeLen)
		for {
			if _, err := io.ReadFull(s, buf); err != nil {
				close(replies)
				return
			}
			seq, sentNs, err := wire.ParseProbe(buf)
			if err != nil {
				close(replies)
				return
			}
			rtt := time.Since(time.Unix(0, sentNs)).Seconds()
			mu.Lock()
			sl := &window[seq%uint64(len(window))]
			if sl.rtt == -1 && sl.seq == seq && sl.sent.UnixNano() == sentNs {
				sl.rtt = rtt
				lastAnswered = max(lastAnswered, seq)
				p.mu.Lock()
				if p.srtt == 0 {
					p.srtt = rtt
				} else {
					p.jitter += (math.Abs(rtt-p.srtt) - p.jitter) / 4
					p.srtt += (rtt - p.srtt) / 8
				}
				p.mu.Unlock()
			}
			mu.Unlock()
			select {
			case replies <- struct{}{}:
			default:
			}
		}
	}()

	t := time.NewTicker(cfg.Interval.D())
	defer t.Stop()
	var seq uint64
	for {
		now := time.Now()
		mu.Lock()
		// Age outstanding probes; count the window's loss and the probes
		// lost since the newest answer.
		lost, answered, consecutiveLost := 0, 0, 0
		for i := range window {
			sl := &window[i]
			if sl.seq == 0 {
				continue
			}
			if sl.rtt == -1 && now.Sub(sl.sent) > cfg.Timeout.D() {
				sl.rtt = -2
			}
			switch {
			case sl.rtt == -2:
				lost++
				if sl.seq > lastAnswered {
					consecutiveLost++
				}
			case sl.rtt >= 0:
				answered++
			}
		}
		seq++
		window[seq%uint64(len(window))] = sample{seq: seq, sent: now, rtt: -1}
		mu.Unlock()

		loss := 0.0
		if lost+answered > 0 {
			loss = float64(lost) / float64(lost+answered)
		}
		p.mu.Lock()
		p.loss = loss
		rtt, jit := p.srtt, p.jitter
		p.mu.Unlock()
		m.PathRTT.WithLabelValues(label).Set(rtt)
		m.PathJitter.WithLabelValues(label).Set(jit)
		m.PathLoss.WithLabelValues(label).Set(loss)

		if consecutiveLost >= cfg.DownAfter {
			return
		}
		if answered > 0 && !p.up.Load() {
			p.up.Store(true)
			m.PathUp.WithLabelValues(label).Set(1)
			p.r.log.Info("next hop up", "path", label, "rtt", time.Duration(rtt*float64(time.Second)))
			p.r.poke()
		}
		var pb [wire.ProbeLen]byte
		if _, err := s.Write(wire.AppendProbe(pb[:0], seq, now.UnixNano())); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-p.stopCh:
			return
		case <-l.conn.Done():
			return
		case _, ok := <-replies:
			if !ok {
				return
			}
			if !p.up.Load() {
				continue // the first answer marks the hop up without waiting a tick
			}
			<-t.C
		case <-t.C:
		}
	}
}
