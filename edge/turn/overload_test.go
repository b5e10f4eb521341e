package turn

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/pkg/waittest"
)

func loopbackUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func addrPort(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// waiting counts the datagrams waiting in c's receive buffer, reading them
// all (everything the poller sent has been sent when it is asked).
func waiting(t *testing.T, c *net.UDPConn) int {
	t.Helper()
	buf := make([]byte, 2048)
	n := 0
	for {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, _, err := c.ReadFrom(buf); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal(err)
			}
			return n
		}
		n++
	}
}

// A poller serves its sockets in rounds, each at most its budget: a flood
// of client datagrams on the listener no longer keeps it from reading the
// relay sockets, whose datagrams (the peers' answers) go out in the same
// round as the first listenBudget client datagrams; what the listener
// still holds waits for the next round.
func TestPollerRoundsServeRelaysUnderClientFlood(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{m: m, fast: newFastPath()}
	lnConn := loopbackUDP(t)
	lnRaw, err := lnConn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	ln := &authPacketConn{PacketConn: lnConn, udp: lnConn, raw: lnRaw, local: addrPort(lnConn), s: s}
	p, err := newRelayPoller(s, ln)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.close() })
	relayConn := loopbackUDP(t)
	relayRaw, err := relayConn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc := &relayPacketConn{PacketConn: relayConn, s: s, user: &userState{}, udp: relayConn, raw: relayRaw}
	if err := p.add(rc); err != nil {
		t.Fatal(err)
	}
	client, peer := loopbackUDP(t), loopbackUDP(t)
	rc.bindClient(addrPort(client), ln)
	rc.setChannel(addrPort(peer), 0x4000, true)
	s.fast.byClient[clientKey{addrPort(client), ln.local}] = rc

	const clientFrames, peerDatagrams = 3 * listenBudget, relayBudget + 8
	frame := make([]byte, 4+100)
	binary.BigEndian.PutUint16(frame[0:2], 0x4000)
	binary.BigEndian.PutUint16(frame[2:4], 100)
	for range clientFrames {
		if _, err := client.WriteTo(frame, lnConn.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	for range peerDatagrams {
		if _, err := peer.WriteTo(frame[4:], relayConn.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	collect := func() bool {
		var more bool
		if err := p.raw.Control(func(ep uintptr) { more = p.collect(ep) }); err != nil {
			t.Fatal(err)
		}
		return more
	}
	waittest.Until(t, 2*time.Second, "the listener and the relay socket ready", func() bool {
		collect()
		return p.lnReady && rc.ready
	})

	for i, want := range []struct{ toPeer, toClient int }{
		{listenBudget, relayBudget}, // the relay socket keeps its place for the rest
		{listenBudget, peerDatagrams - relayBudget},
		{listenBudget, 0},
	} {
		p.round()
		if got := waiting(t, peer); got != want.toPeer {
			t.Fatalf("round %d: %d client datagrams relayed to the peer, want %d (the listener's budget)", i+1, got, want.toPeer)
		}
		if got := waiting(t, client); got != want.toClient {
			t.Fatalf("round %d: %d peer datagrams relayed to the client, want %d", i+1, got, want.toClient)
		}
		collect()
	}
	if rc.ready {
		t.Fatal("the emptied relay socket is still on the ready list")
	}
	// The third round read exactly a budget's worth: only a read finds the
	// listener empty.
	p.round()
	if p.lnReady || collect() {
		t.Fatal("sockets still ready after everything was read")
	}
	if got := testutil.ToFloat64(m.packetsToClient); got != peerDatagrams {
		t.Fatalf("packets to client = %v, want %d", got, peerDatagrams)
	}
	if got := testutil.ToFloat64(m.packetsToPeer); got != clientFrames {
		t.Fatalf("packets to peer = %v, want %d", got, clientFrames)
	}
}

// A real TURN client floods its channel while the poller is held up: the
// listener socket's buffer overflows and the kernel drops the rest before
// the server spends anything on it. Every datagram is either relayed to the
// peer or counted in longlink_turn_listener_drops_total, and the
// allocation relays again once the flood has passed.
func TestClientFloodShedAtListenerAndCounted(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.UDPSockets = 1 })
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	cl := udpClient(t, ts.Addrs().UDP[0], cred(t, testSecret, "app", "flood", time.Hour))
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if err := roundTrip(t, relay, peer.LocalAddr(), "hello"); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 3*time.Second, "the channel on the fast path", func() bool {
		ts.fast.mu.RLock()
		defer ts.fast.mu.RUnlock()
		for _, rc := range ts.fast.byClient {
			rc.chMu.RLock()
			n := len(rc.ch.byNumber)
			rc.chMu.RUnlock()
			return n == 1
		}
		return false
	})
	if err := roundTrip(t, relay, peer.LocalAddr(), "bound"); err != nil {
		t.Fatal(err)
	}
	toPeer0 := testutil.ToFloat64(ts.m.packetsToPeer)
	if d := ts.m.listenerDrops(); d != 0 {
		t.Fatalf("listener drops before the flood = %v", d)
	}

	// The poller takes the fast path's lock for each client ChannelData:
	// holding it stops the poller at the first datagram of the flood.
	// 12,000 datagrams of 1,200 bytes are more than the listener's buffer
	// holds (at most 8 MiB with its kernel overhead).
	ts.fast.mu.Lock()
	payload := make([]byte, 1200)
	sent := 0
	for range 12000 {
		if _, err := relay.WriteTo(payload, peer.LocalAddr()); err == nil {
			sent++
		}
	}
	ts.fast.mu.Unlock()

	var relayed, dropped float64
	waittest.Until(t, 10*time.Second, "every datagram of the flood relayed or dropped at the listener", func() bool {
		relayed, dropped = testutil.ToFloat64(ts.m.packetsToPeer)-toPeer0, ts.m.listenerDrops()
		return relayed+dropped >= float64(sent)
	})
	if relayed+dropped != float64(sent) || dropped == 0 {
		t.Fatalf("%d sent: %v relayed to the peer, %v dropped at the listener", sent, relayed, dropped)
	}
	// The flood's echoes come back first, and any socket on the way may
	// still be full of them: ask again until the answer comes.
	buf := make([]byte, 2048)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("no echo of a message sent after the flood")
		}
		if _, err := relay.WriteTo([]byte("after"), peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = relay.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, _, err := relay.ReadFrom(buf)
			if err != nil {
				break
			}
			if string(buf[:n]) == "after" {
				return
			}
		}
	}
}
