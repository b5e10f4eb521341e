// Package relay is Longlink's tunnel network between edges and the core:
// relay hops that forward tunnel streams towards a destination cluster over
// the best probed path, and the core egress that terminates them and hands
// each flow to the local gateway with a PROXY v2 header carrying the client's
// real address. The wire format is in relay/wire (spec: TUNNEL.md), the
// transports in relay/transport.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/lbs/nodeclient"
	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

// Node is a relay hop, an egress, or both: it accepts tunnel connections,
// answers probes, forwards streams and flows for other clusters along its
// routes and terminates those for its own cluster.
type Node struct {
	cfg    Config
	log    *slog.Logger
	m      *Metrics
	trs    map[string]transport.Transport
	router *Router
	stats  *transport.SealStats
	pairs  *pairTable
	// udpPairs holds the numbered UDP flows this egress terminates.
	udpPairs *udpPairTable
	lbs      *nodeclient.Client // nil unless Config.LBS

	// live is the config as of the last Reload (routes, limits); cfg keeps
	// what applies only at start.
	live     atomic.Pointer[Config]
	reloadMu sync.Mutex

	mu        sync.Mutex
	listeners map[string]transport.Listener
	conns     map[transport.Conn]struct{}
	active    atomic.Int64
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	started   bool
}

// New builds a relay node. It binds nothing until Start.
func New(cfg Config, deps Deps) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	deps.defaults()
	n := &Node{cfg: cfg, log: deps.Logger.With("component", "relay", "node", cfg.Name), stats: &transport.SealStats{},
		listeners: map[string]transport.Listener{}, conns: map[transport.Conn]struct{}{}}
	n.live.Store(&cfg)
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"node": cfg.Name}, deps.Registerer)
	n.m = NewMetrics(reg, n.stats)
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "longlink_relay_node_info",
		Help: "1 for a running relay or egress: its site label and role (relay, egress)."}, []string{"site", "role"})
	reg.MustRegister(info)
	role := "relay"
	if cfg.Egress != nil {
		role = "egress"
	}
	info.WithLabelValues(cfg.Site, role).Set(1)
	n.pairs = newPairTable(n.m, cfg.Routing.Resume)
	n.udpPairs = newUDPPairTable()
	need := routeTransports(cfg.Routing)
	for tr := range cfg.Listen {
		need = append(need, tr)
	}
	trs, err := BuildTransports(need, cfg.Security, cfg.Transport, deps, n.stats)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	n.trs = trs
	n.router = NewRouter(cfg.Routing, trs, n.m, n.log)
	reg.MustRegister(newNodeLaneCollector(n))
	if cfg.LBS != nil {
		n.lbs, err = nodeclient.New(cfg.LBS.WithSite(cfg.Site), nodeclient.Deps{Logger: n.log, Load: func() nodeclient.Load {
			return nodeclient.Load{Connections: int(n.active.Load()), Paths: PathReports(n.router.Paths())}
		}})
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n, nil
}

// NewEgress builds the core-side egress: a node that terminates tunnels for
// cfg.Cluster and forwards nothing.
func NewEgress(cfg EgressConfig, deps Deps) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	n, err := New(cfg.node(), deps)
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	return n, nil
}

// Router is the node's forwarding side (for SetRoutes from the LBS topology).
func (n *Node) Router() *Router { return n.router }

// SetRoutes replaces the node's routes (the lead feeds the LBS relay topology here).
func (n *Node) SetRoutes(routes []Route) { n.router.SetRoutes(routes) }

// Addr returns the bound address of the listener for transport name.
func (n *Node) Addr(name string) net.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l, ok := n.listeners[name]; ok {
		return l.Addr()
	}
	return nil
}

// Start binds the listeners and starts forwarding.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started {
		return errors.New("relay: already started")
	}
	for name, addr := range n.cfg.Listen {
		tr := n.trs[name]
		l, err := tr.Listen(addr)
		if err != nil {
			for _, l := range n.listeners {
				_ = l.Close()
			}
			return fmt.Errorf("relay %s: %w", n.cfg.Name, err)
		}
		n.listeners[name] = l
		n.log.Info("tunnel listener", "transport", name, "addr", l.Addr().String())
	}
	for _, l := range n.listeners {
		n.wg.Add(1)
		go n.acceptLoop(l)
	}
	n.started = true
	n.router.Start()
	if n.lbs != nil {
		if err := n.lbs.Start(ctx); err != nil {
			n.log.Warn("LBS reporting not started", "err", err)
		}
	}
	return nil
}

// PathReports turns a router's next hops into what nodes report to the LBS
// (and the operators' console shows).
func PathReports(ps []PathStatus) []lbsapi.Path {
	out := make([]lbsapi.Path, 0, len(ps))
	for _, p := range ps {
		out = append(out, lbsapi.Path{To: p.Name, Up: p.Up, RTTMs: float64(p.RTT.Microseconds()) / 1000,
			Loss: p.Loss, Jitter: float64(p.Jitter.Microseconds()) / 1000})
	}
	return out
}

// Shutdown stops accepting, closes every tunnel and waits. A relay that
// reports to the LBS drains there first.
func (n *Node) Shutdown(ctx context.Context) error {
	if n.lbs != nil {
		if err := n.lbs.Shutdown(ctx); err != nil {
			n.log.Warn("LBS drain", "err", err)
		}
	}
	n.mu.Lock()
	if !n.started {
		n.mu.Unlock()
		return nil
	}
	n.started = false
	n.cancel()
	for _, l := range n.listeners {
		_ = l.Close()
	}
	for c := range n.conns {
		_ = c.Close()
	}
	n.mu.Unlock()
	n.router.Shutdown()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("relay %s: shutdown: %w", n.cfg.Name, ctx.Err())
	}
}

func (n *Node) acceptLoop(l transport.Listener) {
	defer n.wg.Done()
	for {
		c, err := l.Accept(n.ctx)
		if err != nil {
			if n.ctx.Err() == nil {
				n.log.Error("accept", "err", err)
			}
			return
		}
		n.mu.Lock()
		if !n.started {
			n.mu.Unlock()
			_ = c.Close()
			return
		}
		n.conns[c] = struct{}{}
		n.mu.Unlock()
		n.wg.Add(1)
		go n.serveConn(c)
	}
}

func (n *Node) serveConn(c transport.Conn) {
	defer n.wg.Done()
	defer func() {
		n.mu.Lock()
		delete(n.conns, c)
		n.mu.Unlock()
		_ = c.Close()
	}()
	in := newLink(c, n.m)
	for {
		s, err := c.AcceptStream(n.ctx)
		if err != nil {
			return
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.serveStream(in, s)
		}()
	}
}

func (n *Node) reject(s transport.Stream, kind wire.Kind, st wire.Status, reason string) {
	n.m.Streams.WithLabelValues(kind.String(), "rejected_"+labelOf(st)).Inc()
	var b [2 + wire.MaxReasonLen]byte
	_, _ = s.Write(wire.AppendStatus(b[:0], st, reason))
	_ = s.Close()
}

func labelOf(s wire.Status) string {
	switch s {
	case wire.StatusNoRoute:
		return "no_route"
	case wire.StatusHops:
		return "hops"
	case wire.StatusNoService:
		return "no_service"
	case wire.StatusUnreachable:
		return "unreachable"
	case wire.StatusRefused:
		return "refused"
	case wire.StatusGone:
		return "gone"
	}
	return "bad_request"
}

// readHeader reads a stream's header, closing the stream if it does not
// arrive within HeaderTimeout.
func (n *Node) readHeader(s transport.Stream) (*wire.Header, error) {
	t := time.AfterFunc(n.live.Load().HeaderTimeout.D(), func() { _ = s.Close() })
	h, err := wire.ReadHeader(s)
	if !t.Stop() {
		return nil, errors.New("header timeout")
	}
	return h, err
}

func (n *Node) serveStream(in *link, s transport.Stream) {
	h, err := n.readHeader(s)
	if err != nil {
		n.m.Streams.WithLabelValues("unknown", "rejected_bad_request").Inc()
		n.log.Debug("bad stream header", "peer", in.conn.RemoteAddr().String(), "err", err)
		if errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrBadMagic) || errors.Is(err, wire.ErrVersion) {
			n.reject(s, 0, wire.StatusBadRequest, err.Error())
			return
		}
		_ = s.Close()
		return
	}
	if h.Kind == wire.KindProbe {
		n.echoProbes(s)
		return
	}
	if n.active.Add(1) > int64(n.live.Load().MaxStreams) {
		n.active.Add(-1)
		n.reject(s, h.Kind, wire.StatusRefused, "node at stream limit")
		return
	}
	defer n.active.Add(-1)
	kind := h.Kind.String()
	n.m.ActiveStreams.WithLabelValues(kind).Inc()
	defer n.m.ActiveStreams.WithLabelValues(kind).Dec()

	if eg := n.cfg.Egress; eg != nil && h.Cluster == eg.Cluster {
		n.terminate(in, s, h)
		return
	}
	if h.Hops <= 1 {
		n.m.HopsExhausted.Inc()
		n.reject(s, h.Kind, wire.StatusHops, "")
		return
	}
	h.Hops--
	n.forward(in, s, h)
}

// echoProbes answers an adjacent node's probes until the stream ends.
func (n *Node) echoProbes(s transport.Stream) {
	defer s.Close()
	buf := make([]byte, wire.ProbeLen)
	for {
		if _, err := io.ReadFull(s, buf); err != nil {
			return
		}
		if _, err := s.Write(buf); err != nil {
			return
		}
	}
}

func (n *Node) forward(in *link, s transport.Stream, h *wire.Header) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.Routing.OpenTimeout.D())
	defer cancel()
	inFlow := h.Flow
	var outStream transport.Stream
	var out *link
	var next *peer
	var err error
	if h.Kind == wire.KindUDP {
		dn := n.m.Datagrams.WithLabelValues("down")
		outStream, out, next, err = n.router.open(ctx, h, func(p []byte) { dn.Inc(); in.send(inFlow, p) }, nil)
	} else {
		outStream, out, next, err = n.router.open(ctx, h, nil, nil)
	}
	if err != nil {
		n.log.Debug("forward: no route", "cluster", h.Cluster, "trace", h.Trace.String(), "err", err)
		n.reject(s, h.Kind, wire.StatusNoRoute, h.Cluster)
		return
	}
	n.m.Streams.WithLabelValues(h.Kind.String(), "forwarded").Inc()
	if h.Kind == wire.KindUDP {
		outFlow := h.Flow
		up := n.m.Datagrams.WithLabelValues("up")
		in.addFlow(inFlow, func(p []byte) { up.Inc(); out.send(outFlow, p) })
		defer in.removeFlow(inFlow)
		defer out.removeFlow(outFlow)
	}
	if h.Sequenced {
		// When the next hop falls silent, end the copy here: its opener
		// resumes it on another path (a copy waiting on a dead hop would
		// hold its stream until the hop's connection is closed).
		defer next.watch(func() { _ = s.Close(); _ = outStream.Close() })()
	}
	splice(s, outStream, n.m.Bytes.WithLabelValues("up"), n.m.Bytes.WithLabelValues("down"))
}

// terminate is the egress: connect to the service and hand the flow over.
func (n *Node) terminate(in *link, s transport.Stream, h *wire.Header) {
	eg := n.cfg.Egress
	svc, ok := eg.Services[h.Service]
	if !ok {
		n.reject(s, h.Kind, wire.StatusNoService, h.Service)
		return
	}
	want, _ := wire.ParseKind(svc.Kind)
	if want != h.Kind {
		n.reject(s, h.Kind, wire.StatusNoService, fmt.Sprintf("%s is %s, not %s", h.Service, want, h.Kind))
		return
	}
	if h.Kind == wire.KindUDP {
		if h.Numbered {
			n.terminateNumbered(in, s, h, svc)
		} else {
			n.terminateUDP(in, s, h, svc)
		}
		return
	}
	if h.Sequenced {
		n.terminateSequenced(s, h, svc)
		return
	}
	d := net.Dialer{Timeout: eg.DialTimeout.D()}
	conn, err := d.DialContext(n.ctx, "tcp", svc.Address)
	if err != nil {
		n.m.EgressDials.WithLabelValues(h.Service, "error").Inc()
		n.log.Warn("egress: service unreachable", "service", h.Service, "addr", svc.Address, "err", err)
		n.reject(s, h.Kind, wire.StatusUnreachable, h.Service)
		return
	}
	n.m.EgressDials.WithLabelValues(h.Service, "ok").Inc()
	if svc.proxy() {
		if _, err := proxyHeader(h.Client, conn).WriteTo(conn); err != nil {
			_ = conn.Close()
			n.reject(s, h.Kind, wire.StatusUnreachable, h.Service)
			return
		}
	}
	var b [2]byte
	if _, err := s.Write(wire.AppendStatus(b[:0], wire.StatusOK, "")); err != nil {
		_ = conn.Close()
		_ = s.Close()
		return
	}
	n.m.Streams.WithLabelValues(h.Kind.String(), "terminated").Inc()
	splice(s, conn, n.m.Bytes.WithLabelValues("up"), n.m.Bytes.WithLabelValues("down"))
}

// proxyHeader builds the PROXY v2 header for a flow from client to the
// service conn. Without a client address (or with a family the service's
// address does not share) it is a LOCAL header, which gateways treat as "no
// client information".
func proxyHeader(client netip.AddrPort, conn net.Conn) *proxyproto.Header {
	dst, _ := conn.RemoteAddr().(*net.TCPAddr)
	if !client.IsValid() || dst == nil {
		return &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	}
	src := net.TCPAddrFromAddrPort(netip.AddrPortFrom(client.Addr().Unmap(), client.Port()))
	dstAP := dst.AddrPort()
	dAddr := dstAP.Addr().Unmap()
	switch {
	case src.IP.To4() != nil && !dAddr.Is4():
		dAddr = netip.IPv4Unspecified()
	case src.IP.To4() == nil && dAddr.Is4():
		dAddr = netip.IPv6Unspecified()
	}
	return proxyproto.HeaderProxyFromAddrs(2, src, net.TCPAddrFromAddrPort(netip.AddrPortFrom(dAddr, dstAP.Port())))
}

func (n *Node) terminateUDP(in *link, s transport.Stream, h *wire.Header, svc Service) {
	conn, err := net.Dial("udp", svc.Address)
	if err != nil {
		n.m.EgressDials.WithLabelValues(h.Service, "error").Inc()
		n.reject(s, h.Kind, wire.StatusUnreachable, h.Service)
		return
	}
	n.m.EgressDials.WithLabelValues(h.Service, "ok").Inc()
	defer conn.Close()
	flow := h.Flow
	up := n.m.Datagrams.WithLabelValues("up")
	down := n.m.Datagrams.WithLabelValues("down")
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	in.addFlow(flow, func(p []byte) {
		up.Inc()
		last.Store(time.Now().UnixNano())
		_, _ = conn.Write(p)
	})
	defer in.removeFlow(flow)
	var b [2]byte
	if _, err := s.Write(wire.AppendStatus(b[:0], wire.StatusOK, "")); err != nil {
		_ = s.Close()
		return
	}
	n.m.Streams.WithLabelValues(h.Kind.String(), "terminated").Inc()
	idle := n.cfg.Egress.UDPIdleTimeout.D()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(idle))
			k, err := conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, last.Load())) < idle {
					continue
				}
				_ = s.Close()
				return
			}
			last.Store(time.Now().UnixNano())
			down.Inc()
			in.send(flow, buf[:k])
		}
	}()
	// The stream is the flow's lifetime: it ends when the edge closes it or
	// the connection dies.
	_, _ = io.Copy(io.Discard, s)
	_ = s.Close()
}
