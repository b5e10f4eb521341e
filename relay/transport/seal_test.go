package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

// discardConn is a PacketConn that drops what is written (the server's
// HELLO answers in the fuzz test).
type discardConn struct{ net.PacketConn }

func (discardConn) WriteTo(p []byte, _ net.Addr) (int, error) { return len(p), nil }

// FuzzSealInput feeds arbitrary packets to both ends of the packet layer:
// nothing panics, and nothing but the one genuine sealed packet (a seed) is
// ever accepted.
func FuzzSealInput(f *testing.F) {
	keys, _ := deriveKeys(clusterKey)
	cr := bytes.Repeat([]byte{1}, 32)
	sr := bytes.Repeat([]byte{2}, 32)
	peer := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}

	seedCli, _ := newSession(keys, cr, sr, true)
	genuine := seedCli.seal(nil, []byte("a kcp segment"))
	f.Add(genuine)
	f.Add([]byte{pktData})
	f.Add(append([]byte{pktData, 0, 0, 0, 0, 0, 0, 0, 1}, make([]byte, 40)...))
	hello := []byte{pktHello}
	hello = binary.BigEndian.AppendUint64(hello, uint64(time.Now().UnixNano()))
	hello = append(hello, cr...)
	f.Add(append(hello, keys.mac(hello)...))
	f.Add([]byte{pktAck})
	f.Add([]byte{})

	// Sessions are made once (key derivation is slow); their replay windows
	// carry over between inputs, which only makes acceptance rarer.
	srvSess, _ := newSession(keys, cr, sr, false)
	cliSess, _ := newSession(keys, cr, sr, true)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		srv := &serverSealConn{PacketConn: discardConn{}, keys: keys, stats: &SealStats{},
			sessions: map[netip.AddrPort]*session{addrKey(peer): srvSess}, seen: map[[32]byte]time.Time{}}
		cli := &clientSealConn{peer: peer, sess: cliSess, stats: &SealStats{}}
		p := make([]byte, 2048)
		in := append([]byte(nil), pkt...)
		if n, ok := srv.input(p, in, peer); ok && (!bytes.Equal(pkt, genuine) || string(p[:n]) != "a kcp segment") {
			t.Fatalf("server accepted a forged %d-byte packet (%d bytes out)", len(pkt), n)
		}
		if n, ok := cli.input(p, in, peer); ok {
			t.Fatalf("client accepted a forged %d-byte packet (%d bytes out)", len(pkt), n)
		}
		if !bytes.Equal(in, pkt) {
			t.Fatal("input modified the packet")
		}
	})
}

// TestSealedRunsRejectTamperAndReplay sends sealed packets as GSO runs
// (where offered) with a replayed and a tampered packet inside the runs: the
// server's packet layer, reading GRO runs, delivers exactly the genuine
// packets, in order, and counts the two rejects.
func TestSealedRunsRejectTamperAndReplay(t *testing.T) {
	keys, _ := deriveKeys(clusterKey)
	stats := &SealStats{}
	su, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = su.SetReadBuffer(4 << 20)
	srv := newServerSeal(su, keys, stats)
	defer srv.Close()
	cu, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		b   []byte
		err error
	}
	out := make(chan got, 256)
	go func() {
		for {
			p := make([]byte, 2048)
			n, _, err := srv.ReadFrom(p)
			out <- got{p[:n], err}
			if err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli, err := dialSeal(ctx, time.Now().Add(5*time.Second), cu, su.LocalAddr(), keys, &SealStats{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	payload := func(i int) []byte {
		b := bytes.Repeat([]byte{byte(i)}, 1400)
		binary.BigEndian.PutUint32(b, uint32(i))
		return b
	}
	send := func(pkt []byte) {
		bp := pktPool.Get().(*[]byte)
		*bp = append((*bp)[:0], pkt...)
		if err := cli.wr.send(bp, su.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	var genuine [][]byte
	var replayed []byte
	for i := 0; i < 120; i++ {
		pkt := cli.sess.seal(nil, payload(i))
		switch i {
		case 10:
			replayed = pkt
		case 60:
			send(replayed) // a replay inside a run
		case 90:
			bad := append([]byte(nil), pkt...)
			bad[len(bad)/2] ^= 0x40 // tampered ciphertext
			send(bad)
			continue
		}
		send(pkt)
		genuine = append(genuine, payload(i))
	}
	for i, want := range genuine {
		select {
		case g := <-out:
			if g.err != nil {
				t.Fatal(g.err)
			}
			if !bytes.Equal(g.b, want) {
				t.Fatalf("packet %d: got %x…, want %x…", i, g.b[:4], want[:4])
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("packet %d never arrived", i)
		}
	}
	if r := stats.Rejected.Load(); r != 2 {
		t.Fatalf("rejected %d packets, want 2 (a replay and a forgery)", r)
	}
}
