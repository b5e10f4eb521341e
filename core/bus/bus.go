// Package bus is the IM core's message bus: NATS, either embedded in the
// process (nats-server with JetStream, the default for one machine) or an
// external NATS cluster. Gateways and app services talk only through the
// *nats.Conn it hands out, so the same code runs on one node or many.
package bus

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/logging"
	"github.com/longlink/longlink/pkg/pki"
)

// Modes.
const (
	ModeEmbedded = "embedded"
	ModeExternal = "external"
)

// Config selects and tunes the bus.
type Config struct {
	// Mode is "embedded" (default: a NATS server inside this process) or
	// "external" (connect to URLs).
	Mode string `yaml:"mode"`
	// Listen is the embedded server's client listener, so that other local
	// processes (extra gateways, app nodes) can join. Default 127.0.0.1:7714;
	// "" serves only this process (no port at all). Port 0 picks a free port.
	Listen string `yaml:"listen"`
	// StoreDir holds the embedded server's JetStream data; the composition
	// root sets it under its data dir. Empty: a private temporary directory,
	// removed at shutdown (tests).
	StoreDir string `yaml:"store_dir"`
	// JetStream enables JetStream on the embedded server. Default true.
	JetStream bool `yaml:"jetstream"`
	// JetStreamMaxMemory and JetStreamMaxStore cap the embedded JetStream's
	// memory and disk use in bytes. Defaults 256 MiB and 4 GiB.
	JetStreamMaxMemory int64 `yaml:"jetstream_max_memory"`
	JetStreamMaxStore  int64 `yaml:"jetstream_max_store"`
	// User and Password authenticate every client (the embedded listener
	// never accepts unauthenticated clients). With an empty Password the
	// embedded server generates a random one at start; then only this
	// process can connect. In external mode, a Password with no User is sent
	// as a token.
	User     string        `yaml:"user"`
	Password config.Secret `yaml:"password"`
	// URLs are the external servers (mode external), e.g. nats://10.0.0.1:4222.
	URLs []string `yaml:"urls"`
	// Name is the client connection name shown by NATS monitoring.
	Name string `yaml:"name"`
	// MaxPayload of the embedded server in bytes. Default 1 MiB.
	MaxPayload int32 `yaml:"max_payload"`
	// ConnectTimeout bounds the start (server ready, client connected). Default 10s.
	ConnectTimeout config.Duration `yaml:"connect_timeout"`
	// TLS secures the connection to an external cluster (mode external).
	TLS TLSConfig `yaml:"tls"`
	// PingInterval and MaxPingsOut: the client pings its server this
	// often and drops the connection (then reconnects to another server of
	// the cluster) after MaxPingsOut unanswered pings, so a hung server is
	// left within about PingInterval × (MaxPingsOut+1). Defaults 2s and 2.
	PingInterval config.Duration `yaml:"ping_interval"`
	MaxPingsOut  int             `yaml:"max_pings_out"`
	// ReconnectWait is the pause before reconnecting to a server already
	// tried; the client first tries the cluster's other servers at once.
	// Default 100ms.
	ReconnectWait config.Duration `yaml:"reconnect_wait"`
	// JetStreamReplicas is the replica count of every JetStream stream and
	// KV bucket the core creates (push, webhooks, super-group work,
	// presence, API nonces, rate limits). 0 (the default) follows the
	// engine: 3 when the external servers form a cluster of three or more,
	// else 1. Set, it must not exceed the cluster's servers (a clear start
	// error otherwise); embedded only 1.
	JetStreamReplicas int `yaml:"jetstream_replicas"`
}

// TLSConfig is the client side of TLS to an external NATS cluster. Setting
// any field turns TLS on (so do tls:// URLs); the servers' certificates are
// always verified.
type TLSConfig struct {
	// CAFile is the PEM bundle of the CAs that sign the servers'
	// certificates. Empty: the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are this node's client certificate and key (PEM),
	// for servers that verify clients (nats-server tls { verify: true }).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name checked in the servers' certificates. Default:
	// the host of the URL connected to.
	ServerName string `yaml:"server_name"`
}

// enabled reports whether any TLS setting is made.
func (t *TLSConfig) enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// config loads the files into a client TLS configuration.
func (t *TLSConfig) config() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pool, err := pki.LoadPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("bus.tls.ca_file: %w", err)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("bus.tls.cert_file, key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Default returns the embedded single-node configuration.
func Default() Config {
	return Config{
		Mode:               ModeEmbedded,
		Listen:             "127.0.0.1:7714",
		JetStream:          true,
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  4 << 30,
		User:               "longlink",
		Name:               "longlink-core",
		MaxPayload:         1 << 20,
		ConnectTimeout:     config.Duration(10 * time.Second),
		PingInterval:       config.Duration(2 * time.Second),
		MaxPingsOut:        2,
		ReconnectWait:      config.Duration(100 * time.Millisecond),
	}
}

// replicasFor is the replica count on a bus whose servers number servers
// (0: not a cluster).
func (c *Config) replicasFor(servers int) (int, error) {
	switch {
	case c.JetStreamReplicas == 0 && servers >= 3:
		return 3, nil
	case c.JetStreamReplicas == 0:
		return 1, nil
	case c.JetStreamReplicas > max(servers, 1):
		return 0, fmt.Errorf("bus.jetstream_replicas: %d, but the NATS servers connected form a cluster of %d", c.JetStreamReplicas, max(servers, 1))
	}
	return c.JetStreamReplicas, nil
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs config.Errors
	switch c.Mode {
	case ModeEmbedded:
		if c.Listen != "" {
			if _, _, err := net.SplitHostPort(c.Listen); err != nil {
				errs.Addf("bus.listen: %v", err)
			}
		}
		if c.User == "" {
			errs.Addf("bus.user: required in embedded mode")
		}
		if len(c.URLs) > 0 {
			errs.Addf("bus.urls: only used in external mode")
		}
		if c.TLS.enabled() {
			errs.Addf("bus.tls: only used in external mode")
		}
		if c.JetStreamReplicas > 1 {
			errs.Addf("bus.jetstream_replicas: an embedded server holds one replica")
		}
	case ModeExternal:
		if len(c.URLs) == 0 {
			errs.Addf("bus.urls: at least one URL is required in external mode")
		}
		for _, u := range c.URLs {
			if !strings.Contains(u, "://") {
				errs.Addf("bus.urls: %q: want scheme://host:port", u)
			}
		}
		if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
			errs.Addf("bus.tls.cert_file, key_file: set both or neither")
		}
		if c.JetStreamReplicas > 5 {
			errs.Addf("bus.jetstream_replicas: %d not in 1..5", c.JetStreamReplicas)
		}
	default:
		errs.Addf("bus.mode: %q is not embedded or external", c.Mode)
	}
	if c.JetStreamReplicas < 0 {
		errs.Addf("bus.jetstream_replicas: must not be negative")
	}
	if c.PingInterval < 0 || c.MaxPingsOut < 0 || c.ReconnectWait < 0 {
		errs.Addf("bus.ping_interval, max_pings_out, reconnect_wait: must not be negative")
	}
	if c.JetStreamMaxMemory < 0 || c.JetStreamMaxStore < 0 {
		errs.Addf("bus.jetstream_max_memory, jetstream_max_store: must not be negative")
	}
	if c.MaxPayload < 0 {
		errs.Addf("bus.max_payload: must not be negative")
	}
	if c.ConnectTimeout < 0 {
		errs.Addf("bus.connect_timeout: must not be negative")
	}
	return errs.Err()
}

// Deps are the bus's injected dependencies.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Bus owns the NATS server (embedded mode) and this process's connection.
type Bus struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu       sync.Mutex
	srv      *server.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	replicas int
	tmpDir   string
	stopped  bool
}

// New validates cfg; Start launches the server and connects.
func New(cfg Config, deps Deps) (*Bus, error) {
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = 1 << 20
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = config.Duration(10 * time.Second)
	}
	if cfg.Name == "" {
		cfg.Name = "longlink-core"
	}
	if cfg.JetStreamMaxMemory == 0 {
		cfg.JetStreamMaxMemory = 256 << 20
	}
	if cfg.JetStreamMaxStore == 0 {
		cfg.JetStreamMaxStore = 4 << 30
	}
	d := Default()
	if cfg.PingInterval == 0 {
		cfg.PingInterval = d.PingInterval
	}
	if cfg.MaxPingsOut == 0 {
		cfg.MaxPingsOut = d.MaxPingsOut
	}
	if cfg.ReconnectWait == 0 {
		cfg.ReconnectWait = d.ReconnectWait
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	log := logging.OrDiscard(deps.Logger)
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	if cfg.Mode == ModeEmbedded && !cfg.Password.IsSet() {
		var b [24]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("bus: generate password: %w", err)
		}
		cfg.Password = config.NewSecret(hex.EncodeToString(b[:]))
		if cfg.Listen != "" {
			log.Info("bus: no password configured; generated a random one, so only this process can use the listener")
		}
	}
	b := &Bus{cfg: cfg, log: log.With("component", "bus"), metrics: m}
	if err := reg.Register(newServerInfo(b)); err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	return b, nil
}

// Start launches the embedded server (if any), connects this process and
// waits (at most until ctx ends) until JetStream answers.
func (b *Bus) Start(ctx context.Context) error {
	if err := b.start(); err != nil {
		return err
	}
	if b.cfg.Mode == ModeEmbedded && !b.cfg.JetStream {
		return nil
	}
	if err := b.waitJetStream(ctx); err != nil {
		b.mu.Lock()
		b.cleanupLocked()
		b.mu.Unlock()
		return err
	}
	return nil
}

// waitJetStream waits until JetStream answers on the connection. A NATS
// cluster without JetStream servers of its own (a site's, in a
// super-cluster whose JetStream cluster is stretched over the sites)
// reaches JetStream through its gateways to the other clusters, which
// connect in the seconds after the servers start and reconnect after a
// stale link: meanwhile JetStream requests are answered "jetstream not
// enabled", and a core started then failed its start creating its streams.
func (b *Bus) waitJetStream(ctx context.Context) error {
	js := b.JetStream()
	wait := 50 * time.Millisecond
	for logged := false; ; logged = true {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			if logged {
				b.log.Info("JetStream answers")
			}
			return nil
		}
		if !logged {
			b.log.Warn("JetStream does not answer yet; waiting", "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: jetstream: %w (%v)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

func (b *Bus) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.nc != nil {
		return errors.New("bus: already started")
	}
	var err error
	switch b.cfg.Mode {
	case ModeEmbedded:
		err = b.startEmbedded()
	default:
		err = b.connectExternal()
	}
	if err != nil {
		b.cleanupLocked()
		return err
	}
	js, err := jetstream.New(b.nc)
	if err != nil {
		b.cleanupLocked()
		return fmt.Errorf("bus: jetstream: %w", err)
	}
	b.js = js
	if b.replicas, err = b.cfg.replicasFor(clusterSize(b.nc)); err != nil {
		b.cleanupLocked()
		return fmt.Errorf("bus: %w", err)
	}
	b.metrics.connected.Set(1)
	return nil
}

func (b *Bus) startEmbedded() error {
	// The server keeps only a bcrypt hash of the password (and so does not
	// warn about a plaintext one); clients still send the password.
	hash, err := bcrypt.GenerateFromPassword([]byte(b.cfg.Password.Reveal()), bcrypt.MinCost)
	if err != nil {
		return fmt.Errorf("bus: embedded server password: %w", err)
	}
	opts := &server.Options{
		ServerName: "longlink-embedded",
		Username:   b.cfg.User,
		Password:   string(hash),
		MaxPayload: b.cfg.MaxPayload,
		NoLog:      true,
		NoSigs:     true,
		JetStream:  b.cfg.JetStream,
	}
	if b.cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, _ := net.SplitHostPort(b.cfg.Listen)
		p, err := strconv.Atoi(port)
		if err != nil {
			return fmt.Errorf("bus: listen port %q: %w", port, err)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, p
	}
	if b.cfg.JetStream {
		dir := b.cfg.StoreDir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "longlink-nats-")
			if err != nil {
				return fmt.Errorf("bus: jetstream dir: %w", err)
			}
			b.tmpDir, dir = tmp, tmp
		} else if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("bus: jetstream dir: %w", err)
		}
		opts.StoreDir = filepath.Clean(dir)
		opts.JetStreamMaxMemory = b.cfg.JetStreamMaxMemory
		opts.JetStreamMaxStore = b.cfg.JetStreamMaxStore
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("bus: embedded server: %w", err)
	}
	nl := &natsLogger{log: b.log}
	srv.SetLoggerV2(nl, false, false, false)
	b.srv = srv
	srv.Start()
	if !srv.ReadyForConnections(b.cfg.ConnectTimeout.D()) {
		if msg := nl.fatalMsg(); msg != "" {
			return fmt.Errorf("bus: embedded server: %s", msg)
		}
		return errors.New("bus: embedded server not ready in time")
	}
	nc, err := nats.Connect("", append(b.clientOptions(),
		nats.InProcessServer(srv),
		nats.UserInfo(b.cfg.User, b.cfg.Password.Reveal()))...)
	if err != nil {
		return fmt.Errorf("bus: connect in-process: %w", err)
	}
	b.nc = nc
	if b.cfg.Listen != "" {
		b.log.Info("embedded NATS listening", "url", srv.ClientURL(), "jetstream", b.cfg.JetStream)
	}
	return nil
}

func (b *Bus) connectExternal() error {
	opts, err := b.externalOptions(b.cfg)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(strings.Join(b.cfg.URLs, ","), append(opts, nats.RetryOnFailedConnect(false))...)
	if err != nil {
		return fmt.Errorf("bus: connect %s: %w", strings.Join(b.cfg.URLs, ","), err)
	}
	b.nc = nc
	b.log.Info("connected to external NATS", "url", nc.ConnectedUrlRedacted())
	return nil
}

// externalOptions are the options of a connection to an external cluster:
// credentials, TLS, reconnecting forever.
func (b *Bus) externalOptions(cfg Config) ([]nats.Option, error) {
	opts := b.clientOptions()
	if cfg.Password.IsSet() {
		if cfg.User != "" {
			opts = append(opts, nats.UserInfo(cfg.User, cfg.Password.Reveal()))
		} else {
			opts = append(opts, nats.Token(cfg.Password.Reveal()))
		}
	}
	if cfg.TLS.enabled() {
		tc, err := cfg.TLS.config()
		if err != nil {
			return nil, fmt.Errorf("bus: %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	return append(opts, nats.MaxReconnects(-1)), nil
}

func (b *Bus) clientOptions() []nats.Option {
	return []nats.Option{
		nats.Name(b.cfg.Name),
		nats.Timeout(b.cfg.ConnectTimeout.D()),
		nats.PingInterval(b.cfg.PingInterval.D()),
		nats.MaxPingsOutstanding(b.cfg.MaxPingsOut),
		nats.ReconnectWait(b.cfg.ReconnectWait.D()),
		nats.ReconnectJitter(b.cfg.ReconnectWait.D(), b.cfg.ReconnectWait.D()),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.metrics.disconnects.Inc()
			b.metrics.connected.Set(0)
			if err != nil {
				b.log.Warn("bus disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.metrics.reconnects.Inc()
			b.metrics.connected.Set(1)
			b.log.Info("bus reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			b.metrics.asyncErrors.Inc()
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			b.log.Warn("bus async error", "subject", subj, "err", err)
		}),
	}
}

// Conn is this process's connection. Valid between Start and Shutdown.
func (b *Bus) Conn() *nats.Conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nc
}

// Replicas is the replica count for the JetStream streams and KV buckets
// the core creates (Config.JetStreamReplicas, or what the engine allows).
// Valid after Start.
func (b *Bus) Replicas() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.replicas
}

// clusterSize is the number of servers of the connected server's cluster
// (those it and the configured URLs make known), or 0 when it is not in a
// cluster.
func clusterSize(nc *nats.Conn) int {
	if nc.ConnectedClusterName() == "" {
		return 0
	}
	hosts := map[string]bool{}
	for _, u := range nc.Servers() {
		if pu, err := url.Parse(u); err == nil {
			hosts[pu.Host] = true
		}
	}
	return len(hosts)
}

// JetStream is the JetStream context on Conn.
func (b *Bus) JetStream() jetstream.JetStream {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.js
}

// ClientURL is the address other processes use to join the embedded server
// ("" when it does not listen or in external mode).
func (b *Bus) ClientURL() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil || b.cfg.Listen == "" {
		return ""
	}
	return b.srv.ClientURL()
}

// Connect opens another connection to the same bus (for example a gateway
// that wants its own connection for isolation). The caller closes it.
func (b *Bus) Connect(name string) (*nats.Conn, error) {
	b.mu.Lock()
	srv, cfg := b.srv, b.cfg
	b.mu.Unlock()
	if srv != nil {
		return nats.Connect("", append(b.clientOptions(), nats.Name(name), nats.InProcessServer(srv), nats.UserInfo(cfg.User, cfg.Password.Reveal()))...)
	}
	opts, err := b.externalOptions(cfg)
	if err != nil {
		return nil, err
	}
	return nats.Connect(strings.Join(cfg.URLs, ","), append(opts, nats.Name(name))...)
}

// Shutdown drains this process's connection, then stops the embedded server.
func (b *Bus) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return nil
	}
	b.stopped = true
	var errs []error
	if b.nc != nil {
		closed := make(chan struct{})
		b.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := b.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("bus: drain: %w", err))
			b.nc.Close()
		} else {
			select {
			case <-closed:
			case <-ctx.Done():
				b.nc.Close()
				errs = append(errs, fmt.Errorf("bus: drain: %w", ctx.Err()))
			}
		}
	}
	b.metrics.connected.Set(0)
	b.cleanupLocked()
	return errors.Join(errs...)
}

// cleanupLocked closes the connection and stops the server.
func (b *Bus) cleanupLocked() {
	if b.nc != nil {
		b.nc.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	if b.tmpDir != "" {
		_ = os.RemoveAll(b.tmpDir)
		b.tmpDir = ""
	}
}

// natsLogger routes the embedded server's log lines to slog and remembers
// the fatal one (the server stops starting after it, without exiting).
type natsLogger struct {
	log   *slog.Logger
	mu    sync.Mutex
	fatal string
}

func (l *natsLogger) fatalMsg() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	l.fatal = msg
	l.mu.Unlock()
	l.log.Error(msg)
}
func (l *natsLogger) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any) {}
