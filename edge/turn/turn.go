// Package turn is Longlink's TURN server (RFC 8656, with RFC 6062 TCP
// relays and RFC 6156 IPv6), built on pion/turn. It authenticates clients
// with REST-style time-limited credentials (pkg/turncred) signed by any of
// several live shared secrets, denies peers in private, loopback, link-local,
// multicast, CGNAT and cloud metadata ranges unless the operator opens them,
// enforces per-user, per-app and total allocation quotas and per-allocation
// and per-user bandwidth limits, counts every refusal, and drains gracefully.
//
// The edge (longlink edge) and the standalone role (longlink turn) build it
// with New(Config, Deps) and run it as a lifecycle.Component.
package turn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/logging"
	"github.com/longlink/longlink/pkg/turncred"
)

// Deps are the server's injected dependencies.
type Deps struct {
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the longlink_turn_* metrics; nil means a private
	// registry (metrics not exported).
	Registerer prometheus.Registerer
	// TLSConfig, when set, serves the TLS listeners instead of
	// Config.TLSCertFile/TLSKeyFile (for example the edge's certificate).
	TLSConfig *tls.Config
	// Now is the clock used for credential expiry; nil means time.Now.
	Now func() time.Time
}

// Server is a TURN server. Create it with New.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	m       *metrics
	keyring *turncred.Keyring
	peers   atomic.Pointer[peerPolicy]
	quotas  *quotaBook
	// live is the configuration with the reloadable keys as of the last
	// Reload (limits, timeouts); cfg keeps the rest. cert is the TLS
	// listeners' own certificate (tls_cert_file), re-read by Reload.
	live     atomic.Pointer[Config]
	cert     atomic.Pointer[tls.Certificate]
	reloadMu sync.Mutex
	auth     authBook

	draining  atomic.Bool
	tcpRelays sync.Map // relay port → *relayListener
	udpRelays sync.Map // advertised relay netip.AddrPort → *relayPacketConn
	fast      *fastPath
	pollers   []*relayPoller // one per UDP listener socket; set by Start

	mu        sync.Mutex
	pion      *pionturn.Server
	listeners []*authListener
	addrs     Addrs
	started   bool
	stopped   bool
}

// Addrs are the bound listener addresses (useful with port 0 in tests).
type Addrs struct {
	UDP, TCP, TLS []net.Addr
}

// New validates cfg and builds a server; Start binds it.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("turn: config: %w", err)
	}
	deps.Logger = logging.OrDiscard(deps.Logger)
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("turn: metrics: %w", err)
	}
	kr, err := turncred.NewKeyring(cfg.Secrets)
	if err != nil {
		return nil, fmt.Errorf("turn: %w", err)
	}
	m.secretsLive.Set(float64(len(cfg.Secrets)))
	peers, err := newPeerPolicy(cfg.Peers)
	if err != nil {
		return nil, fmt.Errorf("turn: peers: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		deps:    deps,
		log:     deps.Logger.With("component", "turn"),
		m:       m,
		keyring: kr,
		quotas:  newQuotaBook(cfg.Quotas, cfg.Limits),
		auth:    authBook{keys: map[string]matchedKey{}},
		fast:    newFastPath(),
	}
	s.peers.Store(peers)
	s.live.Store(&cfg)
	return s, nil
}

func (s *Server) now() time.Time { return s.deps.Now() }

// SetSecrets replaces the live shared secrets (rotation pushed by the LBS).
// The first one is current; credentials signed by any of them are accepted.
func (s *Server) SetSecrets(secrets []turncred.Secret) error {
	if err := s.keyring.Set(secrets); err != nil {
		return fmt.Errorf("turn: %w", err)
	}
	s.m.secretsLive.Set(float64(len(secrets)))
	s.log.Info("secrets replaced", "ids", s.keyring.IDs())
	return nil
}

// SecretIDs returns the ids of the live shared secrets, the current first.
func (s *Server) SecretIDs() []string { return s.keyring.IDs() }

// Start binds the listeners and starts serving.
func (s *Server) Start(ctx context.Context) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("turn: already started")
	}
	var pcs []pionturn.PacketConnConfig
	var lcs []pionturn.ListenerConfig
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()
	nsock := s.cfg.UDPSockets
	if nsock == 0 {
		nsock = runtime.GOMAXPROCS(0)
	}
	for _, addr := range s.cfg.UDP {
		conns, err := listenUDPReusePort(ctx, s.log, addr, nsock)
		if err != nil {
			return fmt.Errorf("turn: udp %s: %w", addr, err)
		}
		for _, c := range conns {
			closers = append(closers, c.Close)
			apc := &authPacketConn{PacketConn: c, s: s}
			if uc, ok := c.(*net.UDPConn); ok {
				if raw, err := uc.SyscallConn(); err == nil {
					apc.udp, apc.raw = uc, raw
					if apc.v6, err = socketIsIPv6(raw); err != nil {
						return fmt.Errorf("turn: udp %s: %w", addr, err)
					}
				}
				if local, ok := addrPortOf(uc.LocalAddr()); ok {
					apc.local = unmapAP(local)
					if _, dup := s.fast.listeners[unmapAP(local)]; !dup {
						s.fast.listeners[unmapAP(local)] = apc
					}
				}
			}
			// Each socket and its allocations' relays get a poller of
			// their own, so relaying scales with the sockets over cores.
			var p *relayPoller
			if apc.raw != nil {
				if p, err = newRelayPoller(s, apc); err != nil {
					return fmt.Errorf("turn: relay poller: %w", err)
				}
				closers = append(closers, p.close)
				s.pollers = append(s.pollers, p)
			}
			pcs = append(pcs, pionturn.PacketConnConfig{
				PacketConn:            apc,
				RelayAddressGenerator: &relayGen{s: s, poller: p},
				PermissionHandler:     s.permission,
			})
		}
		s.addrs.UDP = append(s.addrs.UDP, conns[0].LocalAddr())
	}
	var lc net.ListenConfig
	perIP := newClientAddrCounts(s.cfg.MaxTCPConnectionsPerIP)
	for _, addr := range s.cfg.TCP {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("turn: tcp %s: %w", addr, err)
		}
		closers = append(closers, ln.Close)
		al := newAuthListener(s, ln, s.cfg.MaxTCPConnections, perIP)
		s.listeners = append(s.listeners, al)
		lcs = append(lcs, pionturn.ListenerConfig{Listener: al, RelayAddressGenerator: &relayGen{s: s, tcpControl: true}, PermissionHandler: s.permission})
		s.addrs.TCP = append(s.addrs.TCP, ln.Addr())
	}
	if len(s.cfg.TLS) > 0 {
		tcfg, err := s.tlsConfig()
		if err != nil {
			return err
		}
		for _, addr := range s.cfg.TLS {
			ln, err := lc.Listen(ctx, "tcp", addr)
			if err != nil {
				return fmt.Errorf("turn: tls %s: %w", addr, err)
			}
			closers = append(closers, ln.Close)
			al := newAuthListener(s, tls.NewListener(ln, tcfg), s.cfg.MaxTCPConnections, perIP)
			s.listeners = append(s.listeners, al)
			lcs = append(lcs, pionturn.ListenerConfig{Listener: al, RelayAddressGenerator: &relayGen{s: s, tcpControl: true}, PermissionHandler: s.permission})
			s.addrs.TLS = append(s.addrs.TLS, ln.Addr())
		}
	}
	srv, err := pionturn.NewServer(pionturn.ServerConfig{
		PacketConnConfigs: pcs,
		ListenerConfigs:   lcs,
		LoggerFactory:     pionLoggerFactory{log: s.log},
		Realm:             s.cfg.Realm,
		AuthHandler:       s.authHandler,
		QuotaHandler:      s.quotaHandler,
		EventHandler:      s.eventHandler(),
	})
	if err != nil {
		return fmt.Errorf("turn: %w", err)
	}
	s.pion = srv
	s.started = true
	raws := make([]syscall.RawConn, 0, len(s.pollers))
	for _, p := range s.pollers {
		raws = append(raws, p.ln.raw)
		go p.run()
	}
	s.m.listeners.Store(&raws)
	s.log.Info("serving", "udp", s.addrs.UDP, "udp_sockets", nsock, "tcp", s.addrs.TCP, "tls", s.addrs.TLS,
		"relay_ipv4", s.cfg.Relay.IPv4, "relay_ipv6", s.cfg.Relay.IPv6, "secrets", s.keyring.IDs())
	return nil
}

// Addrs returns the bound listener addresses; valid after Start.
func (s *Server) Addrs() Addrs {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs
}

// Allocations returns the number of allocations held now.
func (s *Server) Allocations() int {
	s.mu.Lock()
	srv := s.pion
	s.mu.Unlock()
	if srv == nil {
		return 0
	}
	return srv.AllocationCount()
}

// Drain stops new allocations (they get 508 Insufficient Capacity, so
// clients try another server); existing allocations keep relaying and may
// refresh until they end.
func (s *Server) Drain() {
	if !s.draining.Swap(true) {
		s.m.draining.Set(1)
		s.log.Info("draining: refusing new allocations", "allocations", s.Allocations())
	}
}

// Draining reports whether Drain was called (for /readyz).
func (s *Server) Draining() bool { return s.draining.Load() }

// Shutdown drains, waits until the allocations have ended or ctx is done,
// then closes every listener, connection and relay. Clients refresh their
// allocations for as long as they like, so only a deadline bounds the wait:
// with a ctx that has none, the allocations are closed at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	s.Drain()
	if _, ok := ctx.Deadline(); ok {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
	wait:
		for s.pion.AllocationCount() > 0 {
			select {
			case <-ctx.Done():
				s.log.Info("drain time over, closing allocations", "allocations", s.pion.AllocationCount())
				break wait
			case <-tick.C:
			}
		}
	} else if n := s.pion.AllocationCount(); n > 0 {
		s.log.Info("no shutdown deadline, closing allocations now", "allocations", n)
	}
	err := s.pion.Close()
	for _, l := range s.listeners {
		l.closeAll()
	}
	// pion closes each listener's allocations from its read goroutine;
	// give them a moment (bounded) so relay sockets are gone when we return.
	settle := time.NewTimer(2 * time.Second)
	defer settle.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
settled:
	for s.pion.AllocationCount() > 0 {
		select {
		case <-settle.C:
			s.log.Warn("allocations still closing after shutdown", "allocations", s.pion.AllocationCount())
			break settled
		case <-tick.C:
		}
	}
	for _, p := range s.pollers {
		_ = p.close()
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("turn: close: %w", err)
	}
	return nil
}

func (s *Server) permission(_ net.Addr, peer net.IP) bool {
	if s.peers.Load().allowedIP(peer) {
		return true
	}
	s.m.refuse(refusePeer)
	return false
}

func (s *Server) quotaHandler(userID, _ string, _ net.Addr) bool {
	if err := s.quotas.check(userID); err != nil {
		s.m.refuse(quotaReason(err))
		return false
	}
	return true
}

func (s *Server) dropped(why string) {
	if why == dropUserBandwidth {
		s.m.droppedUserBW.Inc()
	} else {
		s.m.droppedAllocBW.Inc()
	}
}

func (s *Server) eventHandler() pionturn.EventHandler {
	return pionturn.EventHandler{
		OnAllocationCreated: func(src, dst net.Addr, _, _, _ string, relay net.Addr, _ int) {
			s.m.allocationsActive.Inc()
			s.m.allocationsCreated.Inc()
			s.allocationCreated(src, dst, relay)
		},
		OnAllocationDeleted: func(src, dst net.Addr, _, _, _ string) {
			s.m.allocationsActive.Dec()
			s.m.allocationsDeleted.Inc()
			s.allocationDeleted(src, dst)
		},
		OnAllocationError: func(_, _ net.Addr, _, _ string) { s.m.requestErrors.Inc() },
		OnPermissionCreated: func(_, _ net.Addr, _, _, _ string, _ net.Addr, _ net.IP) {
			s.m.permissionsCreated.Inc()
		},
		OnChannelCreated: func(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, number uint16) {
			s.m.channelsCreated.Inc()
			s.channelChanged(relay, peer, number, true)
		},
		OnChannelDeleted: func(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, number uint16) {
			s.channelChanged(relay, peer, number, false)
		},
	}
}

func (s *Server) tlsConfig() (*tls.Config, error) {
	if s.deps.TLSConfig != nil {
		return s.deps.TLSConfig, nil
	}
	var cert tls.Certificate
	var err error
	if s.cfg.TLSCertFile != "" {
		cert, err = tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("turn: tls certificate: %w", err)
		}
	} else {
		s.log.Warn("no TLS certificate configured: using a self-signed one")
		cert, err = selfSigned()
		if err != nil {
			return nil, fmt.Errorf("turn: self-signed certificate: %w", err)
		}
	}
	s.cert.Store(&cert)
	// Reload replaces the certificate for the handshakes that follow.
	return &tls.Config{MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil }}, nil
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "longlink turn"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
