package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/longlink/longlink/pkg/pki"
)

func testTLS(t testing.TB, ca *pki.CA, name string) *tls.Config {
	t.Helper()
	cert, err := ca.Issue(name, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return pki.MutualTLS(cert, ca.Pool())
}

func newCA(t testing.TB) *pki.CA {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

var clusterKey = []byte("0123456789abcdef0123456789abcdef")

func transports(t *testing.T) map[string][2]Transport {
	ca := newCA(t)
	qa, err := NewQUIC(QUICConfig{TLS: testTLS(t, ca, "a")})
	if err != nil {
		t.Fatal(err)
	}
	qb, _ := NewQUIC(QUICConfig{TLS: testTLS(t, ca, "b")})
	ka, err := NewKCP(KCPConfig{ClusterKey: clusterKey, DataShards: 10, ParityShards: 3})
	if err != nil {
		t.Fatal(err)
	}
	// FEC settings must match between peers; profiles may differ.
	kb, _ := NewKCP(KCPConfig{ClusterKey: clusterKey, Profile: "bulk", DataShards: 10, ParityShards: 3})
	kc, _ := NewKCP(KCPConfig{ClusterKey: clusterKey, Profile: "normal"})
	kd, _ := NewKCP(KCPConfig{ClusterKey: clusterKey, Profile: "fast"})
	mn := NewMemNetwork()
	return map[string][2]Transport{
		"quic":       {qa, qb},
		"kcp":        {ka, kb},
		"kcp-no-fec": {kc, kd},
		"mem":        {mn.Transport("a"), mn.Transport("b")},
	}
}

func listenAddr(tr Transport) string {
	if tr.Name() == "mem" {
		return "server"
	}
	return "127.0.0.1:0"
}

func TestStreamsAndDatagrams(t *testing.T) {
	for name, pair := range transports(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ln, err := pair[0].Listen(listenAddr(pair[0]))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept(ctx)
				if err != nil {
					return
				}
				go func() {
					for {
						d, err := c.ReceiveDatagram(ctx)
						if err != nil {
							return
						}
						_ = c.SendDatagram(append([]byte("echo:"), d...))
					}
				}()
				for {
					s, err := c.AcceptStream(ctx)
					if err != nil {
						return
					}
					go func() { _, _ = io.Copy(s, s); _ = s.Close() }()
				}
			}()
			c, err := pair[1].Dial(ctx, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if kc, ok := c.(*kcpConn); ok && kc.oob != (name == "kcp") {
				t.Fatalf("%s: out-of-band datagrams = %v", name, kc.oob)
			}
			// Several concurrent streams, each echoing 1 MiB.
			const streams = 4
			errs := make(chan error, streams)
			for i := 0; i < streams; i++ {
				go func(i int) {
					s, err := c.OpenStream(ctx)
					if err != nil {
						errs <- err
						return
					}
					defer s.Close()
					msg := bytes.Repeat([]byte{byte(i)}, 1<<20)
					go func() { _, _ = s.Write(msg) }()
					got := make([]byte, len(msg))
					if _, err := io.ReadFull(s, got); err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, msg) {
						errs <- io.ErrUnexpectedEOF
						return
					}
					errs <- nil
				}(i)
			}
			for i := 0; i < streams; i++ {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			// Datagrams: retry a few times, they are unreliable.
			var got []byte
			for i := 0; i < 30 && got == nil; i++ {
				if err := c.SendDatagram([]byte("ping")); err != nil {
					t.Fatal(err)
				}
				dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
				got, _ = c.ReceiveDatagram(dctx)
				dcancel()
			}
			if string(got) != "echo:ping" {
				t.Fatalf("datagram echo = %q", got)
			}
			if err := c.SendDatagram(make([]byte, c.MaxDatagramSize()+1)); err != ErrDatagramTooLarge {
				t.Fatalf("oversize datagram: %v", err)
			}
			_ = c.Close()
			select {
			case <-c.Done():
			case <-time.After(2 * time.Second):
				t.Fatal("Done not closed after Close")
			}
		})
	}
}

// A node whose certificate is not from the cluster CA, or that has none, must
// not get a QUIC connection.
func TestQUICRejectsStrangers(t *testing.T) {
	ca := newCA(t)
	srv, _ := NewQUIC(QUICConfig{TLS: testTLS(t, ca, "srv")})
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(ctx); err == nil {
			accepted <- struct{}{}
			_ = c.Close()
		}
	}()

	t.Run("other CA", func(t *testing.T) {
		other := newCA(t)
		// Trust the real CA (so the client would accept the server), but
		// present a certificate from another CA.
		cert, _ := other.Issue("intruder", "127.0.0.1")
		cfg := pki.MutualTLS(cert, ca.Pool())
		q, err := NewQUIC(QUICConfig{TLS: cfg})
		if err != nil {
			t.Fatal(err)
		}
		c, err := q.Dial(ctx, ln.Addr().String())
		if err == nil {
			// TLS 1.3: the client may finish first; the server then
			// rejects and the stream open must fail.
			s, serr := c.OpenStream(ctx)
			if serr == nil {
				_, _ = s.Write([]byte("x"))
				buf := make([]byte, 1)
				_, serr = s.Read(buf)
			}
			if serr == nil {
				t.Fatal("intruder with a foreign certificate got a working stream")
			}
			_ = c.Close()
		}
	})
	t.Run("no client cert", func(t *testing.T) {
		cfg := &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{ALPN}, MinVersion: tls.VersionTLS13, ServerName: "127.0.0.1"}
		q := &QUIC{cfg: QUICConfig{TLS: cfg, KeepAlive: time.Second, IdleTimeout: 2 * time.Second, MaxStreams: 10, SocketBuffer: 1 << 20, Logger: slog.New(slog.DiscardHandler)}}
		c, err := q.Dial(ctx, ln.Addr().String())
		if err == nil {
			s, serr := c.OpenStream(ctx)
			if serr == nil {
				_, _ = s.Write([]byte("x"))
				buf := make([]byte, 1)
				_, serr = s.Read(buf)
			}
			if serr == nil {
				t.Fatal("client without certificate got a working stream")
			}
			_ = c.Close()
		}
	})
	select {
	case <-accepted:
		t.Fatal("listener accepted an unauthenticated peer")
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := NewQUIC(QUICConfig{TLS: &tls.Config{}}); err == nil {
		t.Fatal("NewQUIC accepted a TLS config without mutual authentication")
	}
}

// KCP: a wrong cluster key cannot open a session, and forged or replayed
// packets never reach KCP.
func TestKCPRejectsStrangers(t *testing.T) {
	stats := &SealStats{}
	srv, _ := NewKCP(KCPConfig{ClusterKey: clusterKey, Stats: stats})
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan Conn, 4)
	go func() {
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			accepted <- c
		}
	}()

	wrong, _ := NewKCP(KCPConfig{ClusterKey: []byte("another-key-0123456789"), HandshakeTimeout: time.Second})
	if c, err := wrong.Dial(ctx, ln.Addr().String()); err == nil {
		_ = c.Close()
		t.Fatal("dial with a wrong cluster key succeeded")
	}

	// A legitimate session, so that there is something to inject into.
	good, _ := NewKCP(KCPConfig{ClusterKey: clusterKey})
	c, err := good.Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sc Conn
	select {
	case sc = <-accepted:
	case <-ctx.Done():
		t.Fatal("no session accepted")
	}
	before := stats.Rejected.Load()

	// Forge packets from a stranger socket: garbage, a DATA packet with a
	// made-up tag, a HELLO with a bad MAC.
	raw, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	dst := ln.Addr().(*net.UDPAddr)
	forged := [][]byte{
		[]byte("hello?"),
		append([]byte{pktData, 0, 0, 0, 0, 0, 0, 0, 1}, bytes.Repeat([]byte{7}, 64)...),
		append([]byte{pktHello}, bytes.Repeat([]byte{1}, helloLen-1)...),
	}
	for _, f := range forged {
		if _, err := raw.WriteToUDP(f, dst); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for stats.Rejected.Load() < before+uint64(len(forged)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := stats.Rejected.Load() - before; got < uint64(len(forged)) {
		t.Fatalf("rejected %d forged packets, want %d", got, len(forged))
	}
	select {
	case x := <-accepted:
		t.Fatalf("a forged packet opened a session from %v", x.RemoteAddr())
	default:
	}
	// The real session still works.
	go func() {
		s, err := sc.AcceptStream(ctx)
		if err == nil {
			_, _ = io.Copy(s, s)
		}
	}()
	s, err := c.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = s.Write([]byte("still fine"))
	buf := make([]byte, 10)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "still fine" {
		t.Fatalf("session broken after forgeries: %q %v", buf, err)
	}
}

func TestReplayWindow(t *testing.T) {
	var r replay
	for _, c := range []uint64{1, 2, 3, 10, 5} {
		if !r.check(c) {
			t.Fatalf("fresh counter %d rejected", c)
		}
	}
	for _, c := range []uint64{0, 1, 10, 5} {
		if r.check(c) {
			t.Fatalf("replayed counter %d accepted", c)
		}
	}
	if !r.check(100000) || r.check(10) || r.check(100000) {
		t.Fatal("window did not slide")
	}
	if !r.check(99999) {
		t.Fatal("in-window counter rejected")
	}
}

// TestSealReplay replays a captured DATA packet into the server's packet layer.
func TestSealReplay(t *testing.T) {
	keys, _ := deriveKeys(clusterKey)
	cr := bytes.Repeat([]byte{1}, 32)
	sr := bytes.Repeat([]byte{2}, 32)
	cli, _ := newSession(keys, cr, sr, true)
	srv, _ := newSession(keys, cr, sr, false)
	pkt := cli.seal(nil, []byte("payload"))
	if out, ok := srv.open(nil, pkt); !ok || string(out) != "payload" {
		t.Fatal("genuine packet rejected")
	}
	if _, ok := srv.open(nil, pkt); ok {
		t.Fatal("replayed packet accepted")
	}
	pkt2 := cli.seal(nil, []byte("payload"))
	pkt2[len(pkt2)-1] ^= 1
	if _, ok := srv.open(nil, pkt2); ok {
		t.Fatal("tampered packet accepted")
	}
	// A session with other randoms (a new handshake) cannot read old packets.
	srv2, _ := newSession(keys, cr, bytes.Repeat([]byte{3}, 32), false)
	if _, ok := srv2.open(nil, cli.seal(nil, []byte("x"))); ok {
		t.Fatal("packet from another session accepted")
	}
}
