package relay

import (
	"context"
	"encoding/binary"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

// peer is one next hop: a warm connection, redialed with backoff, and the
// probe results that rank it. It also keeps extra connections (lanes) to
// the same hop, each on its own socket. Flows are spread over the lanes, so
// that each lane's congestion controller carries a share of the traffic
// (a random loss then shrinks one share's window, not every flow's), and
// the copies of a redundant stream never share a packet: a lost packet
// costs at most one copy.
type peer struct {
	r   *Router
	hop Hop
	tr  transport.Transport

	up atomic.Bool
	// lastReply is when lane 0 last answered a probe (Unix ns); suspect
	// is set while that is more than resume.after ago, and the streams
	// watching the hop (watch) are told once each time it becomes so.
	lastReply atomic.Int64
	suspect   atomic.Bool
	wmu       sync.Mutex
	watchers  map[uint64]func()
	watchID   uint64
	mu        sync.Mutex
	link      *link   // lane 0, probed: it decides whether the hop is up
	extra     []*link // lanes 1.., nil while (re)dialing
	srtt      float64 // seconds
	jitter    float64
	loss      float64
	stopCh    chan struct{}
	once      sync.Once
}

func newPeer(r *Router, h Hop, tr transport.Transport) *peer {
	return &peer{r: r, hop: h, tr: tr, stopCh: make(chan struct{}), extra: make([]*link, r.cfg.Lanes-1),
		watchers: map[uint64]func(){}}
}

// watch calls fn (once) when the hop next falls silent for resume.after
// (or is stopped); cancel forgets fn. fn must not block: it runs on the
// hop's watchdog.
func (p *peer) watch(fn func()) (cancel func()) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.watchID++
	id := p.watchID
	p.watchers[id] = fn
	return func() {
		p.wmu.Lock()
		delete(p.watchers, id)
		p.wmu.Unlock()
	}
}

// alarm tells every watcher, once, that the hop failed.
func (p *peer) alarm() {
	p.wmu.Lock()
	fns := p.watchers
	p.watchers = map[uint64]func(){}
	p.wmu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// watchdog marks the hop suspect while lane 0's probes go unanswered for
// resume.after, and alarms the streams on it when it becomes so. It
// checks four times per resume.after, so a hop is suspect at most a
// quarter of that late.
func (p *peer) watchdog(ctx context.Context) {
	after := p.r.cfg.Resume.After.D()
	t := time.NewTicker(after / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.alarm()
			return
		case <-p.stopCh:
			p.alarm()
			return
		case <-t.C:
		}
		silent := time.Since(time.Unix(0, p.lastReply.Load())) > after
		if silent && !p.suspect.Swap(true) {
			p.r.m.PathSuspects.WithLabelValues(p.hop.label()).Inc()
			p.r.log.Warn("next hop silent; its resumable streams move to other paths", "path", p.hop.label(), "after", after)
			p.r.poke()
			p.alarm()
		} else if !silent && p.suspect.Swap(false) {
			p.r.poke()
		}
	}
}

// closeLanes closes every lane's connection, which ends the flows on it;
// p.mu is held.
func (p *peer) closeLanes() {
	for _, l := range append([]*link{p.link}, p.extra...) {
		if l != nil {
			_ = l.conn.Close()
		}
	}
}

func (p *peer) stop() {
	p.once.Do(func() {
		close(p.stopCh)
		p.mu.Lock()
		p.closeLanes()
		p.mu.Unlock()
	})
}

// laneLink is the connection a stream takes: the lane its trace id picks,
// plus its copy index so that the copies of one stream take consecutive
// lanes. Every node of the path computes the same lane from the header.
// A lane being redialed is replaced by lane 0.
func (p *peer) laneLink(t wire.TraceID, copy uint8) *link {
	n := uint32(len(p.extra) + 1)
	return p.lane(int((binary.BigEndian.Uint32(t[:4]) + uint32(copy)) % n))
}

// lane returns lane i's connection, or lane 0's while lane i is down.
func (p *peer) lane(i int) *link {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i > 0 && p.extra[i-1] != nil {
		return p.extra[i-1]
	}
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
	var lanes sync.WaitGroup
	defer lanes.Wait()
	p.lastReply.Store(time.Now().UnixNano())
	lanes.Add(1)
	go func() { defer lanes.Done(); p.watchdog(ctx) }()
	for i := range p.extra {
		if p.tr == nil {
			break
		}
		lanes.Add(1)
		go func() { defer lanes.Done(); p.runLane(ctx, i) }()
	}
	if p.tr == nil {
		p.r.log.Error("next hop uses an unavailable transport", "path", label, "transport", p.hop.Transport)
		return
	}
	for {
		conn := p.dial(ctx, 0)
		if conn == nil {
			return
		}
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
		silent := p.probe(ctx, l)
		// Dead: close the connection so that every flow on it ends and its
		// clients reconnect over the new primary path. A silent hop (its
		// node killed, its link cut) takes every lane with it: their
		// transports would notice only at their idle timeout. The extra
		// lanes redial on their own.
		p.up.Store(false)
		p.mu.Lock()
		if silent {
			p.closeLanes()
		}
		p.link = nil
		p.mu.Unlock()
		_ = conn.Close()
		m.PathUp.WithLabelValues(label).Set(0)
		p.r.poke()
		p.r.log.Warn("next hop down", "path", label)
	}
}

// runLane keeps extra connection i to the hop: dialed with backoff and
// redialed when it ends. Lanes are not probed: the hop's state comes from
// lane 0, and a copy on a dead lane ends with its connection.
func (p *peer) runLane(ctx context.Context, i int) {
	for {
		conn := p.dial(ctx, i+1)
		if conn == nil {
			return
		}
		p.mu.Lock()
		stopped := p.stopped()
		if !stopped {
			p.extra[i] = newLink(conn, p.r.m)
		}
		p.mu.Unlock()
		if stopped {
			_ = conn.Close()
			return
		}
		select {
		case <-conn.Done():
		case <-ctx.Done():
		case <-p.stopCh:
		}
		p.mu.Lock()
		p.extra[i] = nil
		p.mu.Unlock()
		_ = conn.Close()
		if !p.pause(ctx, laneRedialPause) {
			return
		}
	}
}

// laneRedialPause is how long an extra lane waits before redialing a
// connection that ended.
const laneRedialPause = 100 * time.Millisecond

// dial connects lane to the hop, retrying with exponential backoff (100 ms
// to 3 s). It returns nil once ctx is done or the peer is stopped.
func (p *peer) dial(ctx context.Context, lane int) transport.Conn {
	label := p.hop.label()
	backoff := 100 * time.Millisecond
	for {
		if ctx.Err() != nil || p.stopped() {
			return nil
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := p.tr.Dial(dctx, p.hop.Address)
		cancel()
		if err == nil {
			p.r.m.PeerDials.WithLabelValues(label, "ok").Inc()
			return conn
		}
		p.r.m.PeerDials.WithLabelValues(label, "error").Inc()
		p.r.log.Debug("next hop dial failed", "path", label, "lane", lane, "err", err)
		if !p.pause(ctx, backoff) {
			return nil
		}
		backoff = min(backoff*2, 3*time.Second)
	}
}

// pause waits d; it reports false when ctx is done or the peer stopped first.
func (p *peer) pause(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-p.stopCh:
		return false
	case <-time.After(d):
		return true
	}
}

func (p *peer) stopped() bool {
	select {
	case <-p.stopCh:
		return true
	default:
		return false
	}
}

// probe sends a probe every interval on a dedicated stream. A hop silent
// for Timeout plus DownAfter-1 intervals is down (new flows avoid it; it comes
// back up when answers resume); a hop silent for DeadAfter, or whose
// connection ended, is dead: probe returns, silent in the first case.
func (p *peer) probe(ctx context.Context, l *link) (silent bool) {
	cfg := p.r.cfg.Probe
	label := p.hop.label()
	m := p.r.m
	octx, cancel := context.WithTimeout(ctx, cfg.Timeout.D()+time.Second)
	s, err := l.conn.OpenStream(octx)
	cancel()
	if err != nil {
		return false
	}
	defer s.Close()
	var hb [wire.MaxHeaderLen]byte
	b, _ := wire.AppendHeader(hb[:0], &wire.Header{Kind: wire.KindProbe, Hops: 1})
	if _, err := s.Write(b); err != nil {
		return false
	}

	type sample struct {
		seq  uint64
		sent time.Time
		rtt  float64 // -1 while outstanding, -2 when lost
	}
	var mu sync.Mutex
	window := make([]sample, cfg.Window)
	lastReply := time.Now() // silence is measured from the start too
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
			now := time.Now()
			rtt := now.Sub(time.Unix(0, sentNs)).Seconds()
			p.lastReply.Store(now.UnixNano())
			mu.Lock()
			lastReply = now
			sl := &window[seq%uint64(len(window))]
			if sl.seq == seq && sl.sent.UnixNano() == sentNs && sl.rtt < 0 {
				// A late answer still counts for RTT; it stays lost for the
				// loss ratio if it came after Timeout.
				if sl.rtt == -1 {
					sl.rtt = rtt
				}
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

	downAfter := cfg.Timeout.D() + time.Duration(cfg.DownAfter-1)*cfg.Interval.D()
	t := time.NewTicker(cfg.Interval.D())
	defer t.Stop()
	var seq uint64
	for {
		now := time.Now()
		mu.Lock()
		lost, answered := 0, 0
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
			case sl.rtt >= 0:
				answered++
			}
		}
		silence := now.Sub(lastReply)
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

		switch {
		case silence > cfg.DeadAfter.D():
			return true
		case silence > downAfter:
			if p.up.Swap(false) {
				m.PathUp.WithLabelValues(label).Set(0)
				p.r.log.Warn("next hop not answering; new flows avoid it", "path", label, "silence", silence)
				p.r.poke()
			}
		case answered > 0 && !p.up.Load():
			p.up.Store(true)
			m.PathUp.WithLabelValues(label).Set(1)
			p.r.log.Info("next hop up", "path", label, "rtt", time.Duration(rtt*float64(time.Second)))
			p.r.poke()
		}
		var pb [wire.ProbeLen]byte
		if _, err := s.Write(wire.AppendProbe(pb[:0], seq, now.UnixNano())); err != nil {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-p.stopCh:
			return false
		case <-l.conn.Done():
			return false
		case _, ok := <-replies:
			if !ok {
				return false
			}
			if !p.up.Load() {
				continue // the first answer marks the hop up without waiting a tick
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return false
			case <-p.stopCh:
				return false
			}
		case <-t.C:
		}
	}
}

// lanes lists the connection of each lane, lane 0 first; nil while a
// lane is being dialed.
func (p *peer) lanes() []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*link{p.link}, p.extra...)
}
