// Package edge is Longlink's client-facing entry point near the user. It
// ends the client's TCP close to the client (so handshakes pay only the short
// round trip), carries every Link connection, WebLink (Socket.IO) connection
// and UDP mapping over a warm tunnel (relay package) to the core egress, and
// keeps the session table, per-client limits and a graceful drain. It can also
// run the TURN server (edge/turn).
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/link/linkquic"
	"github.com/longlink/longlink/edge/turn"
	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/lbs/nodeclient"
	"github.com/longlink/longlink/pkg/logging"
	"github.com/longlink/longlink/relay"
	"github.com/longlink/longlink/relay/transport"
)

// Announcer tells the LBS that the edge is draining, first thing on
// shutdown, so the LBS stops handing it out before sessions are shed.
// *nodeclient.Client (lbs/nodeclient) satisfies it; Config.LBS builds one.
type Announcer interface {
	Drain(ctx context.Context) error
}

var _ Announcer = (*nodeclient.Client)(nil)

// Deps are the edge's injected dependencies.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// TLS, ClusterKey and Transports override the credentials and
	// transports built from Config.Security (see relay.Deps).
	TLS        *tls.Config
	ClusterKey []byte
	Transports map[string]transport.Transport
	// Announcer, when set, is told when the edge starts draining. When nil
	// and Config.LBS is set, the edge's own LBS node client is used.
	Announcer Announcer
	// TURN is passed to the TURN server when Config.TURN.Enabled.
	TURN turn.Deps
}

// Edge is an edge node. Create it with New.
type Edge struct {
	// accepted counts TCP client connections; rateAt and rateN are the
	// previous heartbeat's sample (acceptRate).
	accepted atomic.Int64
	rateMu   sync.Mutex
	rateAt   time.Time
	rateN    int64
	cfg      Config
	deps     Deps
	log      *slog.Logger
	m        *metrics
	router   *relay.Router
	table    *sessionTable
	turn     *turn.Server
	lbs      *nodeclient.Client
	trPref   []string      // transports built, in the order the configured routes name them
	ring     *link.KeyRing // Link server keys, when the edge terminates Link
	logins   *edgeLogins   // answers logins with signed tokens; nil: all forwarded
	webTLS   *webTLS       // ends browsers' TLS on the WebLink listener; nil: plain HTTP

	// live is the config as of the last Reload (drain period, timeouts,
	// the TURN section); cfg keeps what applies only at start.
	live     atomic.Pointer[Config]
	reloadMu sync.Mutex

	mu      sync.Mutex
	tcp     map[string]net.Listener
	udp     map[string]*udpForwarder
	started bool
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

// New validates cfg and builds the edge; Start binds it.
func New(cfg Config, deps Deps) (*Edge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if cfg.Routing.HomeSite == "" {
		cfg.Routing.HomeSite = cfg.Site
	}
	deps.Logger = logging.OrDiscard(deps.Logger)
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	log := deps.Logger.With("component", "edge", "node", cfg.Name)
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"node": cfg.Name}, deps.Registerer)
	stats := &transport.SealStats{}
	rdeps := relay.Deps{Logger: log, Registerer: reg, TLS: deps.TLS, ClusterKey: deps.ClusterKey, Transports: deps.Transports}
	var need []string
	for _, rt := range cfg.Routing.Routes {
		for _, h := range rt.NextHops {
			need = append(need, h.Transport)
		}
		if rt.Direct != nil {
			need = append(need, rt.Direct.Transport)
		}
		for _, h := range rt.Directs {
			need = append(need, h.Transport)
		}
	}
	var trPref []string
	for _, t := range need {
		if !slices.Contains(trPref, t) {
			trPref = append(trPref, t)
		}
	}
	trs, err := relay.BuildTransports(need, cfg.Security, cfg.Transport, rdeps, stats)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	e := &Edge{
		cfg: cfg, deps: deps, log: log, m: newMetrics(reg),
		table: newSessionTable(cfg.Limits.MaxSessions, cfg.Limits.MaxSessionsPerIP),
		tcp:   map[string]net.Listener{}, udp: map[string]*udpForwarder{},
		trPref: trPref,
	}
	e.live.Store(&cfg)
	e.m.info.WithLabelValues(cfg.Site, cfg.Routing.HomeSite).Set(1)
	if t := cfg.Link.Terminate; t != nil {
		if e.ring, err = t.ring(); err != nil {
			return nil, fmt.Errorf("edge: link.terminate.%w", err)
		}
		tokens, err := t.verifier()
		if err != nil {
			return nil, fmt.Errorf("edge: link.terminate.%w", err)
		}
		if tokens.Len() > 0 {
			e.logins = &edgeLogins{tokens: tokens, now: time.Now}
		}
	}
	if cfg.WebLink.TLS != nil {
		if e.webTLS, err = newWebTLS(cfg.WebLink.TLS); err != nil {
			return nil, fmt.Errorf("edge: weblink.tls: %w", err)
		}
		e.exportCertExpiry()
	}
	e.router = relay.NewRouter(cfg.Routing, trs, relay.NewMetrics(reg, stats), log)
	reg.MustRegister(relay.NewLaneCollector(e.router))
	if cfg.TURN.Enabled {
		td := deps.TURN
		if td.Logger == nil {
			td.Logger = deps.Logger
		}
		if td.Registerer == nil {
			td.Registerer = reg
		}
		e.turn, err = turn.New(cfg.TURN.Config, td)
		if err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	}
	if cfg.LBS != nil {
		nd := nodeclient.Deps{Logger: log, Load: func() nodeclient.Load {
			return nodeclient.Load{Connections: e.table.len(), Paths: relay.PathReports(e.router.Paths()), ConnRate: e.acceptRate()}
		}}
		if e.turn != nil {
			// the LBS's TURN secrets replace the configured start-up set
			// when they arrive (an empty set on the LBS changes nothing)
			nd.OnTurnSecrets = e.turn.SetSecrets
		}
		nd.OnUplinks = e.setUplinks
		e.lbs, err = nodeclient.New(cfg.LBS.WithSite(cfg.Site), nd)
		if err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
		if e.deps.Announcer == nil {
			e.deps.Announcer = e.lbs
		}
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// SessionCount is the number of client sessions held now (the load the LBS sees).
func (e *Edge) SessionCount() int { return e.table.len() }

// Router is the edge's tunnel router (SetRoutes feeds it the LBS topology).
func (e *Edge) Router() *relay.Router { return e.router }

// TURN returns the TURN server, or nil when it is disabled.
func (e *Edge) TURN() *turn.Server { return e.turn }

// Addr returns the bound address of a listener: "link", "link-quic" (a UDP
// address), "weblink", or a UDP listener's configured address.
func (e *Edge) Addr(name string) net.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	if l, ok := e.tcp[name]; ok {
		return l.Addr()
	}
	if u, ok := e.udp[name]; ok {
		return u.pc.LocalAddr()
	}
	return nil
}

// Sessions returns a copy of the session table.
func (e *Edge) Sessions() []Session { return e.table.snapshot() }

// Start binds every listener, dials the next hops and starts TURN.
func (e *Edge) Start(ctx context.Context) (err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return errors.New("edge: already started")
	}
	defer func() {
		if err != nil {
			for _, l := range e.tcp {
				_ = l.Close()
			}
			for _, u := range e.udp {
				_ = u.pc.Close()
			}
			e.router.Shutdown()
		}
	}()
	e.router.Start()
	for name, l := range map[string]TCPListener{"link": e.cfg.Link, "weblink": e.cfg.WebLink} {
		if l.Listen == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.Listen)
		if err != nil {
			return fmt.Errorf("edge: %s listener: %w", name, err)
		}
		e.tcp[name] = ln
		e.log.Info("listening", "listener", name, "addr", ln.Addr().String(), "service", l.Service)
	}
	if addr := e.cfg.Link.QUIC; addr != "" {
		ln, err := linkquic.Listen(addr, nil, linkquic.Options{DuplicateMax: e.cfg.Link.QUICDuplicateMax})
		if err != nil {
			return fmt.Errorf("edge: link.quic listener: %w", err)
		}
		e.m.quicListener.Store(ln)
		e.tcp["link-quic"] = ln
		e.log.Info("listening", "listener", "link-quic", "addr", ln.Addr().String(), "service", e.cfg.Link.Service)
	}
	for _, u := range e.cfg.UDP {
		f, err := newUDPForwarder(e, u)
		if err != nil {
			return fmt.Errorf("edge: udp listener: %w", err)
		}
		e.udp[u.Listen] = f
		e.log.Info("listening", "listener", "udp", "addr", f.pc.LocalAddr().String(), "service", u.Service)
	}
	if e.turn != nil {
		if err := e.turn.Start(ctx); err != nil {
			return fmt.Errorf("edge: %w", err)
		}
	}
	if e.lbs != nil {
		if err := e.lbs.Start(ctx); err != nil {
			if e.turn != nil {
				_ = e.turn.Shutdown(ctx)
			}
			return fmt.Errorf("edge: lbs: %w", err)
		}
	}
	for name, ln := range e.tcp {
		svc := e.cfg.Link
		if name == "weblink" {
			svc = e.cfg.WebLink
		}
		e.wg.Add(1)
		go e.acceptLoop(name, ln, svc)
	}
	for _, f := range e.udp {
		e.wg.Add(2)
		go f.readLoop()
		go f.janitor()
	}
	if e.webTLS != nil {
		e.wg.Add(1)
		go e.reloadCerts()
	}
	e.started = true
	return nil
}

// Shutdown drains the edge: it stops accepting, tells the LBS, closes the
// sessions gradually over DrainPeriod (compressed to fit ctx's deadline),
// then stops TURN and the tunnels.
func (e *Edge) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	if !e.started {
		e.mu.Unlock()
		return nil
	}
	e.started = false
	e.m.draining.Set(1)
	e.table.startDrain()
	for _, l := range e.tcp {
		_ = l.Close()
	}
	e.mu.Unlock()
	var errs []error
	if e.deps.Announcer != nil {
		if err := e.deps.Announcer.Drain(ctx); err != nil {
			errs = append(errs, fmt.Errorf("edge: announce drain: %w", err))
		}
	}
	if e.turn != nil {
		e.turn.Drain()
	}
	e.shed(ctx)
	e.cancel()
	for _, f := range e.udp {
		f.close()
	}
	if e.turn != nil {
		if err := e.turn.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	e.router.Shutdown()
	if e.lbs != nil {
		if err := e.lbs.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("edge: lbs: %w", err))
		}
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("edge: shutdown: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// shed closes sessions in small batches spread over the drain period, so
// that clients reconnect elsewhere gradually instead of in one storm.
func (e *Edge) shed(ctx context.Context) {
	period := e.live.Load().DrainPeriod.D()
	if dl, ok := ctx.Deadline(); ok {
		// Keep a fifth of the remaining time for the rest of the shutdown.
		if left := time.Until(dl) * 4 / 5; left < period {
			period = left
		}
	}
	const steps = 20
	start := time.Now()
	for i := 1; i <= steps; i++ {
		n := e.table.len()
		if n == 0 {
			return
		}
		batch := (n + steps - i) / (steps - i + 1)
		for _, s := range e.table.oldest(batch) {
			e.m.shed.Inc()
			s.close()
		}
		next := start.Add(period * time.Duration(i) / steps)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
	}
	for _, s := range e.table.oldest(e.table.len()) {
		e.m.shed.Inc()
		s.close()
	}
}

// setUplinks replaces the route to the edge's cluster with the LBS's
// topology for this edge: the relays as next hops (in the policy's order)
// and every core egress as a direct path (used while no relay is up);
// with no relays, the cores themselves are the next hops. Cores carry
// their entry points' sites, so the router prefers those of its home site
// and turns to the other site's when none of them answers. Each hop uses
// the first transport of the edge's configured routes that the relay or
// egress listens on (the edge builds only those transports). Routes to
// other clusters stay as configured. Uplinks with no usable hop are
// refused and the routes stay as they are.
func (e *Edge) setUplinks(u lbsapi.Uplinks) error {
	hop := func(t lbsapi.Tunnel) (relay.Hop, bool) {
		for _, tr := range e.trPref {
			addr := map[string]string{"quic": t.QUIC, "kcp": t.KCP}[tr]
			if addr != "" {
				return relay.Hop{Name: t.ID, Transport: tr, Address: addr}, true
			}
		}
		return relay.Hop{}, false
	}
	rt := relay.Route{Cluster: e.cfg.Cluster}
	for _, t := range u.Relays {
		if h, ok := hop(t); ok {
			rt.NextHops = append(rt.NextHops, h)
		}
	}
	var cores []relay.Hop
	for _, t := range u.Cores {
		if h, ok := hop(t); ok {
			h.Site = t.Site
			cores = append(cores, h)
		}
	}
	switch {
	case len(rt.NextHops) == 0 && len(cores) == 0:
		return fmt.Errorf("edge: no relay or core in the uplinks speaks a transport this edge has (%v)", e.trPref)
	case len(rt.NextHops) == 0:
		rt.NextHops = cores
	default:
		rt.Directs = cores
	}
	routes := []relay.Route{rt}
	for _, r := range e.cfg.Routing.Routes {
		if r.Cluster != e.cfg.Cluster {
			routes = append(routes, r)
		}
	}
	e.router.SetRoutes(routes)
	e.m.uplinkUpdates.Inc()
	return nil
}
