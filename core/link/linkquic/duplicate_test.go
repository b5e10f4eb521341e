package linkquic

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
)

// TestDoubled: which datagrams leave twice.
func TestDoubled(t *testing.T) {
	known := netip.MustParseAddrPort("10.0.0.1:4000")
	other := netip.MustParseAddrPort("10.0.0.2:4000")
	peers := newPeerSet()
	peers.add(netip.MustParseAddrPort("[::ffff:10.0.0.1]:4000")) // an IPv4-mapped form is the same peer
	short := func(n int) []byte { b := make([]byte, n); b[0] = 0x40; return b }
	long := func(n int) []byte { b := make([]byte, n); b[0] = 0xc0; return b }
	for _, tc := range []struct {
		name  string
		max   int
		peers *peerSet
		b     []byte
		to    netip.AddrPort
		want  bool
	}{
		{"small 1-RTT packet", 700, nil, short(300), other, true},
		{"at the limit", 700, nil, short(700), other, true},
		{"above the limit", 700, nil, short(701), other, false},
		{"handshake packet", 700, nil, long(300), other, false},
		{"off", 0, nil, short(100), other, false},
		{"server: peer past its handshake", 700, peers, short(300), known, true},
		{"server: peer still in its handshake", 700, peers, short(300), other, false},
		{"empty", 700, nil, nil, other, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newDuplicatingConn(nil, tc.max, tc.peers, new(copyCounter))
			if got := c.doubled(tc.b, tc.to); got != tc.want {
				t.Fatalf("doubled = %v, want %v", got, tc.want)
			}
		})
	}
	peers.remove(known)
	if peers.has(known) {
		t.Fatal("peer still known after its connection ended")
	}
}

// TestDuplicatesHideLoss: through a path that loses the first copy of every
// doubled datagram, a Link session over QUIC exchanges small frames and a
// large one with no packet declared lost on either end (the copies carried
// everything), and the copies are all small.
func TestDuplicatesHideLoss(t *testing.T) {
	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0", nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	server := make(chan *Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		server <- nc.(*Conn)
		defer nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := link.Server(ctx, nc, link.NewKeyRing(key), link.Limits{})
		if err != nil {
			return
		}
		for {
			f, err := c.ReadFrame()
			if err != nil {
				return
			}
			f.Flags |= link.FlagResponse
			if c.WriteFrame(f) != nil {
				return
			}
		}
	}()
	proxy := newFirstCopyLoser(t, ln.Addr().(*net.UDPAddr))

	d := NewDialer(Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := d.Dial(ctx, proxy.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := link.Client(ctx, nc, key.ID, key.Public, link.Limits{})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	sc := <-server
	// The server doubles once the handshake is confirmed on its side.
	select {
	case <-sc.qc.HandshakeComplete():
	case <-ctx.Done():
		t.Fatal("server handshake")
	}
	lostBefore := sc.qc.ConnectionStats().PacketsLost + nc.(*Conn).qc.ConnectionStats().PacketsLost
	big := bytes.Repeat([]byte("x"), 8000)
	for i := uint32(1); i <= 40; i++ {
		body := []byte(`{}`)
		if i == 20 {
			body = big
		}
		if err := c.WriteFrame(link.Frame{Op: imapi.OpHeartbeat, Seq: i, Body: body}); err != nil {
			t.Fatal(err)
		}
		f, err := c.ReadFrame()
		if err != nil || f.Seq != i || !bytes.Equal(f.Body, body) {
			t.Fatalf("echo %d: seq %d, %d bytes, %v", i, f.Seq, len(f.Body), err)
		}
	}
	if lost := sc.qc.ConnectionStats().PacketsLost + nc.(*Conn).qc.ConnectionStats().PacketsLost - lostBefore; lost != 0 {
		t.Errorf("%d packets declared lost after the handshake; the copies should have carried them", lost)
	}
	for _, s := range []struct {
		end string
		st  DuplicateStats
	}{{"client", d.Duplicated()}, {"server", ln.Duplicated()}} {
		if s.st.Packets < 40 {
			t.Errorf("%s sent %d copies for 40 small frames", s.end, s.st.Packets)
		}
		if s.st.Bytes > s.st.Packets*DefaultDuplicateMax {
			t.Errorf("%s copied %d bytes in %d packets: larger than %d bytes each", s.end, s.st.Bytes, s.st.Packets, DefaultDuplicateMax)
		}
	}
	if proxy.dropped() == 0 {
		t.Error("the path lost no first copy")
	}
}

// firstCopyLoser is a UDP proxy for one client that loses the first copy of
// every datagram sent twice in a row: each datagram waits up to holdFor for
// its copy; with one, only the copy goes on, else the datagram itself.
type firstCopyLoser struct {
	addr    *net.UDPAddr
	mu      sync.Mutex
	lost    int
	holdFor time.Duration
}

func newFirstCopyLoser(t *testing.T, server *net.UDPAddr) *firstCopyLoser {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.DialUDP("udp", nil, server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = front.Close(); _ = back.Close() })
	p := &firstCopyLoser{addr: front.LocalAddr().(*net.UDPAddr), holdFor: 50 * time.Millisecond}
	var client *net.UDPAddr
	var cmu sync.Mutex
	go p.pump(func(b []byte) { _, _ = back.Write(b) }, func() ([]byte, error) {
		buf := make([]byte, 2048)
		n, from, err := front.ReadFromUDP(buf)
		if err == nil {
			cmu.Lock()
			client = from
			cmu.Unlock()
		}
		return buf[:n], err
	})
	go p.pump(func(b []byte) {
		cmu.Lock()
		to := client
		cmu.Unlock()
		_, _ = front.WriteToUDP(b, to)
	}, func() ([]byte, error) {
		buf := make([]byte, 2048)
		n, err := back.Read(buf)
		return buf[:n], err
	})
	t.Cleanup(func() { t.Logf("path lost %d first copies", p.dropped()) })
	return p
}

func (p *firstCopyLoser) dropped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost
}

// pump forwards one direction. A held datagram goes on when the next one
// differs or after holdFor; when the next one is its copy, the held one is
// lost and the copy goes on.
func (p *firstCopyLoser) pump(send func([]byte), read func() ([]byte, error)) {
	type datagram struct {
		b   []byte
		err error
	}
	in := make(chan datagram)
	go func() {
		for {
			b, err := read()
			in <- datagram{b, err}
			if err != nil {
				return
			}
		}
	}()
	var held []byte
	timer := time.NewTimer(time.Hour)
	for {
		select {
		case d := <-in:
			if d.err != nil {
				return
			}
			switch {
			case held != nil && bytes.Equal(held, d.b):
				p.mu.Lock()
				p.lost++
				p.mu.Unlock()
				send(d.b)
				held = nil
			default:
				if held != nil {
					send(held)
				}
				held = d.b
				timer.Reset(p.holdFor)
			}
		case <-timer.C:
			if held != nil {
				send(held)
				held = nil
			}
		}
	}
}
