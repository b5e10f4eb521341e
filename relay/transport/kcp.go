package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"

	"github.com/longlink/longlink/pkg/logging"
)

// KCPProfile is a named set of KCP tuning knobs.
type KCPProfile struct {
	NoDelay    int  // 1 = nodelay mode (fast retransmit timers)
	Interval   int  // internal update interval, ms
	Resend     int  // fast resend after this many duplicate ACKs (0 = off)
	NoCongest  int  // 1 = no congestion window
	SndWnd     int  // send window, packets
	RcvWnd     int  // receive window, packets
	MTU        int  // KCP packet size before the packet layer's overhead
	AckNoDelay bool // ACK at once instead of at the next update
	// FrameSize is smux's largest frame: larger frames cost less per byte,
	// smaller ones let other streams' frames in sooner. Default 32768.
	FrameSize int
}

// KCPProfiles are the profiles a config may name.
var KCPProfiles = map[string]KCPProfile{
	// fast: lowest latency for chatty IM traffic on lossy long paths.
	"fast": {NoDelay: 1, Interval: 10, Resend: 2, NoCongest: 1, SndWnd: 1024, RcvWnd: 1024, MTU: 1350, AckNoDelay: true},
	// normal: TCP-like timers, gentler on shared links.
	"normal": {NoDelay: 0, Interval: 30, Resend: 2, NoCongest: 1, SndWnd: 512, RcvWnd: 512, MTU: 1350},
	// bulk: throughput (file transfer, many flows): ACKs batched per interval.
	// Windows stay at 1024: kcp-go drops output beyond its 2048-packet queue.
	"bulk": {NoDelay: 1, Interval: 10, Resend: 2, NoCongest: 1, SndWnd: 1024, RcvWnd: 1024, MTU: 1400, AckNoDelay: false, FrameSize: 65535},
	// backbone: clean, fat links (data-centre backbone, loopback). Like bulk,
	// but with kcp-go's normal-mode RTO floor (100 ms instead of 30 ms):
	// when a busy host delays ACKs by tens of milliseconds, a 30 ms floor
	// retransmits whole windows that were never lost and the stream
	// collapses; real loss is still repaired at once by fast resend.
	"backbone": {NoDelay: 0, Interval: 10, Resend: 2, NoCongest: 1, SndWnd: 1024, RcvWnd: 1024, MTU: 1400, AckNoDelay: false, FrameSize: 65535},
}

// KCPConfig tunes the KCP transport.
type KCPConfig struct {
	// ClusterKey authenticates and encrypts every packet (at least 16 bytes).
	ClusterKey []byte
	// Profile names one of KCPProfiles. Default "fast".
	Profile string
	// DataShards and ParityShards configure Reed-Solomon FEC; 0/0 disables it.
	DataShards, ParityShards int
	// KeepAlive is smux's keep-alive interval. Default 2s; a peer silent for
	// 5 intervals is declared dead.
	KeepAlive time.Duration
	// SocketBuffer is the UDP buffer size to ask for. Default 7 MiB.
	SocketBuffer int
	// HandshakeTimeout bounds Dial. Default 5s.
	HandshakeTimeout time.Duration
	Logger           *slog.Logger
	// Stats counts packets the packet layer rejected; optional.
	Stats *SealStats
}

// KCP is the KCP transport.
type KCP struct {
	cfg     KCPConfig
	keys    *sealKeys
	profile KCPProfile
}

// NewKCP returns a KCP transport.
func NewKCP(cfg KCPConfig) (*KCP, error) {
	keys, err := deriveKeys(cfg.ClusterKey)
	if err != nil {
		return nil, err
	}
	if cfg.Profile == "" {
		cfg.Profile = "fast"
	}
	prof, ok := KCPProfiles[cfg.Profile]
	if !ok {
		return nil, fmt.Errorf("kcp transport: unknown profile %q", cfg.Profile)
	}
	if cfg.DataShards < 0 || cfg.ParityShards < 0 || (cfg.DataShards == 0) != (cfg.ParityShards == 0) {
		return nil, errors.New("kcp transport: data_shards and parity_shards must both be 0 or both positive")
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 2 * time.Second
	}
	if cfg.SocketBuffer <= 0 {
		cfg.SocketBuffer = 7 << 20
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	cfg.Logger = logging.OrDiscard(cfg.Logger)
	if cfg.Stats == nil {
		cfg.Stats = &SealStats{}
	}
	return &KCP{cfg: cfg, keys: keys, profile: prof}, nil
}

// Name implements Transport.
func (k *KCP) Name() string { return "kcp" }

func (k *KCP) tune(s *kcp.UDPSession) {
	p := k.profile
	s.SetStreamMode(true)
	s.SetWriteDelay(false)
	s.SetNoDelay(p.NoDelay, p.Interval, p.Resend, p.NoCongest)
	s.SetWindowSize(p.SndWnd, p.RcvWnd)
	s.SetMtu(p.MTU)
	s.SetACKNoDelay(p.AckNoDelay)
}

func (k *KCP) smuxConfig() *smux.Config {
	c := smux.DefaultConfig()
	c.Version = 2
	c.KeepAliveInterval = k.cfg.KeepAlive
	c.KeepAliveTimeout = 5 * k.cfg.KeepAlive
	c.MaxFrameSize = 32768
	if k.profile.FrameSize > 0 {
		c.MaxFrameSize = k.profile.FrameSize
	}
	c.MaxReceiveBuffer = 16 << 20
	c.MaxStreamBuffer = 4 << 20
	return c
}

// Listen implements Transport.
func (k *KCP) Listen(addr string) (Listener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("kcp listen %s: %w", addr, err)
	}
	uc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("kcp listen %s: %w", addr, err)
	}
	SizeSocketBuffers(uc, k.cfg.SocketBuffer, k.cfg.Logger)
	ss := newServerSeal(uc, k.keys, k.cfg.Stats)
	l, err := kcp.ServeConn(nil, k.cfg.DataShards, k.cfg.ParityShards, ss)
	if err != nil {
		_ = ss.Close()
		return nil, fmt.Errorf("kcp listen %s: %w", addr, err)
	}
	kl := &kcpListener{k: k, l: l, uc: uc, ss: ss, conns: make(chan *kcpConn, 16), done: make(chan struct{})}
	go kl.loop()
	return kl, nil
}

// Dial implements Transport.
func (k *KCP) Dial(ctx context.Context, addr string) (Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("kcp dial %s: %w", addr, err)
	}
	local := &net.UDPAddr{}
	if ua.IP.IsLoopback() {
		local.IP = ua.IP
	}
	uc, err := net.ListenUDP("udp", local)
	if err != nil {
		return nil, fmt.Errorf("kcp dial %s: %w", addr, err)
	}
	SizeSocketBuffers(uc, k.cfg.SocketBuffer, k.cfg.Logger)
	deadline := time.Now().Add(k.cfg.HandshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	sc, err := dialSeal(ctx, deadline, uc, ua, k.keys, k.cfg.Stats)
	if err != nil {
		_ = uc.Close()
		return nil, fmt.Errorf("kcp dial %s: %w", addr, err)
	}
	sess, err := kcp.NewConn2(ua, nil, k.cfg.DataShards, k.cfg.ParityShards, sc)
	if err != nil {
		_ = sc.Close()
		return nil, fmt.Errorf("kcp dial %s: %w", addr, err)
	}
	k.tune(sess)
	mux, err := smux.Client(sess, k.smuxConfig())
	if err != nil {
		_ = sess.Close()
		_ = sc.Close()
		return nil, fmt.Errorf("kcp dial %s: %w", addr, err)
	}
	c := newKCPConn(mux, sess, func() *session { return sc.sess }, func() { _ = sc.Close() })
	// The first stream is the datagram channel; the listener accepts it first.
	ds, err := mux.OpenStream()
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("kcp dial %s: datagram stream: %w", addr, err)
	}
	c.startDatagrams(ds)
	return c, nil
}

type kcpListener struct {
	k     *KCP
	l     *kcp.Listener
	uc    *net.UDPConn
	ss    *serverSealConn
	conns chan *kcpConn
	once  sync.Once
	done  chan struct{}
}

func (l *kcpListener) loop() {
	for {
		sess, err := l.l.AcceptKCP()
		if err != nil {
			return
		}
		l.k.tune(sess)
		go l.setup(sess)
	}
}

func (l *kcpListener) setup(sess *kcp.UDPSession) {
	mux, err := smux.Server(sess, l.k.smuxConfig())
	if err != nil {
		_ = sess.Close()
		return
	}
	c := newKCPConn(mux, sess, func() *session { return l.ss.session(sess.RemoteAddr()) }, nil)
	// Wait for the dialer's datagram stream, bounded so a half-open peer
	// cannot pin the goroutine.
	_ = mux.SetDeadline(time.Now().Add(l.k.cfg.HandshakeTimeout))
	ds, err := mux.AcceptStream()
	if err != nil {
		_ = c.Close()
		return
	}
	_ = mux.SetDeadline(time.Time{})
	c.startDatagrams(ds)
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *kcpListener) Accept(ctx context.Context) (Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *kcpListener) Addr() net.Addr { return l.uc.LocalAddr() }

func (l *kcpListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		_ = l.l.Close()
		_ = l.ss.Close()
	})
	return nil
}

// kcpConn multiplexes streams with smux. With FEC on, datagrams are KCP
// out-of-band packets (unreliable, unordered, like UDP). Without FEC, kcp-go
// has no OOB: they ride a dedicated smux stream as length-prefixed frames,
// delivered reliably and in order (see TUNNEL.md).
type kcpConn struct {
	mux  *smux.Session
	sess *kcp.UDPSession
	// seal is the packet-layer session under sess (for Stats): the
	// listener's table can replace it when the peer shakes hands again.
	seal    func() *session
	onClose func()
	oob     bool

	accepted chan *smux.Stream
	dgrams   chan []byte
	dstream  *smux.Stream
	wmu      sync.Mutex
	once     sync.Once
	done     chan struct{}
}

func newKCPConn(mux *smux.Session, sess *kcp.UDPSession, seal func() *session, onClose func()) *kcpConn {
	c := &kcpConn{mux: mux, sess: sess, seal: seal, onClose: onClose, accepted: make(chan *smux.Stream, 64),
		dgrams: make(chan []byte, 1024), done: make(chan struct{})}
	if sess.GetOOBMaxSize() > 0 && sess.SetOOBHandler(func(b []byte) {
		select {
		case c.dgrams <- append([]byte(nil), b...):
		default: // receiver lags: drop, as UDP would
		}
	}) == nil {
		c.oob = true
	}
	go func() {
		select {
		case <-mux.CloseChan():
			_ = c.Close()
		case <-c.done:
		}
	}()
	return c
}

func (c *kcpConn) startDatagrams(ds *smux.Stream) {
	c.dstream = ds
	go c.readDatagrams()
	go c.acceptLoop()
}

func (c *kcpConn) acceptLoop() {
	for {
		s, err := c.mux.AcceptStream()
		if err != nil {
			_ = c.Close()
			return
		}
		select {
		case c.accepted <- s:
		case <-c.done:
			_ = s.Close()
			return
		}
	}
}

func (c *kcpConn) readDatagrams() {
	var hdr [2]byte
	for {
		if _, err := io.ReadFull(c.dstream, hdr[:]); err != nil {
			_ = c.Close()
			return
		}
		b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c.dstream, b); err != nil {
			_ = c.Close()
			return
		}
		select {
		case c.dgrams <- b:
		default: // receiver lags: drop, as UDP would
		}
	}
}

func (c *kcpConn) OpenStream(ctx context.Context) (Stream, error) {
	s, err := c.mux.OpenStream()
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (c *kcpConn) AcceptStream(ctx context.Context) (Stream, error) {
	select {
	case s := <-c.accepted:
		return s, nil
	case <-c.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *kcpConn) SendDatagram(b []byte) error {
	if len(b) > c.MaxDatagramSize() {
		return ErrDatagramTooLarge
	}
	if c.oob {
		return c.sess.SendOOB(b)
	}
	frame := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(frame, uint16(len(b)))
	copy(frame[2:], b)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.dstream.Write(frame)
	return err
}

func (c *kcpConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	select {
	case d := <-c.dgrams:
		return d, nil
	case <-c.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *kcpConn) MaxDatagramSize() int  { return 1200 }
func (c *kcpConn) Done() <-chan struct{} { return c.done }
func (c *kcpConn) LocalAddr() net.Addr   { return c.sess.LocalAddr() }
func (c *kcpConn) RemoteAddr() net.Addr  { return c.sess.RemoteAddr() }

// Stats implements StatsConn: kcp-go's per-session RTT estimates and the
// packet layer's counts. kcp-go keeps no per-session loss or
// retransmission counts (only the process-wide kcp.DefaultSnmp), and the
// profiles run without a congestion window.
func (c *kcpConn) Stats() ConnStats {
	st := ConnStats{
		Transport:   "kcp",
		Has:         HasRTO,
		SmoothedRTT: time.Duration(c.sess.GetSRTT()) * time.Millisecond,
		RTTVar:      time.Duration(c.sess.GetSRTTVar()) * time.Millisecond,
		RTO:         time.Duration(c.sess.GetRTO()) * time.Millisecond,
	}
	if s := c.seal(); s != nil {
		s.count(&st)
	}
	return st
}

func (c *kcpConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		_ = c.mux.Close()
		_ = c.sess.Close()
		if c.onClose != nil {
			c.onClose()
		}
	})
	return nil
}
