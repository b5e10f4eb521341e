package turn

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
	"golang.org/x/sys/unix"

	"github.com/longlink/longlink/pkg/turncred"
)

// Several secrets are live at once, but pion's AuthHandler must return one
// key without seeing the message. So the listener sockets are wrapped: before
// pion handles an authenticated STUN request, the wrapper tries the key of
// every live secret against the request's MESSAGE-INTEGRITY and records the
// one that matches under the client's address; the AuthHandler, called next
// on the same goroutine for the same packet, takes it. Data packets
// (ChannelData, Send indications) pass through untouched.

// authBook holds the key that matched the request being handled, per client
// transport address.
type authBook struct {
	mu   sync.Mutex
	keys map[string]matchedKey
}

type matchedKey struct {
	key      []byte
	secretID string
}

func addrKey(a net.Addr) string { return a.Network() + "/" + a.String() }

func (b *authBook) put(k string, m matchedKey) {
	b.mu.Lock()
	b.keys[k] = m
	b.mu.Unlock()
}

func (b *authBook) take(k string) (matchedKey, bool) {
	b.mu.Lock()
	m, ok := b.keys[k]
	delete(b.keys, k)
	b.mu.Unlock()
	return m, ok
}

func (b *authBook) forget(k string) {
	b.mu.Lock()
	delete(b.keys, k)
	b.mu.Unlock()
}

// isSTUNRequest reports whether b starts a STUN message of class request.
func isSTUNRequest(b []byte) bool {
	if len(b) < 20 || b[0]&0xC0 != 0 {
		return false
	}
	t := binary.BigEndian.Uint16(b[0:2])
	return t&0x0110 == 0 // both class bits clear: request
}

// inspect checks an authenticated request against every live secret and
// records the matching key. It returns the book key it stored under, or "".
func (s *Server) inspect(b []byte, from net.Addr) string {
	if !isSTUNRequest(b) {
		return ""
	}
	msg := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := msg.Decode(); err != nil || !msg.Contains(stun.AttrMessageIntegrity) {
		return ""
	}
	var user stun.Username
	var realm stun.Realm
	if user.GetFrom(msg) != nil || realm.GetFrom(msg) != nil {
		return ""
	}
	name, rlm := user.String(), realm.String()
	if rlm != s.cfg.Realm {
		return ""
	}
	if _, err := turncred.Check(name, s.now()); err != nil {
		return "" // the AuthHandler reports why
	}
	for _, c := range s.keyring.Candidates(name) {
		key := pionturn.GenerateAuthKey(name, rlm, c.Password)
		if stun.MessageIntegrity(key).Check(msg) == nil {
			k := addrKey(from)
			s.auth.put(k, matchedKey{key: key, secretID: c.SecretID})
			return k
		}
	}
	return ""
}

// authHandler is pion's AuthHandler: the username must parse, be unexpired
// and have matched a live secret in inspect.
func (s *Server) authHandler(ra *pionturn.RequestAttributes) (string, []byte, bool) {
	if ra.Realm != s.cfg.Realm {
		s.m.refuse(refuseRealm)
		return "", nil, false
	}
	u, err := turncred.Check(ra.Username, s.now())
	switch {
	case errors.Is(err, turncred.ErrExpired):
		s.m.refuse(refuseExpired)
		return "", nil, false
	case err != nil:
		s.m.refuse(refuseMalformed)
		return "", nil, false
	}
	mk, ok := s.auth.take(addrKey(ra.SrcAddr))
	if !ok {
		s.m.refuse(refuseBadCredential)
		return "", nil, false
	}
	s.m.credentialsAccepted.WithLabelValues(mk.secretID).Inc()
	return u.User(), mk.key, true
}

// authPacketConn wraps a UDP listener socket.
type authPacketConn struct {
	net.PacketConn
	udp   *net.UDPConn // set for UDP sockets: the fast path
	local netip.AddrPort
	v6    bool // an AF_INET6 socket (sendmmsg addresses)
	raw   syscall.RawConn
	s     *Server
	last  string // book entry of the previous packet, dropped on the next read

	// Set while a relay poller reads the socket (poller.go).
	poller    *relayPoller
	slow      chan *slowDatagram // client datagrams for pion
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *authPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.last != "" {
		c.s.auth.forget(c.last)
		c.last = ""
	}
	if c.poller != nil {
		select {
		case d := <-c.slow:
			n := copy(p, d.b)
			addr := net.UDPAddrFromAddrPort(d.from)
			if n >= 20 && p[0]&0xC0 == 0 {
				c.last = c.s.inspect(p[:n], addr)
			}
			return n, addr, nil
		case <-c.closed:
			return 0, nil, net.ErrClosed
		}
	}
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil && n >= 20 && p[0]&0xC0 == 0 {
		c.last = c.s.inspect(p[:n], addr)
	}
	return n, addr, err
}

func (c *authPacketConn) Close() error {
	if c.poller != nil {
		c.closeOnce.Do(func() {
			// Out of the poller before the descriptor can be reused.
			_ = c.poller.ctl(unix.EPOLL_CTL_DEL, c.poller.lnFD)
			close(c.closed)
		})
	}
	return c.PacketConn.Close()
}

// authListener wraps a TCP or TLS listener: it caps open connections, per
// listener and per client address, and returns connections that frame the
// stream so each request can be inspected before pion sees it.
type authListener struct {
	net.Listener
	s      *Server
	slots  chan struct{}
	perIP  *clientAddrCounts // shared by every TCP and TLS listener
	mu     sync.Mutex
	conns  map[*authStreamConn]struct{}
	closed atomic.Bool
}

func newAuthListener(s *Server, l net.Listener, max int, perIP *clientAddrCounts) *authListener {
	return &authListener{Listener: l, s: s, slots: make(chan struct{}, max), perIP: perIP, conns: map[*authStreamConn]struct{}{}}
}

func (l *authListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
		default:
			l.s.m.refuse(refuseTCPConns)
			_ = c.Close()
			continue
		}
		key := clientAddrKey(c.RemoteAddr())
		if !l.perIP.acquire(key) {
			<-l.slots
			l.s.m.refuse(refuseTCPConnsPerIP)
			_ = c.Close()
			continue
		}
		// Until its first authenticated request, the connection (its TLS
		// handshake included) lives by this deadline alone: unauthenticated
		// connections cannot hold descriptors for the idle timeout.
		_ = c.SetDeadline(time.Now().Add(l.s.live.Load().TCPAuthTimeout.D()))
		ac := &authStreamConn{Conn: c, l: l, key: key, br: bufio.NewReaderSize(c, 4096)}
		if tc, ok := c.(*tls.Conn); ok {
			ac.tls = tc
		}
		l.mu.Lock()
		l.conns[ac] = struct{}{}
		l.mu.Unlock()
		l.s.m.tcpConnsActive.Inc()
		return ac, nil
	}
}

// closeAll closes every accepted connection: pion does not track them.
func (l *authListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.Conn.Close()
	}
}

// authStreamConn hands pion one TURN frame per Read, inspecting requests.
// After an authenticated ConnectionBind request (RFC 6062) the connection
// carries raw peer data, so it switches to passthrough.
type authStreamConn struct {
	net.Conn
	l         *authListener
	key       netip.Addr // what the connection is counted under in l.perIP
	tls       *tls.Conn
	authed    bool // a request matched a live secret: the idle timeout applies
	br        *bufio.Reader
	frame     []byte // rest of the current frame not yet returned
	buf       []byte
	last      string
	raw       bool
	started   bool
	deadline  time.Time
	closeOnce sync.Once
	readMu    sync.Mutex
}

const maxTURNFrame = 4 + 65535 + 3

func (c *authStreamConn) Read(p []byte) (int, error) {
	// After a ConnectionBind, pion reads the raw stream from a copy
	// goroutine and, once that ends, from its read loop again.
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if len(c.frame) > 0 {
		n := copy(p, c.frame)
		c.frame = c.frame[n:]
		return n, nil
	}
	if c.raw {
		return c.br.Read(p)
	}
	n, err := c.readFrame(p)
	if err != nil && !c.authed && errors.Is(err, os.ErrDeadlineExceeded) {
		c.l.s.m.refuse(refuseTCPAuth)
	}
	return n, err
}

func (c *authStreamConn) readFrame(p []byte) (int, error) {
	if !c.started {
		c.started = true
		if c.tls != nil {
			// Bounded by the deadline Accept set.
			if err := c.tls.HandshakeContext(context.Background()); err != nil {
				return 0, fmt.Errorf("turn: tls handshake: %w", err)
			}
		}
	}
	if c.last != "" {
		c.l.s.auth.forget(c.last)
		c.last = ""
	}
	// Refresh the idle deadline at most once a second.
	if now := time.Now(); c.authed && now.After(c.deadline.Add(-c.l.s.live.Load().TCPIdleTimeout.D()+time.Second)) {
		c.deadline = now.Add(c.l.s.live.Load().TCPIdleTimeout.D())
		_ = c.Conn.SetReadDeadline(c.deadline)
	}
	hdr, err := c.br.Peek(4)
	if err != nil {
		return 0, err
	}
	var size int
	switch {
	case hdr[0]&0xC0 == 0: // STUN
		size = 20 + int(binary.BigEndian.Uint16(hdr[2:4]))
	case hdr[0]&0xC0 == 0x40: // ChannelData, padded to 4 over TCP
		size = 4 + (int(binary.BigEndian.Uint16(hdr[2:4]))+3)&^3
	default:
		return 0, errors.New("turn: stream is not STUN or ChannelData")
	}
	if cap(c.buf) < size {
		c.buf = make([]byte, size, max(size, 2048))
	}
	f := c.buf[:size]
	if _, err := io.ReadFull(c.br, f); err != nil {
		return 0, err
	}
	if f[0]&0xC0 == 0 {
		c.last = c.l.s.inspect(f, c.Conn.RemoteAddr())
		if c.last != "" && !c.authed {
			c.authed = true
			_ = c.Conn.SetWriteDeadline(time.Time{})
			c.deadline = time.Now().Add(c.l.s.live.Load().TCPIdleTimeout.D())
			_ = c.Conn.SetReadDeadline(c.deadline)
		}
		if c.authed && isSTUNRequest(f) && stun.NewType(stun.MethodConnectionBind, stun.ClassRequest).Value() == binary.BigEndian.Uint16(f[0:2]) {
			// Whatever follows is the peer's byte stream; the data
			// connection has no idle timeout of its own.
			c.raw = true
			_ = c.Conn.SetReadDeadline(time.Time{})
		}
	}
	n := copy(p, f)
	c.frame = f[n:]
	return n, nil
}

func (c *authStreamConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.last != "" {
			c.l.s.auth.forget(c.last)
		}
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		<-c.l.slots
		c.l.perIP.release(c.key)
		c.l.s.m.tcpConnsActive.Dec()
	})
	return err
}
