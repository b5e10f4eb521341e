package turn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pionturn "github.com/pion/turn/v5"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

var (
	errTCPOverUDP   = errors.New("turn: TCP relays (RFC 6062) need a TCP or TLS control connection")
	errNoFamily     = errors.New("turn: no relay address configured for this address family")
	errPeerDenied   = errors.New("turn: peer address denied by policy")
	errNoRelayPorts = errors.New("turn: no free relay port in the configured range")
)

// relayGen is the RelayAddressGenerator of one listener. It applies drain,
// quotas and bandwidth limits as relays are made, and wraps relay sockets to
// count and limit what they carry.
type relayGen struct {
	s          *Server
	tcpControl bool         // the listener is TCP or TLS
	poller     *relayPoller // reads this UDP listener's relays; nil: pion reads them
}

var _ pionturn.RelayAddressGenerator = (*relayGen)(nil)

func (g *relayGen) Validate() error { return nil }

// family returns the advertised and bind IPs for a network ("udp4", "tcp6" …).
func (g *relayGen) family(network string) (adv, bind net.IP, err error) {
	r := g.s.cfg.Relay
	switch network[len(network)-1] {
	case '4':
		adv, bind = net.ParseIP(r.IPv4), net.ParseIP(r.BindIPv4)
	case '6':
		adv, bind = net.ParseIP(r.IPv6), net.ParseIP(r.BindIPv6)
	}
	if adv == nil {
		return nil, nil, errNoFamily
	}
	if bind == nil {
		bind = adv
	}
	return adv, bind, nil
}

// admit applies drain and quotas for a new relay of userID.
func (g *relayGen) admit(userID string) (*userState, error) {
	if g.s.draining.Load() {
		g.s.m.refuse(refuseDraining)
		return nil, errDraining
	}
	u, err := g.s.quotas.acquire(userID)
	if err != nil {
		g.s.m.refuse(quotaReason(err))
		return nil, err
	}
	return u, nil
}

func quotaReason(err error) string {
	switch {
	case errors.Is(err, errQuotaUser):
		return refuseQuotaUser
	case errors.Is(err, errQuotaApp):
		return refuseQuotaApp
	default:
		return refuseQuotaTotal
	}
}

// ports yields the ports to try: the requested one, else 0 (kernel's
// choice), else random ports of the configured range.
func (g *relayGen) bindPorts(requested int, try func(port int) error) error {
	r := g.s.cfg.Relay
	if requested != 0 || r.MinPort == 0 {
		return try(requested)
	}
	span := r.MaxPort - r.MinPort + 1
	start := rand.IntN(span)
	var last error
	for i := 0; i < min(span, 64); i++ {
		if last = try(r.MinPort + (start+i*7919)%span); last == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: %v", errNoRelayPorts, last)
}

func (g *relayGen) AllocatePacketConn(cfg pionturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	adv, bind, err := g.family(cfg.Network)
	if err != nil {
		g.s.m.refuse(refuseFamily)
		return nil, nil, err
	}
	var conn net.PacketConn
	listen := func(port int) error {
		c, err := net.ListenPacket(cfg.Network, net.JoinHostPort(bind.String(), strconv.Itoa(port)))
		if err == nil {
			conn = c
		}
		return err
	}
	if cfg.UserID == "" {
		// pion probing for an even port (EVEN-PORT): a bare socket it closes.
		if err := g.bindPorts(cfg.RequestedPort, listen); err != nil {
			return nil, nil, err
		}
		return conn, withIP(conn.LocalAddr(), adv), nil
	}
	u, err := g.admit(cfg.UserID)
	if err != nil {
		return nil, nil, err
	}
	if err := g.bindPorts(cfg.RequestedPort, listen); err != nil {
		g.s.quotas.release(u)
		g.s.m.refuse(refuseRelayBind)
		return nil, nil, err
	}
	if uc, ok := conn.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(1 << 20)
		_ = uc.SetWriteBuffer(1 << 20)
	}
	rc := &relayPacketConn{PacketConn: conn, s: g.s, user: u}
	if uc, ok := conn.(*net.UDPConn); ok && g.poller != nil {
		if raw, err := uc.SyscallConn(); err == nil {
			rc.udp, rc.raw = uc, raw
			if rc.v6, err = socketIsIPv6(raw); err != nil {
				rc.udp, rc.raw = nil, nil
			}
		}
		if rc.raw != nil {
			rc.slow, rc.closed = make(chan *slowDatagram, slowQueueLen), make(chan struct{})
			if err := g.poller.add(rc); err != nil {
				g.s.log.Warn("relay socket not polled; pion reads it", "err", err)
				rc.udp, rc.raw = nil, nil
			}
		}
	}
	if bps := g.s.live.Load().Limits.AllocationKbps * 1000 / 8; bps > 0 {
		rc.up, rc.down = newBucket(bps), newBucket(bps)
	}
	g.s.m.relaysActiveUDP.Inc()
	advAddr := withIP(conn.LocalAddr(), adv)
	rc.key, _ = addrPortOf(advAddr)
	rc.key = unmapAP(rc.key)
	g.s.udpRelays.Store(rc.key, rc)
	return rc, advAddr, nil
}

func (g *relayGen) AllocateListener(cfg pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	if !g.tcpControl {
		g.s.m.refuse(refuseTCPOverUDP)
		return nil, nil, errTCPOverUDP
	}
	adv, bind, err := g.family(cfg.Network)
	if err != nil {
		g.s.m.refuse(refuseFamily)
		return nil, nil, err
	}
	u, err := g.admit(cfg.UserID)
	if err != nil {
		return nil, nil, err
	}
	var ln net.Listener
	lc := net.ListenConfig{Control: reuseAddrPort}
	if err := g.bindPorts(cfg.RequestedPort, func(port int) error {
		l, err := lc.Listen(context.Background(), cfg.Network, net.JoinHostPort(bind.String(), strconv.Itoa(port)))
		if err == nil {
			ln = l
		}
		return err
	}); err != nil {
		g.s.quotas.release(u)
		g.s.m.refuse(refuseRelayBind)
		return nil, nil, err
	}
	rl := &relayListener{Listener: ln, s: g.s, user: u}
	if bps := g.s.live.Load().Limits.AllocationKbps * 1000 / 8; bps > 0 {
		rl.up, rl.down = newBucket(bps), newBucket(bps)
	}
	g.s.m.relaysActiveTCP.Inc()
	g.s.tcpRelays.Store(ln.Addr().(*net.TCPAddr).Port, rl)
	return rl, withIP(ln.Addr(), adv), nil
}

// AllocateConn dials a peer for a Connect request (RFC 6062) from the
// relayed transport address.
func (g *relayGen) AllocateConn(cfg pionturn.AllocateConnConfig) (net.Conn, error) {
	ra, ok := cfg.RemoteAddr.(*net.TCPAddr)
	if !ok || !g.s.peers.Load().allowedIP(ra.IP) {
		g.s.m.refuse(refusePeer)
		return nil, errPeerDenied
	}
	_, bind, err := g.family(cfg.Network)
	if err != nil {
		return nil, err
	}
	local := &net.TCPAddr{IP: bind}
	if la, ok := cfg.LocalAddr.(*net.TCPAddr); ok {
		local.Port = la.Port
	}
	d := net.Dialer{LocalAddr: local, Control: reuseAddrPort, Timeout: 30 * time.Second}
	c, err := d.Dial(cfg.Network, ra.String())
	if err != nil {
		return nil, err
	}
	if rl, ok := g.s.tcpRelays.Load(local.Port); ok {
		return &relayTCPConn{Conn: c, l: rl.(*relayListener)}, nil
	}
	return c, nil
}

func withIP(a net.Addr, ip net.IP) net.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return &net.UDPAddr{IP: ip, Port: a.Port}
	case *net.TCPAddr:
		return &net.TCPAddr{IP: ip, Port: a.Port}
	}
	return a
}

// reuseAddrPort lets a TCP relay listen and dial from the same port.
func reuseAddrPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// relayPacketConn is an allocation's UDP relay socket: WriteTo carries client
// data to peers, ReadFrom peer data to the client.
type relayPacketConn struct {
	net.PacketConn
	s        *Server
	user     *userState
	up, down *rate.Limiter
	once     sync.Once
	key      netip.AddrPort // advertised relay address

	// Fast path (fastpath.go, poller.go), for UDP relays.
	udp      *net.UDPConn
	raw      syscall.RawConn // set while the relay socket is in the poller
	v6       bool            // an AF_INET6 socket (sendto addresses)
	poller   *relayPoller
	pollFD   int32
	ready    bool               // on the poller's ready list; the poller's goroutine only
	slow     chan *slowDatagram // peer datagrams for pion
	closed   chan struct{}
	chMu     sync.RWMutex
	ch       channels
	client   netip.AddrPort
	listener *authPacketConn
}

func (c *relayPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.up != nil || c.user.up != nil {
		if ok, why := allowN(c.up, c.user.up, len(p), time.Now()); !ok {
			c.s.dropped(why)
			return len(p), nil
		}
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil {
		c.s.m.bytesToPeer.Add(float64(n))
		c.s.m.packetsToPeer.Inc()
	}
	return n, err
}

func (c *relayPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.raw != nil {
		return c.readFromPoller(p)
	}
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		if c.down != nil || c.user.down != nil {
			if ok, why := allowN(c.down, c.user.down, n, time.Now()); !ok {
				c.s.dropped(why)
				continue
			}
		}
		c.s.m.bytesToClient.Add(float64(n))
		c.s.m.packetsToClient.Inc()
		return n, addr, nil
	}
}

func (c *relayPacketConn) Close() error {
	c.once.Do(func() {
		if c.raw != nil {
			// Out of the poller before the descriptor can be reused.
			c.poller.remove(c)
			close(c.closed)
		}
		c.s.udpRelays.CompareAndDelete(c.key, c)
		c.s.quotas.release(c.user)
		c.s.m.relaysActiveUDP.Dec()
	})
	return c.PacketConn.Close()
}

// relayListener is a TCP allocation's relayed transport address.
type relayListener struct {
	net.Listener
	s        *Server
	user     *userState
	up, down *rate.Limiter
	once     sync.Once
}

func (l *relayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &relayTCPConn{Conn: c, l: l}, nil
}

func (l *relayListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() {
		l.s.tcpRelays.CompareAndDelete(l.Listener.Addr().(*net.TCPAddr).Port, l)
		l.s.quotas.release(l.user)
		l.s.m.relaysActiveTCP.Dec()
	})
	return err
}

// relayTCPConn is a peer data connection accepted on a TCP relay: Read
// carries peer data to the client, Write client data to the peer. Over the
// limit it waits rather than drops.
type relayTCPConn struct {
	net.Conn
	l      *relayListener
	closed atomic.Bool
}

func (c *relayTCPConn) wait(alloc, user *rate.Limiter, n int) {
	for _, b := range []*rate.Limiter{alloc, user} {
		if b == nil {
			continue
		}
		for left := n; left > 0; {
			take := min(left, b.Burst())
			_ = b.WaitN(context.Background(), take)
			left -= take
		}
	}
}

func (c *relayTCPConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.wait(c.l.down, c.l.user.down, n)
		c.l.s.m.bytesToClient.Add(float64(n))
		c.l.s.m.packetsToClient.Inc()
	}
	return n, err
}

func (c *relayTCPConn) Write(p []byte) (int, error) {
	c.wait(c.l.up, c.l.user.up, len(p))
	n, err := c.Conn.Write(p)
	c.l.s.m.bytesToPeer.Add(float64(n))
	c.l.s.m.packetsToPeer.Inc()
	return n, err
}
