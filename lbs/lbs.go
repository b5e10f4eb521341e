// Package lbs is Longlink's control plane: a raft-replicated service that
// tells clients which entry points to use (HTTP JSON, /resolve JSON and
// authoritative DNS), takes node registrations and heartbeats, and serves the
// operators' admin API. See README.md for the protocol, topology and config.
//
// Composition: New(Config, Deps) → Start(ctx) → Shutdown(ctx).
package lbs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/geo"
	"github.com/longlink/longlink/lbs/internal/cluster"
	"github.com/longlink/longlink/lbs/internal/engine"
	"github.com/longlink/longlink/lbs/internal/model"
	"github.com/longlink/longlink/lbs/internal/state"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/logging"
	"github.com/longlink/longlink/pkg/pki"
)

// Deps are injected dependencies. Listeners, when set, are used instead of
// binding the configured addresses (tests, socket activation).
type Deps struct {
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
	RaftListener net.Listener
	// Reload reads the configuration again (the file the member started
	// from), for ReloadFromSource: SIGHUP and POST /v1/reload. Nil: the
	// member cannot reload.
	Reload func() (Config, error)
}

// LBS is one cluster member.
type LBS struct {
	cfg  Config
	log  *slog.Logger
	deps Deps
	m    *metrics
	geo  *geo.Resolver
	fsm  *state.FSM
	cl   *cluster.Cluster
	// rotating: apps whose rotation by the policy's rule is being proposed
	rotating sync.Map

	tlsConf  *tls.Config // mutual TLS (raft) and admin server
	caPool   *x509.CertPool
	live     atomic.Pointer[live] // reloadable configuration
	reloadMu sync.Mutex
	health   *healthTracker
	rum      *rumIntake
	clientLn net.Listener
	raftLn   net.Listener
	adminLn  net.Listener
	client   *http.Server
	admin    *http.Server
	dns      *dnsServer
	zone     string // DNS zone, lower case, fully qualified
	// caughtUp is closed once the member's state has caught up with the
	// cluster (catchUp); until then clients get 503 and SERVFAIL.
	caughtUp chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
}

// New validates the configuration and builds the member; nothing listens
// until Start.
func New(cfg Config, deps Deps) (*LBS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lbs: config: %w", err)
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 4 << 20
	}
	deps.Logger = logging.OrDiscard(deps.Logger)
	l := &LBS{cfg: cfg, deps: deps, log: deps.Logger.With("component", "lbs", "node", cfg.NodeID), m: newMetrics(deps.Registerer)}
	l.live.Store(newLive(cfg))
	var err error
	if l.geo, err = geo.New(cfg.Geo, geo.Deps{Logger: deps.Logger, Registerer: deps.Registerer}); err != nil {
		return nil, err
	}
	if err := l.loadTLS(); err != nil {
		return nil, err
	}
	l.fsm = state.New(l.onChange)
	l.zone = strings.ToLower(dns.Fqdn(cfg.DNS.Zone))
	l.health = newHealthTracker(l)
	l.rum = newRUMIntake(cfg.RUM)
	l.caughtUp = make(chan struct{})
	return l, nil
}

func (l *LBS) loadTLS() error {
	names := append([]string{"127.0.0.1", "localhost"}, l.cfg.TLS.Names...)
	if h, _, err := net.SplitHostPort(l.cfg.RaftAdvertise); err == nil && h != "" {
		names = append(names, h)
	}
	var cert tls.Certificate
	if l.cfg.TLS.CADir != "" {
		ca, err := pki.LoadOrCreateCA(l.cfg.TLS.CADir, "longlink-lbs")
		if err != nil {
			return fmt.Errorf("lbs: ca: %w", err)
		}
		if cert, err = ca.Issue(l.cfg.NodeID, names...); err != nil {
			return err
		}
		l.caPool = ca.Pool()
	} else {
		var err error
		if cert, err = tls.LoadX509KeyPair(l.cfg.TLS.CertFile, l.cfg.TLS.KeyFile); err != nil {
			return fmt.Errorf("lbs: tls cert: %w", err)
		}
		if l.caPool, err = pki.LoadPool(l.cfg.TLS.CAFile); err != nil {
			return fmt.Errorf("lbs: tls ca: %w", err)
		}
	}
	l.tlsConf = pki.MutualTLS(cert, l.caPool)
	return nil
}

// CAPool is the cluster CA (for clients of the admin API in tests and dev).
func (l *LBS) CAPool() *x509.CertPool { return l.caPool }

func (l *LBS) onChange(s *state.Snapshot) {
	l.m.policyVersion.Set(float64(s.State.Version))
	l.m.raftIndex.Set(float64(s.State.Index))
}

// Start binds the listeners, starts raft and the front ends.
func (l *LBS) Start(ctx context.Context) (err error) {
	l.ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	var started []func()
	defer func() {
		if err != nil {
			for i := len(started) - 1; i >= 0; i-- {
				started[i]()
			}
			l.cancel()
		}
	}()
	if err := l.geo.Start(ctx); err != nil {
		return err
	}
	started = append(started, func() { l.geo.Shutdown(context.Background()) })

	raftLn := l.deps.RaftListener
	if raftLn == nil {
		if raftLn, err = net.Listen("tcp", l.cfg.RaftListen); err != nil {
			return fmt.Errorf("lbs: raft listen: %w", err)
		}
	}
	peers := map[string]string{}
	for _, p := range l.cfg.Cluster.Peers {
		peers[p.ID] = p.Address
	}
	l.raftLn = raftLn
	l.cl, err = cluster.Open(cluster.Config{NodeID: l.cfg.NodeID, Dir: filepath.Join(l.cfg.DataDir, "raft"), Listener: raftLn,
		Advertise: l.cfg.RaftAdvertise, TLS: l.tlsConf, Bootstrap: l.cfg.Cluster.Bootstrap, Peers: peers,
		HeartbeatTimeout: l.cfg.Cluster.HeartbeatTimeout.D(), ElectionTimeout: l.cfg.Cluster.ElectionTimeout.D(),
		LeaderLease: l.cfg.Cluster.LeaderLease.D(), Logger: l.log}, l.fsm)
	if err != nil {
		raftLn.Close()
		return err
	}
	started = append(started, func() { l.cl.Close() })

	if l.clientLn, err = net.Listen("tcp", l.cfg.ClientListen); err != nil {
		return fmt.Errorf("lbs: client listen: %w", err)
	}
	if l.adminLn, err = net.Listen("tcp", l.cfg.AdminListen); err != nil {
		l.clientLn.Close()
		return fmt.Errorf("lbs: admin listen: %w", err)
	}
	if l.cfg.DNS.Listen != "" {
		if l.dns, err = newDNSServer(l); err != nil {
			l.clientLn.Close()
			l.adminLn.Close()
			return err
		}
	}
	l.client = &http.Server{Handler: l.clientHandler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(l.log.Handler(), slog.LevelDebug)}
	adminTLS := l.tlsConf.Clone()
	adminTLS.ClientAuth = tls.NoClientCert // operators authenticate with bearer tokens
	l.admin = &http.Server{Handler: l.adminHandler(), TLSConfig: adminTLS, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorLog: slog.NewLogLogger(l.log.Handler(), slog.LevelDebug)}
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.client.Serve(l.clientLn) }()
	go func() { defer l.wg.Done(); l.admin.ServeTLS(l.adminLn, "", "") }()
	if l.dns != nil {
		l.dns.start()
	}
	l.health.start()
	l.wg.Add(3)
	go l.background()
	go l.catchUp()
	go l.proposeRUM()
	l.log.Info("lbs started", "client", l.clientLn.Addr(), "admin", l.adminLn.Addr(), "raft", raftLn.Addr(), "dns", l.DNSAddr())
	return nil
}

// background seeds the initial policy, joins an existing cluster and keeps
// the leader gauge current.
func (l *LBS) background() {
	defer l.wg.Done()
	seeded := l.cfg.InitialPolicy == "" || !l.cfg.Cluster.Bootstrap
	joined := len(l.cfg.Cluster.Join) == 0
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		if l.cl.IsLeader() {
			l.m.isLeader.Set(1)
		} else {
			l.m.isLeader.Set(0)
		}
		if !seeded && l.cl.IsLeader() {
			if err := l.seedPolicy(); err != nil {
				l.log.Error("initial policy not applied", "err", err)
			}
			seeded = true
		}
		if !joined {
			if err := l.joinCluster(); err != nil {
				l.log.Warn("join failed; retrying", "err", err)
				continue
			}
			joined = true
		}
	}
}

// errCatchingUp is why a member that has not caught up refuses clients.
var errCatchingUp = errors.New("lbs: catching up with the cluster")

// catchUp makes the member serve once its state has caught up with the
// cluster: it has applied every command the leader had applied when asked
// (a read index, so the leader is current), and, on a member that seeds an
// initial policy, a policy is in. A restarted member restores its last
// snapshot and hears of the log after it only from the leader, which may
// take seconds (the leader backs off from a peer that was down); a new
// member starts empty. Answering from either state would tell clients an
// appkey does not exist (a 404, an NXDOMAIN that resolvers cache) or hand
// out an old policy, so the front ends refuse until then and other members
// answer.
func (l *LBS) catchUp() {
	defer l.wg.Done()
	start := time.Now()
	warned := false
	needPolicy := l.cfg.Cluster.Bootstrap && l.cfg.InitialPolicy != ""
	for {
		ctx, cancel := context.WithTimeout(l.ctx, 5*time.Second)
		err := l.cl.ReadIndex(ctx)
		cancel()
		snap := l.fsm.Current()
		if err == nil && (!needPolicy || snap.State.Version > 0) {
			close(l.caughtUp)
			l.m.caughtUp.Set(1)
			l.log.Info("caught up with the cluster: serving clients", "after", time.Since(start).Round(time.Millisecond),
				"raft_index", snap.State.Index, "policy_version", snap.State.Version)
			return
		}
		if !warned && time.Since(start) > 10*time.Second {
			warned = true
			l.log.Warn("still catching up with the cluster: refusing clients (503, SERVFAIL) until a leader is reachable", "err", err)
		}
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Ready reports whether the member serves clients (its /readyz): nil once
// its state has caught up with the cluster after a start.
func (l *LBS) Ready() error {
	select {
	case <-l.caughtUp:
		return nil
	default:
		return errCatchingUp
	}
}

// WaitReady waits until the member serves clients: the cluster has a
// leader and this member has caught up with it (dev mode and tests).
func (l *LBS) WaitReady(ctx context.Context) error {
	select {
	case <-l.caughtUp:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", errCatchingUp, ctx.Err())
	}
}

func (l *LBS) seedPolicy() error {
	if l.fsm.Current().State.Version > 0 {
		return nil
	}
	b, err := os.ReadFile(l.cfg.InitialPolicy)
	if err != nil {
		return err
	}
	var doc model.Document
	if err := config.Decode(l.cfg.InitialPolicy, b, &doc); err != nil {
		return err
	}
	_, err = l.propose(l.ctx, &state.Command{Op: state.OpApplyDoc, Who: "system:initial_policy", Doc: &doc, Comment: "initial policy " + filepath.Base(l.cfg.InitialPolicy)})
	return err
}

// ApplyPolicy applies a routing document (YAML) as operator who; for dev
// mode and tests. It returns the new policy version.
func (l *LBS) ApplyPolicy(ctx context.Context, yamlDoc []byte, who string) (uint64, error) {
	var doc model.Document
	if err := config.Decode("policy", yamlDoc, &doc); err != nil {
		return 0, err
	}
	res, err := l.propose(ctx, &state.Command{Op: state.OpApplyDoc, Who: who, Doc: &doc})
	return res.Version, err
}

func (l *LBS) propose(ctx context.Context, c *state.Command) (state.Result, error) {
	if c.At.IsZero() {
		c.At = time.Now().UTC()
	}
	res, err := l.cl.Propose(ctx, c)
	if err != nil && !errors.Is(err, state.ErrRejected) {
		l.m.proposeErrors.Inc()
	}
	return res, err
}

// ClientAddr is the SDK HTTP listener's address.
func (l *LBS) ClientAddr() net.Addr { return l.clientLn.Addr() }

// AdminAddr is the admin HTTPS listener's address.
func (l *LBS) AdminAddr() net.Addr { return l.adminLn.Addr() }

// DNSAddr is the DNS address (UDP and TCP), nil when DNS is off.
func (l *LBS) DNSAddr() net.Addr {
	if l.dns == nil {
		return nil
	}
	return l.dns.addr()
}

// IsLeader reports whether this member leads the raft group.
func (l *LBS) IsLeader() bool { return l.cl != nil && l.cl.IsLeader() }

// Shutdown drains: stop the front ends, hand off raft leadership, stop raft.
func (l *LBS) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	if l.closed || l.cl == nil {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	var errs []error
	l.health.stop()
	if l.dns != nil {
		l.dns.stop()
	}
	errs = append(errs, l.client.Shutdown(ctx), l.admin.Shutdown(ctx))
	l.wg.Wait()
	errs = append(errs, l.cl.Close(), l.geo.Shutdown(ctx))
	return errors.Join(errs...)
}

// Kill stops the member abruptly, as a crash would (tests).
func (l *LBS) Kill() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	l.health.stop()
	if l.dns != nil {
		l.dns.stop()
	}
	l.client.Close()
	l.admin.Close()
	l.wg.Wait()
	l.cl.Kill()
	l.geo.Shutdown(context.Background())
}

// SetPartitioned cuts the member's raft transport off (tests).
func (l *LBS) SetPartitioned(p bool) { l.cl.SetPartitioned(p) }

// query runs the selection for a request using the current state.
func (l *LBS) query(req *engine.Request) (engine.Result, *state.Snapshot, error) {
	snap := l.fsm.Current()
	if !req.Loc.HasCoords && req.Loc.Source == "" && req.Client.IsValid() {
		req.Loc = l.geo.Lookup(req.Client)
	}
	l.measured(snap, req)
	res, err := snap.Engine.Select(req)
	if res.Measured {
		l.m.rumSteered.Inc()
	}
	return res, snap, err
}

func (l *LBS) staleness() time.Duration {
	if l.cl == nil {
		return -1
	}
	return l.cl.Staleness()
}

func (l *LBS) raftAddr() string {
	if l.cfg.RaftAdvertise != "" {
		return l.cfg.RaftAdvertise
	}
	return l.raftLn.Addr().String()
}

// adminCall POSTs to another member's admin API with the admin token,
// trusting the cluster CA.
func (l *LBS) adminCall(ctx context.Context, base, path string, body []byte) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: l.caPool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+l.config().AdminToken.Reveal())
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s%s: %s: %s", base, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}
