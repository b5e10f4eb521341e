// Package linkquic carries Link over QUIC: one QUIC connection holds one
// bidirectional stream, and that stream carries the same bytes as a Link TCP
// connection (the Noise handshake, then sealed frames; core/link/LINK.md
// section 8). The server is authenticated by the Noise handshake with its
// static Link key, as over TCP: QUIC's TLS 1.3 is only the transport's
// encryption, with a certificate the client does not check, so there is one
// authentication path whatever the transport.
//
// On a lossy access leg a message's p99 is set by the lone lost packet at
// the tail: with no later packet to reveal the loss, QUIC resends it only
// after a probe timeout (RFC 9002), which includes the peer's 25 ms ack
// delay and is no faster than a tuned TCP's recovery (edges run a 20 ms
// minimum retransmission timeout, and the SDK nudges); quic-go offers no
// knob for it. Both ends therefore send small packets twice
// (Options.DuplicateMax): a message is late only when both copies are lost.
//
// Reconnects resume the TLS session and send the Noise hello as 0-RTT data
// (the client's session cache), saving the QUIC handshake's round trip. A
// replayed hello is harmless: it only makes the server answer with a fresh
// ephemeral key, and the replayer cannot finish the handshake.
package linkquic

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/longlink/longlink/pkg/pki"
)

// ALPN is the TLS application protocol of Link over QUIC.
const ALPN = "longlink-link/1"

// Scheme prefixes a Link over QUIC address in the SDK's candidate lists and
// in the LBS client: "quic://host:port".
const Scheme = "quic://"

// idleTimeout is long: Link's own heartbeats (30 s by default) decide when a
// connection is dead, as over TCP.
const idleTimeout = 3 * time.Minute

// closeGrace is how long a closed connection waits for the peer to read
// what was written last (a refusal, a kick) before the QUIC connection is
// torn down.
const closeGrace = 2 * time.Second

func quicConfig() *quic.Config {
	return &quic.Config{
		MaxIdleTimeout:        idleTimeout,
		HandshakeIdleTimeout:  10 * time.Second,
		MaxIncomingStreams:    1,
		MaxIncomingUniStreams: -1,
		Allow0RTT:             true,
	}
}

// Listener accepts Link over QUIC connections. It satisfies net.Listener:
// each accepted net.Conn is the connection's stream.
type Listener struct {
	udp      *net.UDPConn
	conn     *duplicatingConn
	ln       *quic.EarlyListener
	accepted chan net.Conn
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	// The socket closes after the listener and the last accepted
	// connection.
	mu     sync.Mutex
	live   int
	closed bool
}

// Listen listens on the UDP address addr. tlsConf may be nil: the listener
// then uses a self-signed certificate made at start (clients do not check
// it; the Noise handshake authenticates the server).
func Listen(addr string, tlsConf *tls.Config, opts Options) (*Listener, error) {
	if tlsConf == nil {
		ca, err := pki.NewCA("longlink-link-quic")
		if err != nil {
			return nil, err
		}
		cert, err := ca.Issue("longlink-link-quic")
		if err != nil {
			return nil, err
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos = []string{ALPN}
	tlsConf.MinVersion = tls.VersionTLS13
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	l := &Listener{udp: udp, conn: newDuplicatingConn(udp, opts.duplicateMax(), newPeerSet(), new(copyCounter)), accepted: make(chan net.Conn)}
	// A single-use transport, as quic.ListenAddrEarly makes: closing the
	// listener leaves the accepted connections running.
	if l.ln, err = quic.ListenEarly(l.conn, tlsConf, quicConfig()); err != nil {
		_ = udp.Close()
		return nil, err
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.loop()
	return l, nil
}

func (l *Listener) loop() {
	defer l.wg.Done()
	for {
		qc, err := l.ln.Accept(l.ctx)
		if err != nil {
			return
		}
		l.mu.Lock()
		l.live++
		l.mu.Unlock()
		context.AfterFunc(qc.Context(), l.connEnded)
		l.duplicateAfterHandshake(qc)
		// The stream comes with the client's first bytes; a client that
		// opens none does not hold up the others.
		go func() {
			ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
			st, err := qc.AcceptStream(ctx)
			cancel()
			if err != nil {
				_ = qc.CloseWithError(0, "no stream")
				return
			}
			select {
			case l.accepted <- newConn(qc, st):
			case <-l.ctx.Done():
				_ = qc.CloseWithError(0, "shutting down")
			}
		}()
	}
}

// duplicateAfterHandshake lets the connection's peer get copies of small
// packets once the handshake has validated its address, until the
// connection ends.
func (l *Listener) duplicateAfterHandshake(qc *quic.Conn) {
	if l.conn.max == 0 {
		return
	}
	peer := addrPort(qc.RemoteAddr())
	go func() {
		select {
		case <-qc.HandshakeComplete():
		case <-qc.Context().Done():
			return
		}
		l.conn.peers.add(peer)
		context.AfterFunc(qc.Context(), func() { l.conn.peers.remove(peer) })
	}()
}

func addrPort(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		return ua.AddrPort()
	}
	return netip.AddrPort{}
}

// Duplicated counts the copies this listener sent (Options.DuplicateMax).
func (l *Listener) Duplicated() DuplicateStats { return l.conn.copies.stats() }

// Accept returns the next connection's stream as a net.Conn.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections accepted already go on.
func (l *Listener) Close() error {
	l.cancel()
	err := l.ln.Close()
	l.wg.Wait()
	l.mu.Lock()
	l.closed = true
	idle := l.live == 0
	l.mu.Unlock()
	if idle {
		_ = l.udp.Close()
	}
	return err
}

func (l *Listener) connEnded() {
	l.mu.Lock()
	l.live--
	last := l.closed && l.live == 0
	l.mu.Unlock()
	if last {
		_ = l.udp.Close()
	}
}

// Addr is the bound UDP address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Dialer opens Link over QUIC connections and keeps the TLS session tickets
// that make reconnects 0-RTT. Safe for concurrent use.
type Dialer struct {
	sessions tls.ClientSessionCache
	opts     Options
	copies   *copyCounter // shared by the dialers of one session cache
}

// NewDialer returns a dialer with its own session cache.
func NewDialer(opts Options) *Dialer {
	return &Dialer{sessions: tls.NewLRUClientSessionCache(64), opts: opts, copies: new(copyCounter)}
}

// WithOptions returns a dialer with other options that shares d's session
// cache (and its counts).
func (d *Dialer) WithOptions(opts Options) *Dialer {
	o := *d
	o.opts = opts
	return &o
}

// Duplicated counts the copies sent by the connections of this dialer's
// session cache (Options.DuplicateMax).
func (d *Dialer) Duplicated() DuplicateStats { return d.copies.stats() }

// Dial opens a QUIC connection to addr (host:port, without the scheme) and
// its stream. With a session ticket from an earlier connection to addr the
// stream's first bytes go as 0-RTT data; when the server refuses 0-RTT the
// connection is made again without it.
func (d *Dialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{
		// Not checked: the Noise handshake over the stream authenticates
		// the server with its static Link key (package comment).
		InsecureSkipVerify: true,
		NextProtos:         []string{ALPN},
		MinVersion:         tls.VersionTLS13,
		ServerName:         host,
		ClientSessionCache: addrSessions{d.sessions, addr},
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("quic %s: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("quic %s: %w", addr, err)
	}
	// One socket and transport per connection, as quic.DialAddrEarly makes;
	// both end with the connection.
	dc := newDuplicatingConn(udp, d.opts.duplicateMax(), nil, d.copies)
	tr := &quic.Transport{Conn: dc}
	qc, err := tr.DialEarly(ctx, ua, tlsConf, quicConfig())
	if err != nil {
		_ = tr.Close()
		_ = udp.Close()
		return nil, fmt.Errorf("quic %s: %w", addr, err)
	}
	context.AfterFunc(qc.Context(), func() {
		_ = tr.Close()
		_ = udp.Close()
	})
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		_ = qc.CloseWithError(0, "")
		return nil, fmt.Errorf("quic %s: %w", addr, err)
	}
	return newConn(qc, st), nil
}

// addrSessions keeps a dialer's TLS sessions by the address dialed
// (host:port). crypto/tls keys them by server name, the host alone, so two
// entry points on one IP (two edges, two ports) would present each other's
// tickets: the server then refuses the 0-RTT data and the client dials
// again with a full handshake, two round trips lost on every alternation.
type addrSessions struct {
	tls.ClientSessionCache
	addr string
}

func (a addrSessions) Get(string) (*tls.ClientSessionState, bool) {
	return a.ClientSessionCache.Get(a.addr)
}

func (a addrSessions) Put(_ string, cs *tls.ClientSessionState) { a.ClientSessionCache.Put(a.addr, cs) }

// Is0RTTRejected tells whether err says the server refused 0-RTT data (the
// caller dials again: the next attempt does a full handshake).
func Is0RTTRejected(err error) bool { return errors.Is(err, quic.Err0RTTRejected) }

// Conn is a Link over QUIC connection: its stream as a net.Conn. Closing it
// ends the stream, then the QUIC connection once the peer has closed it or
// after a short grace.
type Conn struct {
	qc       *quic.Conn
	st       *quic.Stream
	once     sync.Once
	peerDone atomic.Bool // the peer ended its side of the stream
}

func newConn(qc *quic.Conn, st *quic.Stream) *Conn { return &Conn{qc: qc, st: st} }

func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.st.Read(p)
	if err == io.EOF {
		c.peerDone.Store(true)
	}
	return n, err
}

func (c *Conn) Write(p []byte) (int, error) { return c.st.Write(p) }

// Close sends the stream's end and tears the QUIC connection down: at once
// when the peer has ended its side already, else when the peer closes the
// connection or after closeGrace (so that what was written last, a refusal
// or a kick, reaches it).
func (c *Conn) Close() error {
	c.once.Do(func() {
		_ = c.st.Close()
		c.st.CancelRead(0)
		if c.peerDone.Load() {
			_ = c.qc.CloseWithError(0, "")
			return
		}
		go func() {
			t := time.NewTimer(closeGrace)
			defer t.Stop()
			select {
			case <-c.qc.Context().Done():
			case <-t.C:
			}
			_ = c.qc.CloseWithError(0, "")
		}()
	})
	return nil
}

// Abort tears the QUIC connection down at once (a race's loser).
func (c *Conn) Abort() error {
	c.once.Do(func() {})
	return c.qc.CloseWithError(0, "")
}

func (c *Conn) LocalAddr() net.Addr                { return c.qc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.qc.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.st.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.st.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.st.SetWriteDeadline(t) }

// RTT is the connection's smoothed round trip (0 before a sample).
func (c *Conn) RTT() time.Duration { return c.qc.ConnectionStats().SmoothedRTT }

// Used0RTT tells whether the connection's first bytes went as 0-RTT data.
func (c *Conn) Used0RTT() bool { return c.qc.ConnectionState().Used0RTT }
