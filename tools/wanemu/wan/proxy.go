package wan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/logging"
)

// ProxyConfig is the UDP proxy mode: datagrams a client sends to Listen go to
// Target through the Up impairment, the answers come back through Down. Each
// client address gets its own upstream socket, so the target sees one peer
// per client. Both addresses must be loopback.
type ProxyConfig struct {
	Listen string     `yaml:"listen"`
	Target string     `yaml:"target"`
	Up     Impairment `yaml:"up"`
	Down   Impairment `yaml:"down"`
	// Seed for the random choices. Default 1.
	Seed uint64 `yaml:"seed"`
	// IdleTimeout forgets a client mapping after this long without traffic.
	// Default 60s.
	IdleTimeout config.Duration `yaml:"idle_timeout"`
	// MaxClients bounds the number of client mappings. Default 1024.
	MaxClients int `yaml:"max_clients"`
}

// DefaultProxyConfig returns a perfect proxy from an ephemeral loopback port;
// Target must be set.
func DefaultProxyConfig() ProxyConfig {
	return ProxyConfig{
		Listen:      "127.0.0.1:0",
		Seed:        1,
		IdleTimeout: config.Duration(60 * time.Second),
		MaxClients:  1024,
	}
}

// Validate reports every problem at once.
func (c *ProxyConfig) Validate() error {
	var errs config.Errors
	for _, f := range []struct{ name, v string }{{"listen", c.Listen}, {"target", c.Target}} {
		ap, err := netip.ParseAddrPort(f.v)
		switch {
		case err != nil:
			errs.Addf("%s %q: %v", f.name, f.v, err)
		case !ap.Addr().IsLoopback():
			errs.Addf("%s %s: the proxy only joins loopback addresses", f.name, f.v)
		}
	}
	c.Up.validate(&errs, "up")
	c.Down.validate(&errs, "down")
	if c.IdleTimeout <= 0 {
		errs.Addf("idle_timeout: must be positive")
	}
	if c.MaxClients <= 0 {
		errs.Addf("max_clients: must be positive")
	}
	return errs.Err()
}

// UDPProxy is the UDP proxy mode of the emulator; it needs no privileges.
type UDPProxy struct {
	cfg     ProxyConfig
	log     *slog.Logger
	metrics *metrics
	target  *net.UDPAddr
	pool    sync.Pool
	up      *direction
	down    *direction

	conn *net.UDPConn
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	clients map[netip.AddrPort]*proxyClient
	closed  bool
}

type proxyClient struct {
	upstream *net.UDPConn
	back     clientWriter
	lastSeen time.Time
}

// clientWriter sends a datagram from the proxy's listening socket to a client.
type clientWriter struct {
	conn *net.UDPConn
	addr netip.AddrPort
}

func (c clientWriter) Write(b []byte) (int, error) { return c.conn.WriteToUDPAddrPort(b, c.addr) }

// NewUDPProxy validates cfg; Start binds.
func NewUDPProxy(cfg ProxyConfig, deps Deps) (*UDPProxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("wan proxy: %w", err)
	}
	log := logging.OrDiscard(deps.Logger)
	p := &UDPProxy{
		cfg:     cfg,
		log:     log.With("component", "wanemu", "mode", "udp-proxy"),
		metrics: newMetrics(deps.Registerer),
		target:  net.UDPAddrFromAddrPort(netip.MustParseAddrPort(cfg.Target)),
		stop:    make(chan struct{}),
		clients: map[netip.AddrPort]*proxyClient{},
	}
	p.pool.New = func() any { b := make([]byte, 65536); return &b }
	p.up = newDirection("up", cfg.Up, cfg.Seed, p.metrics, &p.pool, p.stop)
	p.down = newDirection("down", cfg.Down, cfg.Seed, p.metrics, &p.pool, p.stop)
	return p, nil
}

// Start binds the listening socket and starts forwarding.
func (p *UDPProxy) Start(ctx context.Context) error {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("wan proxy: %w", err)
	}
	p.conn = pc.(*net.UDPConn)
	for _, d := range []*direction{p.up, p.down} {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			d.run()
		}()
	}
	p.wg.Add(2)
	go p.readClients()
	go p.expire()
	return nil
}

// Addr is the address clients send to.
func (p *UDPProxy) Addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Stats returns the counters of the up (client → target) and down directions.
func (p *UDPProxy) Stats() (up, down DirectionStats) { return p.up.Stats(), p.down.Stats() }

// Shutdown closes every socket and waits for the goroutines. Idempotent.
func (p *UDPProxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.stop)
	if p.conn != nil {
		p.conn.Close()
	}
	for _, c := range p.clients {
		c.upstream.Close()
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wan proxy: shutdown: %w", ctx.Err())
	}
}

func (p *UDPProxy) readClients() {
	defer p.wg.Done()
	for {
		bp := p.pool.Get().(*[]byte)
		n, from, err := p.conn.ReadFromUDPAddrPort(*bp)
		if err != nil {
			p.pool.Put(bp)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(time.Millisecond) // a persistent error must not spin a core
			continue
		}
		c, err := p.client(from)
		if err != nil {
			p.pool.Put(bp)
			p.metrics.dropped.WithLabelValues("proxy", "no_route").Inc()
			continue
		}
		p.up.admit(bp, n, c.upstream)
	}
}

// client returns the mapping for a client address, creating its upstream
// socket on first use.
func (p *UDPProxy) client(from netip.AddrPort) (*proxyClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, net.ErrClosed
	}
	if c := p.clients[from]; c != nil {
		c.lastSeen = time.Now()
		return c, nil
	}
	if len(p.clients) >= p.cfg.MaxClients {
		return nil, errors.New("too many clients")
	}
	up, err := net.DialUDP("udp", nil, p.target)
	if err != nil {
		return nil, err
	}
	c := &proxyClient{upstream: up, back: clientWriter{conn: p.conn, addr: from}, lastSeen: time.Now()}
	p.clients[from] = c
	p.wg.Add(1)
	go p.readUpstream(c)
	return c, nil
}

func (p *UDPProxy) readUpstream(c *proxyClient) {
	defer p.wg.Done()
	for {
		bp := p.pool.Get().(*[]byte)
		n, err := c.upstream.Read(*bp)
		if err != nil {
			p.pool.Put(bp)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable from the target
		}
		p.down.admit(bp, n, c.back)
	}
}

func (p *UDPProxy) expire() {
	defer p.wg.Done()
	tick := time.NewTicker(p.cfg.IdleTimeout.D() / 4)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-tick.C:
			p.mu.Lock()
			for a, c := range p.clients {
				if now.Sub(c.lastSeen) > p.cfg.IdleTimeout.D() {
					c.upstream.Close()
					delete(p.clients, a)
				}
			}
			p.mu.Unlock()
		}
	}
}
