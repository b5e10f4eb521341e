package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/longlink/longlink/pkg/logging"
)

// ALPN is the TLS application protocol of Longlink tunnels.
const ALPN = "longlink-tunnel/1"

// QUICConfig tunes the QUIC transport.
type QUICConfig struct {
	// TLS must present this node's certificate and require and verify the
	// peer's against the cluster CA (pki.MutualTLS does both).
	TLS *tls.Config
	// KeepAlive is how often an idle connection sends a PING. Default 5s.
	KeepAlive time.Duration
	// IdleTimeout closes a connection after this long without packets. Default 15s.
	IdleTimeout time.Duration
	// MaxStreams is how many concurrent streams a peer may open (one per
	// client flow). Default 100000.
	MaxStreams int64
	// SocketBuffer is the UDP receive and send buffer to ask for. Default 7 MiB
	// (quic-go's recommendation).
	SocketBuffer int
	Logger       *slog.Logger
}

// QUIC is the QUIC transport.
type QUIC struct {
	cfg QUICConfig
}

// NewQUIC returns a QUIC transport. cfg.TLS must be set.
func NewQUIC(cfg QUICConfig) (*QUIC, error) {
	if cfg.TLS == nil || len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil {
		return nil, errors.New("quic transport: TLS with a node certificate is required")
	}
	if cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert || cfg.TLS.RootCAs == nil {
		return nil, errors.New("quic transport: TLS must require and verify peer certificates (use pki.MutualTLS)")
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 5 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 15 * time.Second
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 100000
	}
	if cfg.SocketBuffer <= 0 {
		cfg.SocketBuffer = 7 << 20
	}
	cfg.Logger = logging.OrDiscard(cfg.Logger)
	t := cfg.TLS.Clone()
	t.NextProtos = []string{ALPN}
	t.MinVersion = tls.VersionTLS13
	cfg.TLS = t
	return &QUIC{cfg: cfg}, nil
}

// Name implements Transport.
func (q *QUIC) Name() string { return "quic" }

func (q *QUIC) quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           5 * time.Second,
		MaxIdleTimeout:                 q.cfg.IdleTimeout,
		KeepAlivePeriod:                q.cfg.KeepAlive,
		MaxIncomingStreams:             q.cfg.MaxStreams,
		MaxIncomingUniStreams:          -1,
		EnableDatagrams:                true,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 2 << 20,
		MaxConnectionReceiveWindow:     64 << 20,
	}
}

// udpSocket binds a UDP socket with large buffers and warns once when the
// kernel caps them (net.core.rmem_max / wmem_max).
func (q *QUIC) udpSocket(addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	SizeSocketBuffers(c, q.cfg.SocketBuffer, q.cfg.Logger)
	return c, nil
}

// SizeSocketBuffers asks for want bytes of UDP receive and send buffer (past
// the sysctl caps when the process has CAP_NET_ADMIN) and logs a warning
// naming the sysctl to raise when the OS grants less.
func SizeSocketBuffers(c *net.UDPConn, want int, log *slog.Logger) {
	_ = c.SetReadBuffer(want)
	_ = c.SetWriteBuffer(want)
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	var rcv, snd int
	_ = rc.Control(func(fd uintptr) {
		rcv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		snd, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
		if rcv/2 < want || snd/2 < want {
			// Past net.core.rmem_max/wmem_max where the process may
			// (CAP_NET_ADMIN), as quic-go does for its own sockets.
			forceSocketBuffers(fd, want)
			rcv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
			snd, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
		}
	})
	// Linux reports twice the size set (bookkeeping overhead).
	if rcv/2 < want || snd/2 < want {
		log.Warn("UDP socket buffers capped by the OS; throughput on long fat paths will suffer. Raise net.core.rmem_max and net.core.wmem_max (see https://github.com/quic-go/quic-go/wiki/UDP-Buffer-Sizes)",
			"wanted_bytes", want, "receive_bytes", rcv/2, "send_bytes", snd/2, "local", c.LocalAddr().String())
	}
}

// Listen implements Transport.
func (q *QUIC) Listen(addr string) (Listener, error) {
	c, err := q.udpSocket(addr)
	if err != nil {
		return nil, fmt.Errorf("quic listen %s: %w", addr, err)
	}
	tr := &quic.Transport{Conn: c}
	l, err := tr.Listen(q.cfg.TLS, q.quicConfig())
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("quic listen %s: %w", addr, err)
	}
	return &quicListener{l: l, tr: tr, c: c}, nil
}

// Dial implements Transport. Each dialed peer gets its own socket so that a
// dead peer never shares fate (or buffers) with the others.
func (q *QUIC) Dial(ctx context.Context, addr string) (Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("quic dial %s: %w", addr, err)
	}
	local := ":0"
	if ua.IP.IsLoopback() {
		local = "127.0.0.1:0"
		if ua.IP.To4() == nil {
			local = "[::1]:0"
		}
	}
	c, err := q.udpSocket(local)
	if err != nil {
		return nil, fmt.Errorf("quic dial %s: %w", addr, err)
	}
	tr := &quic.Transport{Conn: c}
	tc := q.cfg.TLS.Clone()
	if tc.ServerName == "" {
		tc.ServerName = ua.IP.String()
	}
	conn, err := tr.Dial(ctx, ua, tc, q.quicConfig())
	if err != nil {
		_ = tr.Close()
		_ = c.Close()
		return nil, fmt.Errorf("quic dial %s: %w", addr, err)
	}
	return &quicConn{c: conn, onClose: func() { _ = tr.Close(); _ = c.Close() }}, nil
}

type quicListener struct {
	l  *quic.Listener
	tr *quic.Transport
	c  *net.UDPConn
}

func (l *quicListener) Accept(ctx context.Context) (Conn, error) {
	c, err := l.l.Accept(ctx)
	if err != nil {
		if errors.Is(err, quic.ErrServerClosed) {
			return nil, ErrClosed
		}
		return nil, err
	}
	return &quicConn{c: c}, nil
}

func (l *quicListener) Addr() net.Addr { return l.l.Addr() }

func (l *quicListener) Close() error {
	err := l.l.Close()
	_ = l.tr.Close()
	_ = l.c.Close()
	return err
}

type quicConn struct {
	c       *quic.Conn
	onClose func()
}

func (c *quicConn) OpenStream(ctx context.Context) (Stream, error) {
	s, err := c.c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return &quicStream{s}, nil
}

func (c *quicConn) AcceptStream(ctx context.Context) (Stream, error) {
	s, err := c.c.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return &quicStream{s}, nil
}

func (c *quicConn) SendDatagram(b []byte) error {
	if len(b) > c.MaxDatagramSize() {
		return ErrDatagramTooLarge
	}
	err := c.c.SendDatagram(b)
	var tooLarge *quic.DatagramTooLargeError
	if errors.As(err, &tooLarge) {
		return ErrDatagramTooLarge
	}
	return err
}

func (c *quicConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	return c.c.ReceiveDatagram(ctx)
}

// MaxDatagramSize is conservative: a 1280-byte packet minus QUIC overhead.
func (c *quicConn) MaxDatagramSize() int  { return 1150 }
func (c *quicConn) Done() <-chan struct{} { return c.c.Context().Done() }
func (c *quicConn) LocalAddr() net.Addr   { return c.c.LocalAddr() }
func (c *quicConn) RemoteAddr() net.Addr  { return c.c.RemoteAddr() }

// Stats implements StatsConn from quic-go's connection statistics. quic-go
// does not expose bytes in flight outside its qlog tracer, which would
// build an event per packet; retransmissions are the frames of the lost
// packets (PacketsLost) and are not counted apart.
func (c *quicConn) Stats() ConnStats {
	s := c.c.ConnectionStats()
	return ConnStats{
		Transport:        "quic",
		Has:              HasMinRTT | HasCongestionWindow | HasPacketsLost,
		SmoothedRTT:      s.SmoothedRTT,
		RTTVar:           s.MeanDeviation,
		MinRTT:           s.MinRTT,
		CongestionWindow: s.CongestionWindow,
		PacketsSent:      s.PacketsSent,
		PacketsReceived:  s.PacketsReceived,
		PacketsLost:      s.PacketsLost,
		BytesSent:        s.BytesSent,
		BytesReceived:    s.BytesReceived,
	}
}

func (c *quicConn) Close() error {
	err := c.c.CloseWithError(0, "closed")
	if c.onClose != nil {
		c.onClose()
	}
	return err
}

type quicStream struct{ s *quic.Stream }

func (s *quicStream) Read(p []byte) (int, error)  { return s.s.Read(p) }
func (s *quicStream) Write(p []byte) (int, error) { return s.s.Write(p) }

// Close ends both directions: FIN for writing, STOP_SENDING for reading.
func (s *quicStream) Close() error {
	s.s.CancelRead(0)
	return s.s.Close()
}
