package transport

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// lossyProxy forwards UDP between one client and server on loopback,
// delaying every packet by delay and, once the first 40 packets from the
// client have passed (the handshakes stay quick), dropping every
// dropEvery-th packet from the client (0: none) and a random share loss of
// the packets in each direction.
type lossyProxy struct {
	front, back *net.UDPConn
	server      *net.UDPAddr
	delay       time.Duration
	dropEvery   int
	loss        float64
	mu          sync.Mutex
	client      *net.UDPAddr
	rng         *rand.Rand
	started     bool
	dropped     [2]int // up, down
	wg          sync.WaitGroup
}

func newLossyProxy(t *testing.T, server net.Addr, delay time.Duration, dropEvery int) *lossyProxy {
	return newRandomLossProxy(t, server, delay, dropEvery, 0)
}

func newRandomLossProxy(t *testing.T, server net.Addr, delay time.Duration, dropEvery int, loss float64) *lossyProxy {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{front: front, back: back, server: server.(*net.UDPAddr), delay: delay, dropEvery: dropEvery,
		loss: loss, rng: rand.New(rand.NewPCG(1, 2))}
	p.wg.Add(2)
	go p.up()
	go p.down()
	t.Cleanup(func() { _ = front.Close(); _ = back.Close(); p.wg.Wait() })
	return p
}

func (p *lossyProxy) up() {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for n := 1; ; n++ {
		k, from, err := p.front.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.client = from
		p.started = p.started || n > 40
		drop := p.started && (p.dropEvery > 0 && n%p.dropEvery == 0 || p.rng.Float64() < p.loss)
		if drop {
			p.dropped[0]++
		}
		p.mu.Unlock()
		if drop {
			continue
		}
		pkt := append([]byte(nil), buf[:k]...)
		time.AfterFunc(p.delay, func() { _, _ = p.back.WriteToUDP(pkt, p.server) })
	}
}

func (p *lossyProxy) down() {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		k, _, err := p.back.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		c := p.client
		drop := p.started && p.rng.Float64() < p.loss
		if drop {
			p.dropped[1]++
		}
		p.mu.Unlock()
		if c != nil && !drop {
			pkt := append([]byte(nil), buf[:k]...)
			time.AfterFunc(p.delay, func() { _, _ = p.front.WriteToUDP(pkt, c) })
		}
	}
}

// listenEcho listens on loopback with tr and echoes every stream of the
// connections it accepts, which it also hands out.
func listenEcho(t *testing.T, ctx context.Context, tr Transport) (Listener, <-chan Conn) {
	t.Helper()
	ln, err := tr.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	accepted := make(chan Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		accepted <- c
		for {
			s, err := c.AcceptStream(ctx)
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(s, s); _ = s.Close() }()
		}
	}()
	return ln, accepted
}

// TestConnStats runs real QUIC and KCP connections over a loopback proxy
// that adds 10 ms of round trip and loss, and checks what both ends report.
func TestConnStats(t *testing.T) {
	ca := newCA(t)
	qa, err := NewQUIC(QUICConfig{TLS: testTLS(t, ca, "a")})
	if err != nil {
		t.Fatal(err)
	}
	qb, _ := NewQUIC(QUICConfig{TLS: testTLS(t, ca, "b")})
	ka, err := NewKCP(KCPConfig{ClusterKey: clusterKey})
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := NewKCP(KCPConfig{ClusterKey: clusterKey})
	for _, tc := range []struct {
		name string
		pair [2]Transport
		has  StatFields
	}{
		{"quic", [2]Transport{qa, qb}, HasMinRTT | HasCongestionWindow | HasPacketsLost},
		{"kcp", [2]Transport{ka, kb}, HasRTO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ln, accepted := listenEcho(t, ctx, tc.pair[0])
			const oneWay = 5 * time.Millisecond
			proxy := newLossyProxy(t, ln.Addr(), oneWay, 8)
			c, err := tc.pair[1].Dial(ctx, proxy.front.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var server Conn
			select {
			case server = <-accepted:
			case <-ctx.Done():
				t.Fatal("no accepted connection")
			}
			s, err := c.OpenStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// Round trips of 4 KiB give both ends RTT samples and cross
			// the proxy's loss.
			const rounds, size = 32, 4096
			echo := func() {
				msg := bytes.Repeat([]byte{'x'}, size)
				got := make([]byte, size)
				for range rounds {
					if _, err := s.Write(msg); err != nil {
						t.Fatal(err)
					}
					if _, err := io.ReadFull(s, got); err != nil {
						t.Fatal(err)
					}
				}
			}
			echo()
			dialed := c.(StatsConn).Stats()
			acc := server.(StatsConn).Stats()
			for _, e := range []struct {
				end string
				st  ConnStats
			}{{"dialer", dialed}, {"acceptor", acc}} {
				st := e.st
				if st.Transport != tc.name || st.Has != tc.has {
					t.Fatalf("%s: transport %q, fields %b; want %q, %b", e.end, st.Transport, st.Has, tc.name, tc.has)
				}
				// KCP's clock counts whole milliseconds.
				if st.SmoothedRTT < 2*oneWay-2*time.Millisecond {
					t.Errorf("%s: smoothed RTT %v through a proxy adding %v", e.end, st.SmoothedRTT, 2*oneWay)
				}
				// Each end sent and received every echoed byte.
				if st.BytesSent < rounds*size || st.BytesReceived < rounds*size || st.PacketsSent == 0 || st.PacketsReceived == 0 {
					t.Errorf("%s: sent %d B in %d packets, received %d B in %d packets; want at least %d B each way",
						e.end, st.BytesSent, st.PacketsSent, st.BytesReceived, st.PacketsReceived, rounds*size)
				}
				if tc.has&HasCongestionWindow != 0 && st.CongestionWindow == 0 {
					t.Errorf("%s: congestion window 0", e.end)
				}
				if tc.has&HasMinRTT != 0 && (st.MinRTT < 2*oneWay || st.MinRTT > st.SmoothedRTT) {
					t.Errorf("%s: min RTT %v, smoothed %v", e.end, st.MinRTT, st.SmoothedRTT)
				}
				if tc.has&HasRTO != 0 && st.RTO < st.SmoothedRTT {
					t.Errorf("%s: RTO %v below smoothed RTT %v", e.end, st.RTO, st.SmoothedRTT)
				}
			}
			// The proxy drops the dialer's packets: its sender saw losses.
			if tc.has&HasPacketsLost != 0 && dialed.PacketsLost == 0 {
				t.Errorf("dialer: no packets lost through a proxy dropping 1 in 8 (sent %d)", dialed.PacketsSent)
			}
			echo()
			again := c.(StatsConn).Stats()
			if again.PacketsSent <= dialed.PacketsSent || again.PacketsReceived <= dialed.PacketsReceived ||
				again.BytesSent <= dialed.BytesSent || again.BytesReceived <= dialed.BytesReceived {
				t.Errorf("dialer counters did not grow with traffic: %+v then %+v", dialed, again)
			}
		})
	}
}
