package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

// ErrNoRoute is returned when no path to the destination cluster is up.
var ErrNoRoute = errors.New("relay: no route to cluster")

// Router keeps warm connections to its next hops, probes them, picks the
// best path per destination cluster with hysteresis, and opens tunnel
// streams and UDP flows on it. Edges and relays each own one.
type Router struct {
	cfg RoutingConfig
	trs map[string]transport.Transport
	m   *Metrics
	log *slog.Logger

	mu     sync.Mutex
	peers  map[string]*peer
	routes map[string]*routeState

	// sticky remembers the path each affinity key (a Socket.IO sid) last
	// took, so every request of one session follows the same path.
	stickyMu sync.Mutex
	sticky   map[string]stickyEntry
	// pins keeps the copies of a sequenced stream that may open its flow
	// on one path at every hop (they must reach the same egress); see
	// pinPeer.
	pins map[wire.TraceID]stickyEntry

	// waitingDisjoint holds the streams that have no disjoint copy for
	// want of a free relay: they get one when their cluster has two up.
	disjointMu      sync.Mutex
	waitingDisjoint map[*seqTunnel]struct{}

	kick   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type stickyEntry struct {
	p    *peer
	used time.Time
}

const (
	stickyTTL = 10 * time.Minute
	stickyMax = 200000
	// The copies of a sequenced stream are opened together; a pin only
	// has to outlive the spread of their arrival at a hop.
	pinTTL = 30 * time.Second
	pinMax = 100000
)

type routeState struct {
	route Route
	hops  []*peer
	// directs are the cluster's egresses used while every hop is down
	// (Route.Direct, then Route.Directs).
	directs []*peer
	// home is routing.home_site: hops of other sites come last.
	home    string
	primary atomic.Pointer[peer]
	backup  atomic.Pointer[peer]
}

// PathStatus describes one next hop, for diagnostics and tests.
type PathStatus struct {
	Name    string
	Address string
	// Site is the hop's site label ("" unlabelled).
	Site   string
	Up     bool
	RTT    time.Duration
	Jitter time.Duration
	Loss   float64
}

// NewRouter builds a router over the given transports (keyed by name).
func NewRouter(cfg RoutingConfig, trs map[string]transport.Transport, m *Metrics, log *slog.Logger) *Router {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{cfg: cfg, trs: trs, m: m, log: log, peers: map[string]*peer{}, routes: map[string]*routeState{},
		sticky: map[string]stickyEntry{}, pins: map[wire.TraceID]stickyEntry{}, waitingDisjoint: map[*seqTunnel]struct{}{},
		kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
	return r
}

// Start dials every next hop and starts probing and path selection.
func (r *Router) Start() {
	r.SetRoutes(r.cfg.Routes)
	r.wg.Add(1)
	go r.selectLoop()
}

// Shutdown closes every next-hop connection and waits for the goroutines.
func (r *Router) Shutdown() {
	r.cancel()
	r.mu.Lock()
	for _, p := range r.peers {
		p.stop()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// SetRoutes replaces the routing table (from config now, from the LBS relay
// topology later). Connections to hops that stay are kept; hops that go are
// closed, which closes the flows on them.
func (r *Router) SetRoutes(routes []Route) {
	r.mu.Lock()
	defer r.mu.Unlock()
	used := map[string]bool{}
	getPeer := func(h Hop) *peer {
		used[h.key()] = true
		if p, ok := r.peers[h.key()]; ok {
			return p
		}
		tr := r.trs[h.Transport]
		p := newPeer(r, h, tr)
		r.peers[h.key()] = p
		if h.Site != "" {
			r.m.PathSite.WithLabelValues(h.label(), h.Site).Set(1)
		}
		if r.ctx.Err() == nil {
			r.wg.Add(1)
			go func() { defer r.wg.Done(); p.run(r.ctx) }()
		}
		return p
	}
	next := map[string]*routeState{}
	for _, rt := range routes {
		rs := &routeState{route: rt, home: r.cfg.HomeSite}
		if old, ok := r.routes[rt.Cluster]; ok {
			rs.primary.Store(old.primary.Load())
			rs.backup.Store(old.backup.Load())
		}
		for _, h := range rt.NextHops {
			rs.hops = append(rs.hops, getPeer(h))
		}
		for _, h := range rt.directs() {
			rs.directs = append(rs.directs, getPeer(h))
		}
		next[rt.Cluster] = rs
	}
	for k, p := range r.peers {
		if !used[k] {
			p.stop()
			delete(r.peers, k)
			if p.hop.Site != "" {
				r.m.PathSite.DeleteLabelValues(p.hop.label(), p.hop.Site)
			}
		}
	}
	r.routes = next
	r.cfg.Routes = routes
	r.poke()
}

func (r *Router) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Router) selectLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.Probe.Interval.D())
	defer t.Stop()
	lastSweep := time.Now()
	for {
		r.reselect()
		r.retryDisjoint()
		if time.Since(lastSweep) > time.Minute {
			r.sweepSticky()
			lastSweep = time.Now()
		}
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
	}
}

// reselect picks each route's primary and backup path.
func (r *Router) reselect() {
	r.mu.Lock()
	routes := make([]*routeState, 0, len(r.routes))
	for _, rs := range r.routes {
		routes = append(routes, rs)
	}
	r.mu.Unlock()
	h := r.cfg.Probe.Hysteresis
	minGain := r.cfg.Probe.MinGain.D()
	for _, rs := range routes {
		up := rs.upBySite(rs.hops)
		cur := rs.primary.Load()
		var next *peer
		reason := ""
		switch {
		case len(up) == 0:
			if d := rs.upBySite(rs.directs); len(d) > 0 {
				next = d[0]
				reason = "direct"
				if cur != nil && cur != next && cur.up.Load() && rs.isDirect(cur) {
					reason = "home" // a direct egress of the home site is back
				}
			}
			if next == nil && cur != nil {
				reason = "down"
			}
		case cur == nil:
			next, reason = up[0], "initial"
		case !cur.up.Load() || rs.isDirect(cur):
			next, reason = up[0], "down"
			if rs.isDirect(cur) {
				reason = "recovered"
			}
		case rs.remote(cur) && !rs.remote(up[0]):
			// A hop of the home site is up again: new flows go home.
			next, reason = up[0], "home"
		default:
			next = cur
			best := up[0]
			bs, cs := best.score(), cur.score()
			if best != cur && rs.remote(best) == rs.remote(cur) && float64(bs) < float64(cs)*(1-h) && cs-bs >= minGain {
				next, reason = best, "better"
			}
		}
		if next != cur {
			rs.primary.Store(next)
			r.m.PathSwitches.WithLabelValues(rs.route.Cluster, reason).Inc()
			from, to := "none", "none"
			if cur != nil {
				from = cur.hop.label()
				r.m.PathSelected.WithLabelValues(rs.route.Cluster, from, "primary").Set(0)
			}
			if next != nil {
				to = next.hop.label()
				r.m.PathSelected.WithLabelValues(rs.route.Cluster, to, "primary").Set(1)
			}
			r.log.Info("path switch", "cluster", rs.route.Cluster, "from", from, "to", to, "reason", reason)
		}
		var backup *peer
		for _, p := range up {
			if p != next {
				backup = p
				break
			}
		}
		if old := rs.backup.Swap(backup); old != backup {
			if old != nil {
				r.m.PathSelected.WithLabelValues(rs.route.Cluster, old.hop.label(), "backup").Set(0)
			}
			if backup != nil {
				r.m.PathSelected.WithLabelValues(rs.route.Cluster, backup.hop.label(), "backup").Set(1)
			}
		}
	}
}

func (r *Router) sweepSticky() {
	r.stickyMu.Lock()
	defer r.stickyMu.Unlock()
	for k, e := range r.sticky {
		if time.Since(e.used) > stickyTTL {
			delete(r.sticky, k)
		}
	}
	for k, e := range r.pins {
		if time.Since(e.used) > pinTTL {
			delete(r.pins, k)
		}
	}
}

// pinPeer is the path an earlier copy of the sequenced stream trace took
// through this node, if any. Every copy that may open the flow goes the
// same way so that all reach the same egress (a cluster may have several),
// which merges them.
func (r *Router) pinPeer(trace wire.TraceID) *peer {
	r.stickyMu.Lock()
	defer r.stickyMu.Unlock()
	e, ok := r.pins[trace]
	if !ok || time.Since(e.used) > pinTTL {
		return nil
	}
	return e.p
}

func (r *Router) pin(trace wire.TraceID, p *peer) {
	r.stickyMu.Lock()
	defer r.stickyMu.Unlock()
	if _, ok := r.pins[trace]; !ok && len(r.pins) >= pinMax {
		return // the egress's flow ids still keep copies of two flows apart
	}
	r.pins[trace] = stickyEntry{p: p, used: time.Now()}
}

func (r *Router) stickyPeer(key string) *peer {
	if key == "" {
		return nil
	}
	r.stickyMu.Lock()
	defer r.stickyMu.Unlock()
	e, ok := r.sticky[key]
	if !ok || time.Since(e.used) > stickyTTL {
		return nil
	}
	return e.p
}

// StickyPath names the path an affinity key is pinned to ("" when none).
func (r *Router) StickyPath(key string) string {
	if p := r.stickyPeer(key); p != nil {
		return p.hop.label()
	}
	return ""
}

func (r *Router) remember(key string, p *peer) {
	if key == "" {
		return
	}
	r.stickyMu.Lock()
	defer r.stickyMu.Unlock()
	if _, ok := r.sticky[key]; !ok && len(r.sticky) >= stickyMax {
		return
	}
	r.sticky[key] = stickyEntry{p: p, used: time.Now()}
}

// remote reports whether p runs in another site than the route's home
// site (unlabelled hops, and every hop when no home is set, are home).
func (rs *routeState) remote(p *peer) bool {
	return rs.home != "" && p.hop.Site != "" && p.hop.Site != rs.home
}

func (rs *routeState) isDirect(p *peer) bool {
	for _, d := range rs.directs {
		if d == p {
			return true
		}
	}
	return false
}

// upBySite lists the up peers of ps: those of the home site first, each
// group by score (in ps's order when equal).
func (rs *routeState) upBySite(ps []*peer) []*peer {
	var up []*peer
	for _, p := range ps {
		if p.up.Load() {
			up = append(up, p)
		}
	}
	sort.SliceStable(up, func(i, j int) bool {
		if ri, rj := rs.remote(up[i]), rs.remote(up[j]); ri != rj {
			return rj
		}
		return up[i].score() < up[j].score()
	})
	return up
}

func (r *Router) route(cluster string) *routeState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rs, ok := r.routes[cluster]; ok {
		return rs
	}
	return r.routes["*"]
}

// candidates lists the paths to try for a new flow, best first; a sticky
// path, when given and up, comes before all. Hops that have gone silent
// for resume.after (suspect), and avoid (the path a resumed copy died
// on), come after the others.
func (rs *routeState) candidates(sticky, avoid *peer) []*peer {
	var out, later []*peer
	add := func(p *peer) {
		if p == nil || !p.up.Load() {
			return
		}
		for _, q := range out {
			if q == p {
				return
			}
		}
		for _, q := range later {
			if q == p {
				return
			}
		}
		if p == avoid || p.suspect.Load() {
			later = append(later, p)
			return
		}
		out = append(out, p)
	}
	add(sticky)
	add(rs.primary.Load())
	add(rs.backup.Load())
	up := rs.upBySite(rs.hops)
	for _, p := range up {
		add(p)
	}
	if len(up) == 0 || len(out) == 0 {
		// No next hop answers (or every one is suspect): the cluster's
		// egresses, home site first.
		for _, p := range rs.upBySite(rs.directs) {
			add(p)
		}
	}
	return append(out, later...)
}

// open opens a stream for h on the best path, on the lane its trace and
// copy index pick, and writes the header. A copy of a sequenced stream
// that may open its flow at the egress follows the path its stream's
// other copies took (all must reach the same egress); one that only joins
// a flow (h.Join) goes its own way, avoiding avoid if it can.
func (r *Router) open(ctx context.Context, h *wire.Header, flowHandler func([]byte), avoid *peer) (transport.Stream, *link, *peer, error) {
	rs := r.route(h.Cluster)
	if rs == nil {
		return nil, nil, nil, fmt.Errorf("%w %q: no route configured", ErrNoRoute, h.Cluster)
	}
	sticky := r.stickyPeer(h.Affinity)
	pinned := h.Sequenced && !h.Join
	if pinned && sticky == nil {
		sticky = r.pinPeer(h.Trace)
	}
	var lastErr error
	for _, p := range rs.candidates(sticky, avoid) {
		s, l, err := r.openVia(ctx, h, flowHandler, p)
		if err == nil {
			r.remember(h.Affinity, p)
			if pinned {
				r.pin(h.Trace, p)
			}
			return s, l, p, nil
		}
		if errors.Is(err, wire.ErrMalformed) {
			return nil, nil, nil, err
		}
		lastErr = err
	}
	if lastErr != nil {
		return nil, nil, nil, fmt.Errorf("%w %q: %w", ErrNoRoute, h.Cluster, lastErr)
	}
	return nil, nil, nil, fmt.Errorf("%w %q: every path is down", ErrNoRoute, h.Cluster)
}

var errNoLane = errors.New("relay: the next hop has no connection up")

// openVia opens a stream for h through next hop p, on the lane its trace
// and copy index pick, and writes the header (h gets the flow id of a udp
// flow).
func (r *Router) openVia(ctx context.Context, h *wire.Header, flowHandler func([]byte), p *peer) (transport.Stream, *link, error) {
	l := p.laneLink(h.Trace, h.Copy)
	if l == nil {
		return nil, nil, errNoLane
	}
	hdr := *h
	if h.Kind == wire.KindUDP {
		hdr.Flow = l.allocFlow()
		l.addFlow(hdr.Flow, flowHandler)
	}
	octx, cancel := context.WithTimeout(ctx, r.cfg.OpenTimeout.D())
	s, err := l.conn.OpenStream(octx)
	cancel()
	if err == nil {
		var buf [wire.MaxHeaderLen]byte
		b, herr := wire.AppendHeader(buf[:0], &hdr)
		if herr != nil {
			_ = s.Close()
			err = herr
		} else if _, err = s.Write(b); err == nil {
			r.m.PathStreams.WithLabelValues(p.hop.label()).Inc()
			*h = hdr
			return s, l, nil
		} else {
			_ = s.Close()
		}
	}
	if h.Kind == wire.KindUDP {
		l.removeFlow(hdr.Flow)
	}
	return nil, nil, err
}

// waitDisjoint registers a stream that found no relay for its disjoint
// copy; forgetDisjoint takes it off (it got one, or it ended).
func (r *Router) waitDisjoint(t *seqTunnel) {
	r.disjointMu.Lock()
	r.waitingDisjoint[t] = struct{}{}
	r.disjointMu.Unlock()
}

func (r *Router) forgetDisjoint(t *seqTunnel) {
	r.disjointMu.Lock()
	delete(r.waitingDisjoint, t)
	r.disjointMu.Unlock()
}

// retryDisjoint gives the waiting streams of every cluster that has two
// relays up their disjoint copy.
func (r *Router) retryDisjoint() {
	r.disjointMu.Lock()
	if len(r.waitingDisjoint) == 0 {
		r.disjointMu.Unlock()
		return
	}
	two := map[string]bool{}
	var ready []*seqTunnel
	for t := range r.waitingDisjoint {
		c := t.h.Cluster
		ok, seen := two[c]
		if !seen {
			p := r.disjointPeer(c)
			ok = p != nil && r.disjointPeer(c, p) != nil
			two[c] = ok
		}
		if ok {
			ready = append(ready, t)
			delete(r.waitingDisjoint, t)
		}
	}
	r.disjointMu.Unlock()
	for _, t := range ready {
		go t.addDisjoint(r.ctx)
	}
}

// disjointPeer is the best up next hop of cluster's route that is not
// suspect and not one of used: the path of a disjoint copy. Only relays
// count (a route's direct egresses carry flows only while every relay is
// down); nil when there is none.
func (r *Router) disjointPeer(cluster string, used ...*peer) *peer {
	rs := r.route(cluster)
	if rs == nil {
		return nil
	}
	for _, p := range rs.upBySite(rs.hops) {
		if !p.suspect.Load() && !slices.Contains(used, p) {
			return p
		}
	}
	return nil
}

// Tunnel is a stream to the destination service. Its first Read waits for
// the far end's status, so the caller can send the client's first bytes
// without waiting a round trip; a refusal surfaces as a *wire.StatusError.
// A sequenced tunnel (routing.resume, routing.redundancy) looks the same to
// its user.
type Tunnel struct {
	s      transport.Stream // nil when sequenced
	red    *seqTunnel
	path   string
	peer   *peer // the next hop it went through (its first copy's)
	once   sync.Once
	status error
}

// Path names the next hop the tunnel goes through now (that of its
// first live copy when it is sequenced: a resumed stream moves).
func (t *Tunnel) Path() string {
	if t.red != nil {
		if p := t.red.path(); p != "" {
			return p
		}
	}
	return t.path
}

// Status waits for the far end's answer.
func (t *Tunnel) Status() error {
	if t.red != nil {
		return t.red.Status()
	}
	t.once.Do(func() { t.status = wire.ReadStatus(t.s) })
	return t.status
}

func (t *Tunnel) Read(p []byte) (int, error) {
	if err := t.Status(); err != nil {
		return 0, err
	}
	if t.red != nil {
		return t.red.in.Read(p)
	}
	return t.s.Read(p)
}

func (t *Tunnel) Write(p []byte) (int, error) {
	if t.red != nil {
		return t.red.out.Write(p)
	}
	return t.s.Write(p)
}

// Close ends the tunnel in both directions.
func (t *Tunnel) Close() error {
	if t.red != nil {
		t.red.close()
		return nil
	}
	return t.s.Close()
}

// OpenStream opens a tunnel stream for a TCP-like flow (h.Kind link,
// link-frames or http): sequenced, so that it resumes on another path
// when its path fails (routing.resume), with as many copies as
// routing.redundancy gives for its kind. h.Hops is set to the configured
// budget when zero, and h.Trace to a new id when unset.
func (r *Router) OpenStream(ctx context.Context, h wire.Header) (*Tunnel, error) {
	r.fill(&h)
	if n := r.cfg.Redundancy.copies(h.Kind); (n > 1 || r.cfg.Resume.Enabled) && h.Kind.Sequenced() {
		return r.openSequenced(ctx, h, n)
	}
	s, _, p, err := r.open(ctx, &h, nil, nil)
	if err != nil {
		return nil, err
	}
	return &Tunnel{s: s, path: p.hop.label(), peer: p}, nil
}

// Stick makes later streams with affinity key take the path t took, as
// long as that path is up (a Socket.IO session learnt from the answer to
// its handshake).
func (r *Router) Stick(key string, t *Tunnel) {
	if len(key) <= wire.MaxAffinityLen {
		r.remember(key, t.peer)
	}
}

func (r *Router) fill(h *wire.Header) {
	if h.Hops == 0 {
		h.Hops = uint8(r.cfg.HopBudget)
	}
	if h.Trace == (wire.TraceID{}) {
		h.Trace = wire.NewTraceID()
	}
}

// Flow is a UDP flow through the tunnel: Send carries one datagram towards
// the service; datagrams back are handed to the recv function given to
// OpenFlow. Done is closed when the flow ends (far end, path down, Close).
// With routing.disjoint a flow is numbered and has a second copy through
// another relay for its small datagrams (TUNNEL.md, "Disjoint copies").
type Flow struct {
	r      *Router
	s      transport.Stream
	l      *link
	id     uint32
	path   string
	done   chan struct{}
	once   sync.Once
	status error
	ready  chan struct{}

	numbered bool
	small    int // the disjoint copy's datagram limit
	seq      atomic.Uint32
	seen     dedupe
	alt      atomic.Pointer[flowCopy] // the disjoint copy, while it lives
}

// flowCopy is a numbered flow's copy through a disjoint path.
type flowCopy struct {
	s  transport.Stream
	l  *link
	id uint32
}

// OpenFlow opens a UDP flow (h.Kind must be udp). With routing.disjoint,
// when two relays are up, the flow is numbered and opens a second copy
// through the relay its first copy does not take.
func (r *Router) OpenFlow(ctx context.Context, h wire.Header, recv func([]byte)) (*Flow, error) {
	if h.Kind != wire.KindUDP {
		return nil, errors.New("relay: OpenFlow needs a udp header")
	}
	r.fill(&h)
	f := &Flow{r: r, done: make(chan struct{}), ready: make(chan struct{})}
	handler := recv
	if small := r.cfg.Disjoint.small(); small > 0 {
		if p := r.disjointPeer(h.Cluster); p != nil && r.disjointPeer(h.Cluster, p) != nil {
			f.numbered, f.small = true, small
			h.Numbered = true
			handler = f.receiver(recv, "primary")
		} else {
			r.m.DisjointCopies.WithLabelValues("udp", "no_path").Inc()
		}
	}
	s, l, p, err := r.open(ctx, &h, handler, nil)
	if err != nil {
		return nil, err
	}
	f.s, f.l, f.id, f.path = s, l, h.Flow, p.hop.label()
	if f.numbered {
		f.openDisjoint(ctx, h, p, recv)
	}
	go func() {
		f.status = wire.ReadStatus(s)
		close(f.ready)
		if f.status == nil {
			// The stream carries nothing else; EOF or an error ends the flow.
			_, _ = io.Copy(io.Discard, s)
		}
		f.Close()
	}()
	return f, nil
}

// openDisjoint opens the numbered flow's second copy through a relay other
// than used (the first copy's), carrying datagrams of at most f.small
// bytes; the flow goes on without it when none is up or it fails.
func (f *Flow) openDisjoint(ctx context.Context, h wire.Header, used *peer, recv func([]byte)) {
	m := f.r.m
	p := f.r.disjointPeer(h.Cluster, used)
	if p == nil {
		m.DisjointCopies.WithLabelValues("udp", "no_path").Inc()
		return
	}
	h.Copy, h.Join, h.Small = 1, true, uint16(f.small)
	s, l, err := f.r.openVia(ctx, &h, f.receiver(recv, "disjoint"), p)
	if err != nil {
		m.DisjointCopies.WithLabelValues("udp", "open_failed").Inc()
		return
	}
	c := &flowCopy{s: s, l: l, id: h.Flow}
	f.alt.Store(c)
	m.DisjointCopies.WithLabelValues("udp", "opened").Inc()
	go func() {
		if err := wire.ReadStatus(s); err == nil {
			_, _ = io.Copy(io.Discard, s)
		}
		if f.alt.CompareAndSwap(c, nil) {
			// The copy ended while the flow goes on.
			m.DisjointCopies.WithLabelValues("udp", "lost").Inc()
			c.close()
		}
	}()
}

func (c *flowCopy) close() {
	c.l.removeFlow(c.id)
	_ = c.s.Close()
}

// receiver hands recv the first arrival of each numbered datagram, from
// whichever copy brings it.
func (f *Flow) receiver(recv func([]byte), by string) func([]byte) {
	m := f.r.m
	dup, win := m.DisjointDuplicates.WithLabelValues("udp"), m.DisjointWins.WithLabelValues("udp", by)
	return func(p []byte) {
		seq, data, err := wire.ParseNumbered(p)
		if err != nil {
			m.DatagramsDropped.WithLabelValues("malformed").Inc()
			return
		}
		if !f.seen.first(seq) {
			if len(data) <= f.small {
				dup.Inc()
			}
			return
		}
		if len(data) <= f.small {
			win.Inc()
		}
		recv(data)
	}
}

// Send carries one datagram towards the service (a small one on both
// copies of a numbered flow).
func (f *Flow) Send(p []byte) {
	if !f.numbered {
		f.l.send(f.id, p)
		return
	}
	seq := f.seq.Add(1)
	f.l.sendNumbered(f.id, seq, p)
	if c := f.alt.Load(); c != nil && len(p) <= f.small {
		c.l.sendNumbered(c.id, seq, p)
		f.r.m.DisjointSent.WithLabelValues("udp").Inc()
	}
}

// Numbered reports whether the flow's datagrams are numbered (it has, or
// had, a disjoint copy).
func (f *Flow) Numbered() bool { return f.numbered }

// Path names the next hop.
func (f *Flow) Path() string { return f.path }

// Done is closed when the flow has ended.
func (f *Flow) Done() <-chan struct{} { return f.done }

// Status waits for the far end's answer.
func (f *Flow) Status() error {
	select {
	case <-f.ready:
		return f.status
	case <-f.done:
		select {
		case <-f.ready:
			return f.status
		default:
			return io.ErrClosedPipe
		}
	}
}

// Close ends the flow.
func (f *Flow) Close() {
	f.once.Do(func() {
		if c := f.alt.Swap(nil); c != nil {
			c.close()
		}
		f.l.removeFlow(f.id)
		_ = f.s.Close()
		close(f.done)
	})
}

// Paths reports every next hop's state.
func (r *Router) Paths() []PathStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []PathStatus
	for _, p := range r.peers {
		rtt, jit, loss := p.stats()
		out = append(out, PathStatus{Name: p.hop.label(), Address: p.hop.Address, Site: p.hop.Site, Up: p.up.Load(), RTT: rtt, Jitter: jit, Loss: loss})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Primary names the path new flows to cluster take now ("" when none).
func (r *Router) Primary(cluster string) string {
	rs := r.route(cluster)
	if rs == nil {
		return ""
	}
	if p := rs.primary.Load(); p != nil && p.up.Load() {
		return p.hop.label()
	}
	if c := rs.candidates(nil, nil); len(c) > 0 {
		return c[0].hop.label()
	}
	return ""
}
