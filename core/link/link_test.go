package link

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

func testKey(t testing.TB, id string) KeyPair {
	t.Helper()
	k, err := GenerateKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// recorder keeps a copy of every byte written through it.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.buf.Write(b)
	r.mu.Unlock()
	return r.Conn.Write(b)
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf.Bytes()...)
}

// tcpPair returns two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-ch
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func handshake(t testing.TB, cnc, snc net.Conn, ring *KeyRing, key KeyPair, lim Limits) (*Conn, *Conn, error, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var sc *Conn
	var serr error
	done := make(chan struct{})
	go func() {
		sc, serr = Server(ctx, snc, ring, lim)
		if serr != nil {
			snc.Close()
		}
		close(done)
	}()
	cc, cerr := Client(ctx, cnc, key.ID, key.Public, lim)
	<-done
	return cc, sc, cerr, serr
}

func TestRoundTrip(t *testing.T) {
	k := testKey(t, "k1")
	cnc, snc := tcpPair(t)
	cc, sc, cerr, serr := handshake(t, cnc, snc, NewKeyRing(k), k, Limits{})
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	if sc.KeyID() != "k1" {
		t.Fatalf("server key id %q", sc.KeyID())
	}
	big := []byte(`{"text":"` + strings.Repeat("hello world ", 500) + `"}`)
	cases := []struct {
		name string
		f    Frame
	}{
		{"empty", Frame{Op: imapi.OpHeartbeat, Seq: 1}},
		{"small", Frame{Op: imapi.OpSend, Seq: 2, Body: []byte(`{"to":"bob"}`)}},
		{"compressed", Frame{Op: imapi.OpSend, Seq: 3, Body: big}},
		{"response", Frame{Op: imapi.OpSend, Flags: FlagResponse, Seq: 0xfffffffe, Code: imapi.ErrForbidden, Body: []byte(`{}`)}},
		{"push", Frame{Op: imapi.OpPush, Flags: FlagPush, Body: []byte(`{"msg_id":"m"}`)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errc := make(chan error, 1)
			go func() { errc <- cc.WriteFrame(tc.f) }()
			got, err := sc.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if got.Op != tc.f.Op || got.Seq != tc.f.Seq || got.Code != tc.f.Code || got.Flags != tc.f.Flags || !bytes.Equal(got.Body, tc.f.Body) {
				t.Fatalf("got %+v, want %+v", got, tc.f)
			}
		})
	}
	// And back, several frames in one write.
	go func() {
		_ = sc.WriteFrames([]Frame{{Op: imapi.OpPush, Flags: FlagPush, Body: []byte(`{"a":1}`)}, {Op: imapi.OpKick, Flags: FlagPush, Body: big}})
	}()
	for i := 0; i < 2; i++ {
		f, err := cc.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if !f.IsPush() {
			t.Fatalf("frame %d not a push", i)
		}
	}
}

func TestCompressionOnWire(t *testing.T) {
	k := testKey(t, "k1")
	cnc, snc := tcpPair(t)
	rec := &recorder{Conn: cnc}
	cc, sc, cerr, serr := handshake(t, rec, snc, NewKeyRing(k), k, Limits{})
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	before := len(rec.bytes())
	body := []byte(strings.Repeat("a", 50000))
	go func() { _ = cc.WriteFrame(Frame{Op: imapi.OpSend, Body: body}) }()
	f, err := sc.ReadFrame()
	if err != nil || !bytes.Equal(f.Body, body) {
		t.Fatalf("read: %v", err)
	}
	if sent := len(rec.bytes()) - before; sent > 5000 {
		t.Fatalf("50,000 compressible bytes took %d bytes on the wire", sent)
	}
}

// With KeepCompressed a compressed body is read as it came, flagged, and
// Inflate gives the body back; a small one is read as always.
func TestKeepCompressed(t *testing.T) {
	k := testKey(t, "k1")
	cnc, snc := tcpPair(t)
	cc, sc, cerr, serr := handshake(t, cnc, snc, NewKeyRing(k), k, Limits{KeepCompressed: true})
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	big := []byte(strings.Repeat(`{"time":1,"text":"x"},`, 400))
	small := []byte(`{"a":1}`)
	go func() {
		_ = sc.WriteFrames([]Frame{{Op: imapi.OpRoomMessages, Flags: FlagPush, Body: big}, {Op: imapi.OpPush, Flags: FlagPush, Body: small}})
	}()
	f, err := cc.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if f.Flags != FlagPush|FlagCompressed || len(f.Body) >= len(big) {
		t.Fatalf("flags %#x, %d of %d bytes: not kept compressed", f.Flags, len(f.Body), len(big))
	}
	if b, err := Inflate(f.Body, len(big)); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("inflate: %v", err)
	}
	if _, err := Inflate(f.Body, len(big)-1); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("inflate beyond max: %v", err)
	}
	f, err = cc.ReadFrame()
	if err != nil || f.Flags != FlagPush || !bytes.Equal(f.Body, small) {
		t.Fatalf("small frame: %+v %v", f, err)
	}
}

func TestHandshakeFailures(t *testing.T) {
	k1, k2 := testKey(t, "k1"), testKey(t, "k2")
	t.Run("unknown key id", func(t *testing.T) {
		cnc, snc := tcpPair(t)
		_, _, cerr, serr := handshake(t, cnc, snc, NewKeyRing(k1), k2, Limits{})
		var he *HandshakeError
		if !errors.As(cerr, &he) || he.Status != StatusUnknownKey {
			t.Fatalf("client error %v, want unknown key", cerr)
		}
		if serr == nil {
			t.Fatal("server accepted an unknown key")
		}
	})
	t.Run("wrong public key", func(t *testing.T) {
		cnc, snc := tcpPair(t)
		wrong := KeyPair{ID: "k1", Public: k2.Public}
		_, _, cerr, serr := handshake(t, cnc, snc, NewKeyRing(k1), wrong, Limits{})
		if serr == nil || !errors.Is(serr, ErrBadHello) {
			t.Fatalf("server error %v, want bad hello", serr)
		}
		if cerr == nil {
			t.Fatal("client completed a handshake against the wrong key")
		}
	})
	t.Run("garbage", func(t *testing.T) {
		cnc, snc := tcpPair(t)
		go func() { _, _ = cnc.Write([]byte("GET / HTTP/1.1\r\n\r\n")) }()
		_, err := Server(context.Background(), snc, NewKeyRing(k1), Limits{})
		if !errors.Is(err, ErrBadHello) {
			t.Fatalf("got %v, want bad hello", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		_, snc := tcpPair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := Server(ctx, snc, NewKeyRing(k1), Limits{}); err == nil {
			t.Fatal("handshake without a client succeeded")
		}
		if time.Since(start) > 2*time.Second {
			t.Fatal("handshake deadline not applied")
		}
	})
	t.Run("rotation", func(t *testing.T) {
		ring := NewKeyRing(k1, k2)
		for _, k := range []KeyPair{k1, k2} {
			cnc, snc := tcpPair(t)
			if _, _, cerr, serr := handshake(t, cnc, snc, ring, k, Limits{}); cerr != nil || serr != nil {
				t.Fatalf("key %s: %v %v", k.ID, cerr, serr)
			}
		}
		ring.Remove("k1")
		cnc, snc := tcpPair(t)
		if _, _, cerr, _ := handshake(t, cnc, snc, ring, k1, Limits{}); cerr == nil {
			t.Fatal("retired key still accepted")
		}
	})
}

// TestReplayReorderTamper checks that a captured frame cannot be replayed,
// reordered or altered.
func TestReplayReorderTamper(t *testing.T) {
	k := testKey(t, "k1")
	for _, mode := range []string{"replay", "reorder", "tamper", "truncate-length"} {
		t.Run(mode, func(t *testing.T) {
			cnc, snc := tcpPair(t)
			rec := &recorder{Conn: cnc}
			cc, _, cerr, serr := handshake(t, rec, snc, NewKeyRing(k), k, Limits{})
			if cerr != nil || serr != nil {
				t.Fatal(cerr, serr)
			}
			hello := len(rec.bytes())
			// Capture two sealed frames without a reader: write into a pipe
			// to a throwaway server connection.
			_ = cc.WriteFrame(Frame{Op: imapi.OpSend, Seq: 1, Body: []byte(`{"n":1}`)})
			_ = cc.WriteFrame(Frame{Op: imapi.OpSend, Seq: 2, Body: []byte(`{"n":2}`)})
			wire := rec.bytes()[hello:]
			f1, f2 := splitFrames(t, wire)

			// A fresh server connection that has read nothing yet: feed it a
			// crafted stream.
			cnc2, snc2 := tcpPair(t)
			_, sc2, cerr, serr := handshake(t, cnc2, snc2, NewKeyRing(k), k, Limits{})
			if cerr != nil || serr != nil {
				t.Fatal(cerr, serr)
			}
			var stream []byte
			switch mode {
			case "replay":
				// Frames of another session: keys differ, must fail.
				stream = append(append(stream, f1...), f1...)
			case "reorder":
				stream = append(append(stream, f2...), f1...)
			case "tamper":
				g := append([]byte(nil), f1...)
				g[len(g)-20] ^= 1
				stream = g
			case "truncate-length":
				g := append([]byte(nil), f1...)
				g[3]--
				stream = g[:len(g)-1]
			}
			go func() { _, _ = cnc2.Write(stream) }()
			if _, err := sc2.ReadFrame(); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("got %v, want decryption failure", err)
			}
			if _, err := sc2.ReadFrame(); err == nil {
				t.Fatal("read after a failure succeeded")
			}
		})
	}

	// Within one session: replaying the first frame after it was accepted.
	cnc, snc := tcpPair(t)
	rec := &recorder{Conn: cnc}
	cc, sc, cerr, serr := handshake(t, rec, snc, NewKeyRing(k), k, Limits{})
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	hello := len(rec.bytes())
	go func() { _ = cc.WriteFrame(Frame{Op: imapi.OpSend, Seq: 1, Body: []byte(`{"n":1}`)}) }()
	if _, err := sc.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	captured := rec.bytes()[hello:]
	go func() { _, _ = cnc.Write(captured) }()
	if _, err := sc.ReadFrame(); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("replayed frame: got %v, want decryption failure", err)
	}
}

func splitFrames(t *testing.T, wire []byte) (f1, f2 []byte) {
	t.Helper()
	n1 := 4 + int(be32(wire))
	f1 = wire[:n1]
	n2 := 4 + int(be32(wire[n1:]))
	f2 = wire[n1 : n1+n2]
	return f1, f2
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func TestLimits(t *testing.T) {
	k := testKey(t, "k1")
	cnc, snc := tcpPair(t)
	lim := Limits{MaxFrameSize: 1000, CompressThreshold: -1}
	cc, sc, cerr, serr := handshake(t, cnc, snc, NewKeyRing(k), k, lim)
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	if err := cc.WriteFrame(Frame{Op: imapi.OpSend, Body: make([]byte, 2000)}); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversize write: %v", err)
	}
	// The refused frame did not use a nonce: the next one still decrypts.
	go func() { _ = cc.WriteFrame(Frame{Op: imapi.OpSend, Body: []byte(`{}`)}) }()
	if _, err := sc.ReadFrame(); err != nil {
		t.Fatalf("frame after a refused one: %v", err)
	}
	// A length prefix above the limit is refused before reading the body.
	go func() { _, _ = cnc.Write([]byte{0, 1, 0, 0}) }()
	if _, err := sc.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversize length: %v", err)
	}
}

func TestInflateBomb(t *testing.T) {
	z := deflate(make([]byte, 100000))
	pt := append([]byte{Version, FlagCompressed, 2, 1, 0, 0, 0, 1, 0, 0}, z...)
	if _, err := decodePlain(pt, 1000, false); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want too large", err)
	}
	if f, err := decodePlain(pt, 200000, false); err != nil || len(f.Body) != 100000 {
		t.Fatalf("got %v", err)
	}
}

func TestKeys(t *testing.T) {
	k := testKey(t, "prod-2026.1")
	k2, err := KeyPairFromPrivate(k.ID, k.Private)
	if err != nil || !bytes.Equal(k2.Public, k.Public) {
		t.Fatalf("rebuild: %v", err)
	}
	pub, err := DecodeKey(EncodeKey(k.Public))
	if err != nil || !bytes.Equal(pub, k.Public) {
		t.Fatalf("decode: %v", err)
	}
	for _, bad := range []string{"", "a b", strings.Repeat("x", 65), "ü"} {
		if ValidKeyID(bad) == nil {
			t.Errorf("key id %q accepted", bad)
		}
	}
}

func TestIdleConnAllocs(t *testing.T) {
	k := testKey(t, "k1")
	cnc, snc := tcpPair(t)
	cc, sc, cerr, serr := handshake(t, cnc, snc, NewKeyRing(k), k, Limits{})
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	f := Frame{Op: imapi.OpHeartbeat, Seq: 1}
	go func() {
		for {
			if _, err := sc.ReadFrame(); err != nil {
				return
			}
		}
	}()
	allocs := testing.AllocsPerRun(200, func() {
		if err := cc.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Fatalf("WriteFrame allocates %.1f times per frame", allocs)
	}
}

// TestWriteFramesBatch writes batches that outgrow the pooled buffers (the
// writer's, and the reader's read-ahead: frames straddle its boundary).
func TestWriteFramesBatch(t *testing.T) {
	k := testKey(t, "k1")
	cnc, snc := tcpPair(t)
	cc, sc, cerr, serr := handshake(t, cnc, snc, NewKeyRing(k), k, Limits{})
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	for _, size := range []int{1, 100, 4000, 4086, 4100, 20000} {
		var fs []Frame
		for i := 0; i < 300; i++ {
			fs = append(fs, Frame{Op: imapi.OpPush, Flags: FlagPush, Seq: uint32(i), Body: bytes.Repeat([]byte{byte('a' + i%26)}, size)})
		}
		errc := make(chan error, 1)
		go func() { errc <- sc.WriteFrames(fs) }()
		for i := range fs {
			f, err := cc.ReadFrame()
			if err != nil {
				t.Fatalf("size %d frame %d: %v", size, i, err)
			}
			if f.Seq != uint32(i) || !bytes.Equal(f.Body, fs[i].Body) {
				t.Fatalf("size %d frame %d differs", size, i)
			}
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		// Everything read: an idle connection holds no read-ahead buffer.
		if cc.Buffered() != 0 || cc.rbuf != nil {
			t.Fatalf("size %d: %d bytes still buffered (buffer held: %v)", size, cc.Buffered(), cc.rbuf != nil)
		}
	}
}

// TestReadAhead reads frames of several sizes the way a pool reader does:
// ReadFrame only when FrameReady, otherwise one ReadAhead; a frame larger
// than the read-ahead stops it (false) and ReadFrame reads its rest.
func TestReadAhead(t *testing.T) {
	k := testKey(t, "k1")
	cnc, snc := tcpPair(t)
	cc, sc, cerr, serr := handshake(t, cnc, snc, NewKeyRing(k), k, Limits{})
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	if cc.FrameReady() {
		t.Fatal("FrameReady with nothing read")
	}
	var fs []Frame
	for i, size := range []int{0, 10, 3000, 4100, 9000, 1} {
		fs = append(fs, Frame{Op: imapi.OpPush, Flags: FlagPush, Seq: uint32(i), Body: bytes.Repeat([]byte{'x'}, size)})
	}
	errc := make(chan error, 1)
	go func() {
		for _, f := range fs {
			if err := sc.WriteFrame(f); err != nil {
				errc <- err
				return
			}
		}
		errc <- sc.Close()
	}()
	for i := range fs {
		for !cc.FrameReady() {
			more, err := cc.ReadAhead()
			if err != nil {
				t.Fatalf("frame %d: read ahead: %v", i, err)
			}
			if !more {
				break // larger than the read-ahead
			}
		}
		f, err := cc.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Seq != uint32(i) || len(f.Body) != len(fs[i].Body) {
			t.Fatalf("frame %d: got seq %d, %d bytes", i, f.Seq, len(f.Body))
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// The peer closed: the error is final and FrameReady says so.
	if _, err := cc.ReadAhead(); !errors.Is(err, io.EOF) {
		t.Fatalf("read ahead after close: %v, want EOF", err)
	}
	if !cc.FrameReady() {
		t.Fatal("FrameReady false after a read error")
	}
	if _, err := cc.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("ReadFrame after close: %v, want EOF", err)
	}
}
