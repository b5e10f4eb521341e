// Package gateway is the client-facing session hub of the IM core: it serves
// Link TCP connections (core/link), authenticates them through the login
// service, forwards their requests to the app services over NATS and
// delivers pushes from the services to the sessions they address. Other
// transports (WebLink's Socket.IO) plug into the same machinery through
// Transport, Gateway.Login and Session.
package gateway

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/route"
	"github.com/longlink/longlink/pkg/logging"
)

// Deps are the gateway's dependencies.
type Deps struct {
	NATS       *nats.Conn // the core bus
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Listener, when set, is used instead of listening on Config.Listen
	// (tests, socket activation).
	Listener net.Listener
	// PlainListener, when set, is used instead of listening on
	// Config.PlainListen.
	PlainListener net.Listener
	// Presence, when set, hears of every session that opens and closes
	// (core/push keeps the presence registry and the kick log with it).
	Presence Presence
	// Routes says where each session's requests go (the appkey's cluster,
	// grayscale versions). Nil: the default cluster for every app.
	Routes *route.Table
}

// Presence is told of sessions as they open and close, with the reason of
// a close and whether it was a kick (another device took over, an operator,
// a drain, a slow consumer) rather than the client leaving. Calls are made
// outside the gateway's locks and must not block.
type Presence interface {
	SessionOpened(s buswire.Session)
	SessionClosed(s buswire.Session, reason string, kicked bool)
}

// Gateway serves Link connections and hosts sessions of every transport.
type Gateway struct {
	cfg Config
	log *slog.Logger
	// Send batches sent again (sendq.go): counted, logged once a second.
	sendRetried, retryLogged atomic.Int64
	retryLog                 rate.Sometimes
	// sendLatency: a moving average of send batch answer times, in
	// nanoseconds (attemptTimeout).
	sendLatency atomic.Int64
	nc          *nats.Conn
	m           *metrics
	sm          *superMetrics
	pres        Presence
	routes      *route.Table
	shared      sharedRoutes // the sessions' cached routes (session.go)
	ring        *link.KeyRing
	trusted     []netip.Prefix
	lim         link.Limits

	ln       net.Listener
	plainLn  net.Listener // pre-terminated Link, trusted sources only
	poller   *poller      // nil: every connection keeps its reader goroutine
	hs       *handshakeGate
	draining atomic.Bool
	// opDrained: an operator's drain (SetDrained); opStop ends its kicks.
	opDrained atomic.Bool
	opMu      sync.Mutex
	opStop    chan struct{}
	pushCh    chan *nats.Msg
	replies   replyMux

	mu       sync.Mutex // accounts
	accounts map[string]*account
	supers   map[string]*superGroup // by subject (supergroup.go)

	roomMu    sync.Mutex // rooms, their members and pending messages; sessionExtra.rooms
	rooms     map[string]*gwRoom
	roomCh    chan *nats.Msg
	writers   *roomWriters // the room fan-out's writer pool (roomwriter.go)
	advMu     sync.Mutex
	advertise []string
	startedAt time.Time

	connMu     sync.Mutex
	conns      map[net.Conn]struct{} // raw connections, for the final close
	perIP      map[netip.Addr]int
	totalConns int
	// Connections waiting for their client's hello, oldest first
	// (*helloWait), and how many of them were closed to make room and
	// are still counted in totalConns (hello.go).
	hellos   list.List
	evicting int

	wg      sync.WaitGroup // accept loop, dispatcher, sweeper
	connWG  sync.WaitGroup // connection goroutines
	stop    chan struct{}
	started bool
}

// New validates cfg and builds a gateway; Start serves it.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	cfg = cfg.withDefaults()
	if deps.NATS == nil {
		return nil, errors.New("gateway: Deps.NATS is required")
	}
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	deps.Logger = logging.OrDiscard(deps.Logger)
	if n, ok := openFileLimit(); ok {
		if fit := fitFileLimit(cfg.MaxConnections, n); fit < cfg.MaxConnections {
			// The default (100,000) is above most machines' limits: fitting
			// it is routine; a number the operator chose that does not fit
			// is worth a warning.
			log := deps.Logger.Info
			if cfg.MaxConnections != Default().MaxConnections {
				log = deps.Logger.Warn
			}
			log("gateway: max_connections lowered to fit the open-file limit", "max_connections", fit, "configured", cfg.MaxConnections, "open_file_limit", n)
			cfg.MaxConnections = fit
		}
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("gateway metrics: %w", err)
	}
	g := &Gateway{
		cfg:      cfg,
		retryLog: rate.Sometimes{Interval: time.Second},
		log:      deps.Logger.With("component", "gateway", "gateway", cfg.ID),
		nc:       deps.NATS,
		pres:     deps.Presence,
		routes:   deps.Routes,
		m:        m,
		ring:     link.NewKeyRing(),
		lim:      link.Limits{MaxFrameSize: cfg.MaxFrameSize, CompressThreshold: cfg.CompressThreshold},
		ln:       deps.Listener,
		plainLn:  deps.PlainListener,
		pushCh:   make(chan *nats.Msg, cfg.PushBuffer),
		accounts: make(map[string]*account),
		supers:   make(map[string]*superGroup),
		rooms:    make(map[string]*gwRoom),
		roomCh:   make(chan *nats.Msg, cfg.PushBuffer),
		conns:    make(map[net.Conn]struct{}),
		perIP:    make(map[netip.Addr]int),
		stop:     make(chan struct{}),
	}
	if g.routes == nil {
		if g.routes, err = route.New(route.Default(), route.Deps{Logger: deps.Logger, Registerer: deps.Registerer}); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	g.writers = newRoomWriters(g, cfg.RoomWriters)
	g.hs = newHandshakeGate(cfg.MaxHandshakes, m)
	if g.sm, err = newSuperMetrics(deps.Registerer); err != nil {
		return nil, fmt.Errorf("gateway metrics: %w", err)
	}
	for _, k := range cfg.Keys {
		priv, _ := link.DecodeKey(k.PrivateKey.Reveal())
		kp, err := link.KeyPairFromPrivate(k.ID, priv)
		if err != nil {
			return nil, fmt.Errorf("gateway key %s: %w", k.ID, err)
		}
		g.ring.Add(kp)
	}
	for _, p := range cfg.TrustedProxies {
		pfx, _ := parsePrefix(p)
		g.trusted = append(g.trusted, pfx)
	}
	if !cfg.DisableIdlePoller {
		p, err := newPoller()
		if err != nil {
			return nil, fmt.Errorf("gateway: idle poller: %w", err)
		}
		g.poller = p
	}
	return g, nil
}

// fitFileLimit is want connections lowered, when needed, to leave a
// reserve of the process's open-file limit for what else it opens (the
// bus, the store, JetStream's files, WebLink): past the limit every accept
// fails, and so does JetStream opening a block file (a reconnect storm
// of 19,000 clients on a 20,000-file process did both for minutes).
// Refused at max_connections, a connection is closed at once and its file
// freed. The reserve is 2% of the limit, 256..4096 files.
func fitFileLimit(want, limit int) int {
	reserve := max(min(4096, limit/50), 256)
	if fit := limit - reserve; fit < want {
		return max(fit, 1)
	}
	return want
}

// KeyRing is the live server key ring: add and remove keys to rotate them
// without a restart.
func (g *Gateway) KeyRing() *link.KeyRing { return g.ring }

// ID is the gateway id.
func (g *Gateway) ID() string { return g.cfg.ID }

// Addr is the Link listener's address (nil before Start or without one).
func (g *Gateway) Addr() net.Addr {
	if g.ln == nil {
		return nil
	}
	return g.ln.Addr()
}

// PlainAddr is the pre-terminated Link listener's address (nil before Start
// or without one).
func (g *Gateway) PlainAddr() net.Addr {
	if g.plainLn == nil {
		return nil
	}
	return g.plainLn.Addr()
}

// Sessions is the number of live sessions on every transport.
func (g *Gateway) Sessions() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, a := range g.accounts {
		n += len(a.sessions)
	}
	return n
}

// Start subscribes to service replies, binds the Link listener and serves.
func (g *Gateway) Start(ctx context.Context) error {
	if g.started {
		return errors.New("gateway: already started")
	}
	if err := g.replies.start(g); err != nil {
		return err
	}
	if g.ln == nil && g.cfg.Listen != "" {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", g.cfg.Listen)
		if err != nil {
			_ = g.replies.sub.Unsubscribe()
			return fmt.Errorf("gateway: listen %s: %w", g.cfg.Listen, err)
		}
		g.ln = ln
	}
	if g.plainLn == nil && g.cfg.PlainListen != "" {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", g.cfg.PlainListen)
		if err != nil {
			_ = g.replies.sub.Unsubscribe()
			if g.ln != nil {
				_ = g.ln.Close()
			}
			return fmt.Errorf("gateway: listen %s: %w", g.cfg.PlainListen, err)
		}
		g.plainLn = ln
	}
	g.started = true
	g.startedAt = time.Now()
	g.wg.Add(4)
	go g.dispatch()
	go g.sweep()
	go g.roomLoop()
	g.writers.run()
	go g.announceLoop()
	if g.poller != nil {
		go g.poller.run()
		go g.poller.sweep(g.cfg.IdleTimeout.D())
	}
	if g.ln != nil {
		g.wg.Add(1)
		go g.acceptLoop(g.ln, false)
		g.log.Info("link gateway listening", "addr", g.ln.Addr().String(), "keys", g.ring.IDs())
	}
	if g.plainLn != nil {
		g.wg.Add(1)
		go g.acceptLoop(g.plainLn, true)
		g.log.Info("pre-terminated link listening", "addr", g.plainLn.Addr().String())
	}
	return nil
}

func (g *Gateway) sweep() {
	defer g.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case now := <-t.C:
			g.replies.expire(now)
		}
	}
}

func (g *Gateway) acceptLoop(ln net.Listener, plain bool) {
	defer g.wg.Done()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if g.draining.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary errors (EMFILE): back off rather than spin.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			g.log.Warn("accept", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-g.stop:
				return
			}
			continue
		}
		delay = 0
		g.m.accepted.Inc()
		g.serveConn(nc, plain, time.Now())
	}
}

// Shutdown drains the gateway: it stops accepting, kicks sessions with
// "server draining" spread over DrainTime (bounded by ctx), then closes what
// is left and waits for its goroutines.
func (g *Gateway) Shutdown(ctx context.Context) error {
	if !g.started || g.draining.Swap(true) {
		return nil
	}
	g.announce() // no new room members are sent here
	if g.ln != nil {
		_ = g.ln.Close()
	}
	if g.plainLn != nil {
		_ = g.plainLn.Close()
	}
	g.drain(ctx)

	// Connections close themselves once their kick is written; give them a
	// moment, then close whatever is left (connections still in handshake or
	// login, clients that do not read).
	done := make(chan struct{})
	go func() { g.connWG.Wait(); close(done) }()
	grace := time.NewTimer(2 * time.Second)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
	case <-ctx.Done():
	}
	g.closeAll()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("gateway: shutdown: %w", ctx.Err())
	}
	for _, s := range g.allSessions() {
		g.unregister(s, closeShutdown, false)
	}
	g.replies.failAll()
	_ = g.replies.sub.Unsubscribe()
	close(g.stop)
	g.pushCh <- nil // stop the dispatchers after what is queued
	g.roomCh <- nil
	g.wg.Wait()
	if g.poller != nil {
		g.poller.close()
	}
	return err
}

// closeAll closes every connection; parked ones have no reader to notice,
// so they are finished here.
func (g *Gateway) closeAll() {
	g.connMu.Lock()
	for c := range g.conns {
		_ = c.Close()
	}
	g.connMu.Unlock()
	if g.poller != nil {
		for _, l := range g.poller.parked() {
			l.closeNow()
		}
	}
}

// drain kicks every session with ReasonDraining, in batches spread over the
// drain time so that clients reconnect elsewhere gradually.
func (g *Gateway) drain(ctx context.Context) {
	sessions := g.allSessions()
	if len(sessions) == 0 {
		return
	}
	total := g.cfg.DrainTime.D()
	if d, ok := ctx.Deadline(); ok {
		// Leave a quarter of the remaining time for the last writes.
		if rem := time.Until(d) * 3 / 4; rem < total {
			total = rem
		}
	}
	const step = 50 * time.Millisecond
	steps := int(total / step)
	if steps < 1 {
		steps = 1
	}
	per := (len(sessions) + steps - 1) / steps
	g.log.Info("draining sessions", "sessions", len(sessions), "over", total)
	t := time.NewTicker(step)
	defer t.Stop()
	for i := 0; i < len(sessions); i += per {
		end := min(i+per, len(sessions))
		for _, s := range sessions[i:end] {
			if g.unregister(s, ReasonDraining, true) {
				g.m.kicks.WithLabelValues("draining").Inc()
				s.t.Close(drainKick)
			}
		}
		if end < len(sessions) {
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
	}
}

// Close stops the gateway at once, without draining: the listener and every
// connection are closed (as in a crash, for tests and fatal errors).
func (g *Gateway) Close() error {
	if !g.started || g.draining.Swap(true) {
		return nil
	}
	if g.ln != nil {
		_ = g.ln.Close()
	}
	if g.plainLn != nil {
		_ = g.plainLn.Close()
	}
	g.closeAll()
	g.connWG.Wait()
	for _, s := range g.allSessions() {
		g.unregister(s, closeShutdown, false)
	}
	g.replies.failAll()
	_ = g.replies.sub.Unsubscribe()
	close(g.stop)
	g.pushCh <- nil
	g.roomCh <- nil
	g.wg.Wait()
	if g.poller != nil {
		g.poller.close()
	}
	return nil
}
