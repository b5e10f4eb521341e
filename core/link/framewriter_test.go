package link

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"

	"github.com/longlink/longlink/core/imapi"
)

// TestFrameWriterPending fills the peer's socket: TryWrite never waits,
// keeps what the socket did not take, refuses to jump ahead of it, and the
// frames arrive whole and in order (any reordering would fail to decrypt)
// once the peer reads and the rest is flushed.
func TestFrameWriterPending(t *testing.T) {
	k := testKey(t, "k1")
	cnc, snc := tcpPair(t)
	_ = cnc.(*net.TCPConn).SetReadBuffer(4096)
	_ = snc.(*net.TCPConn).SetWriteBuffer(4096)
	cc, sc, cerr, serr := handshake(t, cnc, snc, NewKeyRing(k), k, Limits{})
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	w := NewFrameWriter()
	body := make([]byte, 16000)
	_, _ = rand.Read(body) // incompressible
	var sent []uint32
	pending := false
	for seq := uint32(1); seq < 10000 && !pending; seq++ {
		res, err := w.TryWrite(sc, &Frame{Op: imapi.OpPush, Flags: FlagPush, Seq: seq, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		switch res {
		case Written:
			sent = append(sent, seq)
		case Pending:
			sent = append(sent, seq)
			pending = true
		case NotWritten:
			t.Fatalf("frame %d not written with nothing pending", seq)
		}
	}
	if !pending {
		t.Fatal("a peer that does not read never filled the socket")
	}
	// With part of a frame kept, the next one must not go first.
	if res, err := w.TryWrite(sc, &Frame{Op: imapi.OpPush, Flags: FlagPush, Seq: 99999, Body: body}); res != NotWritten || err != nil {
		t.Fatalf("TryWrite behind a pending frame: %v %v", res, err)
	}
	flushed := make(chan error, 1)
	go func() {
		if err := sc.Flush(); err != nil {
			flushed <- err
			return
		}
		flushed <- sc.WriteFrame(Frame{Op: imapi.OpPush, Flags: FlagPush, Seq: 100000, Body: []byte("last")})
	}()
	for _, seq := range append(sent, 100000) {
		f, err := cc.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", seq, err)
		}
		if f.Seq != seq {
			t.Fatalf("got frame %d, want %d", f.Seq, seq)
		}
		if seq != 100000 && !bytes.Equal(f.Body, body) {
			t.Fatalf("frame %d: body differs", seq)
		}
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
}

// TestFrameWriterAllocs: a direct write allocates nothing of its own (the
// Noise library makes each nonce on the heap: one allocation per sealed
// frame, none for a plain one).
func TestFrameWriterAllocs(t *testing.T) {
	k := testKey(t, "k1")
	cnc, snc := tcpPair(t)
	_, sc, cerr, serr := handshake(t, cnc, snc, NewKeyRing(k), k, Limits{})
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	pcnc, psnc := tcpPair(t)
	ps := NewPlain(psnc, Limits{})
	for _, tc := range []struct {
		name       string
		r          net.Conn // the peer's socket, drained without decoding
		w          *Conn
		wantAllocs float64
	}{{"sealed", cnc, sc, 1}, {"plain", pcnc, ps, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			// AllocsPerRun counts every goroutine's allocations, so the
			// reader must not allocate per frame: it discards the bytes.
			go func() { _, _ = io.Copy(io.Discard, tc.r) }()
			w := NewFrameWriter()
			f := Frame{Op: imapi.OpPush, Flags: FlagPush | FlagCompressed, Body: deflate(bytes.Repeat([]byte("room message "), 100))}
			allocs := testing.AllocsPerRun(200, func() {
				if res, err := w.TryWrite(tc.w, &f); err != nil || res == NotWritten {
					t.Fatal(res, err)
				}
			})
			if allocs > tc.wantAllocs {
				t.Fatalf("TryWrite allocates %.1f times per frame, want at most %.0f", allocs, tc.wantAllocs)
			}
		})
	}
}

// TestFrameWriterNoSocket: a connection without a socket of its own (a
// pipe, a PROXY-protocol wrapper) is left to the ordinary writes.
func TestFrameWriterNoSocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := NewPlain(a, Limits{})
	if res, err := NewFrameWriter().TryWrite(c, &Frame{Op: imapi.OpPush, Flags: FlagPush}); res != NotWritten || err != nil {
		t.Fatalf("TryWrite on a pipe: %v %v", res, err)
	}
}

// BenchmarkFrameWriterFanout is the chatroom fan-out's unit of work: one
// ~1 KB compressed batch sealed and written to each of 256 loopback
// connections in turn, their peers reading in other goroutines. On
// loopback the write also runs the receiver's TCP path.
func BenchmarkFrameWriterFanout(b *testing.B) {
	k := testKey(b, "k1")
	var conns []*Conn
	for range 256 {
		cnc, snc := tcpPair(b)
		cc, sc, cerr, serr := handshake(b, cnc, snc, NewKeyRing(k), k, Limits{})
		if cerr != nil || serr != nil {
			b.Fatal(cerr, serr)
		}
		go func() {
			buf := make([]byte, 64<<10)
			for {
				if _, err := cc.NetConn().Read(buf); err != nil {
					return
				}
			}
		}()
		conns = append(conns, sc)
	}
	body := make([]byte, 1000)
	_, _ = rand.Read(body)
	f := Frame{Op: imapi.OpPush, Flags: FlagPush | FlagCompressed, Body: body}
	w := NewFrameWriter()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.TryWrite(conns[i%len(conns)], &f); err != nil {
			b.Fatal(err)
		}
	}
}
