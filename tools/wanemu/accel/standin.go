package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"

	"github.com/longlink/longlink/pkg/pki"
)

// This file is the stand-in for Longlink's edge, tunnel and core: a TLS
// request/response server at the core, and a split-TCP proxy at the edge that
// carries each client connection over one stream of a warm QUIC or KCP+smux
// tunnel to an egress at the core. It measures what the architecture can gain
// on the emulated paths; it is not Longlink's code, and its figures are
// reported under "standin_" names.

const alpn = "longlink-accel-standin"

// loadTLS returns a mutual-TLS config with a fresh cert from the CA in dir.
func loadTLS(dir, name string) (*tls.Config, error) {
	ca, err := pki.LoadCA(dir)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	cert, err := ca.Issue(name)
	if err != nil {
		return nil, err
	}
	c := pki.MutualTLS(cert, ca.Pool())
	c.ServerName = name
	return c, nil
}

// runServer is the stand-in core service: TLS 1.3, then login, messages and
// bulk downloads (see proto.go). The client only checks the server's
// certificate, like an app connecting to its IM service.
func runServer(ctx context.Context, log *slog.Logger, listen, pkiDir string) error {
	ca, err := pki.LoadCA(pkiDir)
	if err != nil {
		return err
	}
	cert, err := ca.Issue("core")
	if err != nil {
		return err
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	ready()
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go serveConn(log, tls.Server(c, conf))
	}
}

func serveConn(log *slog.Logger, c *tls.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		typ, payload, err := readFrame(c, buf)
		if err != nil {
			return
		}
		switch typ {
		case frameLogin:
			answer := sha256.Sum256(payload)
			session := make([]byte, 256)
			for i := range session {
				session[i] = answer[i%len(answer)]
			}
			if err := writeFrame(c, frameLoginOK, session); err != nil {
				return
			}
		case frameMessage:
			if err := writeFrame(c, frameMessageOK, payload); err != nil {
				return
			}
		case frameBulk:
			chunk := make([]byte, 16<<10)
			for {
				if err := writeFrame(c, frameBulkData, chunk); err != nil {
					return
				}
			}
		default:
			log.Warn("unknown frame", "type", typ)
			return
		}
	}
}

// tunnel is the long-haul part: streams from the edge to the egress.
type tunnel interface {
	open(ctx context.Context) (net.Conn, error)
	close() error
}

func quicConfig() *quic.Config {
	return &quic.Config{
		MaxIdleTimeout:                 60 * time.Second,
		KeepAlivePeriod:                5 * time.Second,
		MaxIncomingStreams:             10000,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 4 << 20,
		MaxConnectionReceiveWindow:     64 << 20,
	}
}

type quicTunnel struct{ conn *quic.Conn }

type quicStreamConn struct {
	*quic.Stream
	local, remote net.Addr
}

func (s quicStreamConn) LocalAddr() net.Addr  { return s.local }
func (s quicStreamConn) RemoteAddr() net.Addr { return s.remote }

// CloseWrite half-closes: QUIC's Close ends only the sending side.
func (s quicStreamConn) CloseWrite() error { return s.Stream.Close() }

// Close ends both directions.
func (s quicStreamConn) Close() error {
	s.Stream.CancelRead(0)
	return s.Stream.Close()
}

func (t *quicTunnel) open(ctx context.Context) (net.Conn, error) {
	s, err := t.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return quicStreamConn{Stream: s, local: t.conn.LocalAddr(), remote: t.conn.RemoteAddr()}, nil
}

func (t *quicTunnel) close() error { return t.conn.CloseWithError(0, "bye") }

func dialQUIC(ctx context.Context, addr string, conf *tls.Config) (tunnel, error) {
	conf = conf.Clone()
	conf.NextProtos = []string{alpn}
	conf.ServerName = "egress"
	c, err := quic.DialAddr(ctx, addr, conf, quicConfig())
	if err != nil {
		return nil, fmt.Errorf("quic dial %s: %w", addr, err)
	}
	return &quicTunnel{conn: c}, nil
}

// kcpKey derives the tunnel's AES key from the cluster secret file.
func kcpKey(pkiDir string) ([]byte, error) {
	secret, err := os.ReadFile(filepath.Join(pkiDir, "kcp.key"))
	if err != nil {
		return nil, err
	}
	k := sha256.Sum256(secret)
	return k[:], nil
}

// KCP "fast" profile: no delay, 10 ms interval, fast resend after 2 dup ACKs,
// no congestion window; FEC 10+3.
const kcpData, kcpParity = 10, 3

func tuneKCP(s *kcp.UDPSession) {
	s.SetNoDelay(1, 10, 2, 1)
	s.SetWindowSize(1024, 1024)
	s.SetMtu(1350)
	s.SetStreamMode(true)
	s.SetWriteDelay(false)
	s.SetACKNoDelay(true)
}

func smuxConfig() *smux.Config {
	c := smux.DefaultConfig()
	c.Version = 2
	c.KeepAliveInterval = 5 * time.Second
	c.KeepAliveTimeout = 30 * time.Second
	c.MaxReceiveBuffer = 16 << 20
	c.MaxStreamBuffer = 4 << 20
	return c
}

type kcpTunnel struct{ sess *smux.Session }

func (t *kcpTunnel) open(context.Context) (net.Conn, error) { return t.sess.OpenStream() }
func (t *kcpTunnel) close() error                           { return t.sess.Close() }

func dialKCP(addr, pkiDir string) (tunnel, error) {
	key, err := kcpKey(pkiDir)
	if err != nil {
		return nil, err
	}
	block, err := kcp.NewAESBlockCrypt(key)
	if err != nil {
		return nil, err
	}
	s, err := kcp.DialWithOptions(addr, block, kcpData, kcpParity)
	if err != nil {
		return nil, fmt.Errorf("kcp dial %s: %w", addr, err)
	}
	tuneKCP(s)
	sess, err := smux.Client(s, smuxConfig())
	if err != nil {
		return nil, err
	}
	return &kcpTunnel{sess: sess}, nil
}

// runEdge accepts client TCP near the user and carries each connection over
// one tunnel stream; the tunnel is opened (and warmed) before it is ready.
func runEdge(ctx context.Context, log *slog.Logger, listen, kind, egress, pkiDir string) error {
	var t tunnel
	var err error
	switch kind {
	case "quic":
		conf, cerr := loadTLS(pkiDir, "edge")
		if cerr != nil {
			return cerr
		}
		t, err = dialQUIC(ctx, egress, conf)
	case "kcp":
		t, err = dialKCP(egress, pkiDir)
	default:
		err = fmt.Errorf("unknown tunnel %q", kind)
	}
	if err != nil {
		return err
	}
	defer t.close()
	// Warm the tunnel: one stream round trip so the handshake and the
	// congestion state exist before clients arrive, as with a long-lived
	// production tunnel.
	if err := warm(ctx, t); err != nil {
		return fmt.Errorf("warm tunnel: %w", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	ready()
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			s, err := t.open(ctx)
			if err != nil {
				log.Warn("open stream", "err", err)
				return
			}
			defer s.Close()
			splice(c, s)
		}()
	}
}

// warm opens a stream that the egress answers with a fixed probe reply.
func warm(ctx context.Context, t tunnel) error {
	s, err := t.open(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Write([]byte("PING")); err != nil {
		return err
	}
	var b [4]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		return err
	}
	if string(b[:]) != "PONG" {
		return errors.New("bad warm-up answer")
	}
	return nil
}

// runEgress accepts tunnels at the core and dials the server for each stream.
func runEgress(ctx context.Context, log *slog.Logger, listen, kind, target, pkiDir string) error {
	handle := func(s net.Conn) {
		defer s.Close()
		// The first four bytes tell a warm-up probe from a client's stream.
		var first [4]byte
		if _, err := io.ReadFull(s, first[:]); err != nil {
			return
		}
		if string(first[:]) == "PING" {
			s.Write([]byte("PONG"))
			return
		}
		c, err := net.Dial("tcp", target)
		if err != nil {
			log.Warn("dial target", "err", err)
			return
		}
		defer c.Close()
		if _, err := c.Write(first[:]); err != nil {
			return
		}
		splice(c, s)
	}
	switch kind {
	case "quic":
		conf, err := loadTLS(pkiDir, "egress")
		if err != nil {
			return err
		}
		conf.NextProtos = []string{alpn}
		ln, err := quic.ListenAddr(listen, conf, quicConfig())
		if err != nil {
			return err
		}
		ready()
		go func() { <-ctx.Done(); ln.Close() }()
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return nil
			}
			go func() {
				for {
					st, err := conn.AcceptStream(ctx)
					if err != nil {
						return
					}
					go handle(quicStreamConn{Stream: st, local: conn.LocalAddr(), remote: conn.RemoteAddr()})
				}
			}()
		}
	case "kcp":
		key, err := kcpKey(pkiDir)
		if err != nil {
			return err
		}
		block, err := kcp.NewAESBlockCrypt(key)
		if err != nil {
			return err
		}
		ln, err := kcp.ListenWithOptions(listen, block, kcpData, kcpParity)
		if err != nil {
			return err
		}
		ready()
		go func() { <-ctx.Done(); ln.Close() }()
		for {
			s, err := ln.AcceptKCP()
			if err != nil {
				return nil
			}
			tuneKCP(s)
			go func() {
				sess, err := smux.Server(s, smuxConfig())
				if err != nil {
					return
				}
				defer sess.Close()
				for {
					st, err := sess.AcceptStream()
					if err != nil {
						return
					}
					go handle(st)
				}
			}()
		}
	}
	return fmt.Errorf("unknown tunnel %q", kind)
}

// splice copies both ways and passes half-closes on.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}
