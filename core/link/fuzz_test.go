package link

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"
)

// fuzzKey is fixed so that seeds stay meaningful across runs.
var fuzzKey = func() KeyPair {
	k, err := KeyPairFromPrivate("fuzz", bytes.Repeat([]byte{7}, 32))
	if err != nil {
		panic(err)
	}
	return k
}()

// FuzzDecodePlain feeds arbitrary decrypted frames to the frame decoder.
func FuzzDecodePlain(f *testing.F) {
	f.Add([]byte{Version, 0, 1, 1, 0, 0, 0, 1, 0, 0})
	f.Add([]byte{Version, FlagResponse, 2, 1, 0, 0, 0, 9, 1, 0x90, '{', '}'})
	f.Add(append([]byte{Version, FlagCompressed, 2, 1, 0, 0, 0, 1, 0, 0}, deflate(bytes.Repeat([]byte("ab"), 600))...))
	f.Add([]byte{Version, FlagCompressed, 2, 1, 0, 0, 0, 1, 0, 0, 0xff, 0xff})
	f.Add([]byte{2, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, pt []byte) {
		fr, err := decodePlain(append([]byte(nil), pt...), 4096, false)
		if err != nil {
			return
		}
		if len(fr.Body) > 4096 {
			t.Fatalf("body of %d bytes over the limit", len(fr.Body))
		}
		if fr.IsPush() && fr.IsResponse() {
			t.Fatal("push and response")
		}
	})
}

// FuzzServerHandshake feeds arbitrary client hellos (and following bytes)
// to the server side of the handshake and frame reader.
func FuzzServerHandshake(f *testing.F) {
	f.Add(validClientHello(f))
	f.Add([]byte("LK\x01\x04fuzz\x00\x30"))
	f.Add([]byte("LK\x02\x04fuzz"))
	f.Add([]byte("LK\x01\x00"))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	ring := NewKeyRing(fuzzKey)
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &fakeConn{r: bytes.NewReader(in)}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn, err := Server(ctx, c, ring, Limits{MaxFrameSize: 4096})
		if err != nil {
			return
		}
		for i := 0; i < 4; i++ {
			if _, err := conn.ReadFrame(); err != nil {
				return
			}
		}
	})
}

// FuzzClientHandshake feeds arbitrary server hellos and frames to the client.
func FuzzClientHandshake(f *testing.F) {
	f.Add([]byte{0, 0, 48})
	f.Add(append([]byte{0, 0, 48}, make([]byte, 48)...))
	f.Add([]byte{1})
	f.Add([]byte{2})
	f.Add([]byte{0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &fakeConn{r: bytes.NewReader(in)}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn, err := Client(ctx, c, fuzzKey.ID, fuzzKey.Public, Limits{MaxFrameSize: 4096})
		if err == nil {
			t.Fatal("handshake completed against forged server bytes")
			_, _ = conn.ReadFrame()
		}
	})
}

// validClientHello returns a real client hello for the fuzz key.
func validClientHello(tb testing.TB) []byte {
	cnc, snc := net.Pipe()
	defer cnc.Close()
	defer snc.Close()
	out := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 4+len(fuzzKey.ID)+2+noiseMsgLen)
		n, _ := readFull(snc, buf)
		out <- buf[:n]
		snc.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = Client(ctx, cnc, fuzzKey.ID, fuzzKey.Public, Limits{})
	return <-out
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// fakeConn reads from r and discards writes.
type fakeConn struct {
	net.Conn
	r *bytes.Reader
	w *bytes.Buffer // nil: writes are discarded
}

func (c *fakeConn) Read(b []byte) (int, error) { return c.r.Read(b) }
func (c *fakeConn) Write(b []byte) (int, error) {
	if c.w != nil {
		c.w.Write(b)
	}
	return len(b), nil
}
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// FuzzPlainConn feeds arbitrary bytes to a pre-terminated connection's frame
// reader, and checks that every frame it accepts re-encodes and reads back
// the same.
func FuzzPlainConn(f *testing.F) {
	f.Add([]byte{0, 0, 0, 10, Version, 0, 1, 1, 0, 0, 0, 1, 0, 0})
	f.Add([]byte{0, 0, 0, 12, Version, FlagResponse, 2, 1, 0, 0, 0, 9, 1, 0x90, '{', '}'})
	f.Add([]byte{0, 0, 0, 2, 1, 2})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		conn := NewPlain(&fakeConn{r: bytes.NewReader(in)}, Limits{MaxFrameSize: 4096, CompressThreshold: -1})
		for i := 0; i < 4; i++ {
			fr, err := conn.ReadFrame()
			if err != nil {
				return
			}
			var out bytes.Buffer
			w := NewPlain(&fakeConn{r: bytes.NewReader(nil), w: &out}, Limits{MaxFrameSize: 4096, CompressThreshold: -1})
			if err := w.WriteFrame(fr); err != nil {
				t.Fatalf("accepted frame does not re-encode: %v", err)
			}
			back, err := NewPlain(&fakeConn{r: bytes.NewReader(out.Bytes())}, Limits{MaxFrameSize: 4096}).ReadFrame()
			if err != nil || back.Op != fr.Op || back.Seq != fr.Seq || back.Code != fr.Code || back.Flags != fr.Flags || !bytes.Equal(back.Body, fr.Body) {
				t.Fatalf("round trip: %+v -> %+v (%v)", fr, back, err)
			}
		}
	})
}
