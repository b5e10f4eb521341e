package transport

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestBatchOffloadRoundTrip sends runs of equal-sized packets (GSO runs
// where the kernel offers UDP_SEGMENT), short packets ending runs and odd
// sizes through the batch writer, and checks that the batch reader (GRO
// where offered) hands back exactly the packets sent, in order, with their
// boundaries.
func TestBatchOffloadRoundTrip(t *testing.T) {
	for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} {
		t.Run(ip.String(), func(t *testing.T) { testBatchOffloadRoundTrip(t, ip, ip) })
	}
	// A dialer on a dual-stack socket (what KCP dials from towards a
	// non-loopback peer) sending to an IPv4 peer.
	t.Run("dual-stack", func(t *testing.T) { testBatchOffloadRoundTrip(t, nil, net.IPv4(127, 0, 0, 1)) })
}

func testBatchOffloadRoundTrip(t *testing.T, txIP, ip net.IP) {
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Skipf("no %v: %v", ip, err)
	}
	defer rx.Close()
	_ = rx.SetReadBuffer(4 << 20)
	tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: txIP})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	w := newBatchWriter(tx, &SealStats{})
	defer w.close()
	r := newBatchReader(rx)
	txPort := tx.LocalAddr().(*net.UDPAddr).Port
	t.Logf("gso %v, gro %v", w.gso.Load(), r.gro)

	// sizes: long runs, a run cut by a shorter packet, a longer packet
	// after a run, single bytes and a packet at the read buffer's edge.
	var sizes []int
	for i := 0; i < 150; i++ {
		sizes = append(sizes, 1425)
	}
	sizes = append(sizes, 700, 1425, 1425, 90, 1, 1425, 1500, 1500, 1499, 1500, 40, 40, 40)
	for i := 0; i < 70; i++ {
		sizes = append(sizes, 1200)
	}
	want := make([][]byte, len(sizes))
	for i, n := range sizes {
		p := bytes.Repeat([]byte{byte(i)}, n)
		if n >= 4 {
			binary.BigEndian.PutUint32(p, uint32(i))
		}
		want[i] = p
	}
	dst := rx.LocalAddr()
	go func() {
		for _, p := range want {
			bp := pktPool.Get().(*[]byte)
			*bp = append((*bp)[:0], p...)
			if err := w.send(bp, dst); err != nil {
				return
			}
		}
	}()
	_ = rx.SetReadDeadline(time.Now().Add(10 * time.Second))
	split := 0 // packets cut out of a GRO run
	for i := range want {
		got, from, err := r.next()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if ua, ok := from.(*net.UDPAddr); !ok || ua.Port != txPort {
			t.Fatalf("packet %d from %v, want port %d", i, from, txPort)
		}
		if !bytes.Equal(got, want[i]) {
			t.Fatalf("packet %d: got %d bytes (first %x), want %d bytes", i, len(got), got[:min(len(got), 4)], len(want[i]))
		}
		if r.seg > 0 {
			split++
		}
	}
	if w.gso.Load() && r.gro && split == 0 {
		t.Fatal("GSO and GRO are on, yet no packet arrived in a run")
	}
}

// TestBatchWriterWithoutGSO covers the one-packet-per-message path (what a
// kernel or device without segmentation offload gets).
func TestBatchWriterWithoutGSO(t *testing.T) {
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	w := newBatchWriter(tx, &SealStats{})
	w.gso.Store(false)
	defer w.close()
	for i := 0; i < 20; i++ {
		bp := pktPool.Get().(*[]byte)
		*bp = append((*bp)[:0], bytes.Repeat([]byte{byte(i)}, 1000)...)
		if err := w.send(bp, rx.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	for i := 0; i < 20; i++ {
		n, _, err := rx.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1000 || buf[0] != byte(i) {
			t.Fatalf("packet %d: %d bytes of %d", i, n, buf[0])
		}
	}
}

func TestGROSegmentSizeMalformed(t *testing.T) {
	for _, oob := range [][]byte{nil, {1, 2, 3}, make([]byte, 64), bytes.Repeat([]byte{0xff}, 64)} {
		if n := groSegmentSize(oob); n != 0 {
			t.Fatalf("groSegmentSize(%x) = %d, want 0", oob, n)
		}
	}
}

// TestSizeSocketBuffersForce: with CAP_NET_ADMIN (root here), the buffers
// reach the size asked for even past net.core.rmem_max, with no warning.
func TestSizeSocketBuffersForce(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs CAP_NET_ADMIN")
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var logs bytes.Buffer
	want := 7 << 20
	SizeSocketBuffers(c, want, slog.New(slog.NewTextHandler(&logs, nil)))
	if logs.Len() > 0 {
		t.Fatalf("warned: %s", logs.String())
	}
	rc, _ := c.SyscallConn()
	var rcv int
	_ = rc.Control(func(fd uintptr) { rcv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
	if rcv/2 < want {
		t.Fatalf("receive buffer %d, want %d", rcv/2, want)
	}
}
