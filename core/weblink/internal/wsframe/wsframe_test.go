package wsframe

import (
	"bytes"
	"errors"
	"net/http"
	"testing"
)

// mask builds a masked client frame.
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n <= 0xFFFF:
		out = append(out, 0x80|126, byte(n>>8), byte(n))
	default:
		out = append(out, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	key := []byte{1, 2, 3, 4}
	out = append(out, key...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

func TestParse(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 70000)
	tests := []struct {
		name    string
		in      []byte
		max     int
		want    Frame
		n, need int
		err     error
	}{
		{"text", clientFrame(true, OpText, []byte("4hello")), 100, Frame{true, OpText, []byte("4hello")}, 12, 12, nil},
		{"16-bit length", clientFrame(true, OpBinary, big[:300]), 1000, Frame{true, OpBinary, big[:300]}, 308, 308, nil},
		{"64-bit length", clientFrame(true, OpBinary, big), 100000, Frame{true, OpBinary, big}, 70014, 70014, nil},
		{"partial header", []byte{0x81}, 100, Frame{}, 0, 0, nil},
		{"partial payload", clientFrame(true, OpText, []byte("hello"))[:8], 100, Frame{}, 0, 11, nil},
		{"unmasked", []byte{0x81, 0x01, 'a'}, 100, Frame{}, 0, 0, ErrProtocol},
		{"rsv bits", []byte{0xC1, 0x81, 0, 0, 0, 0, 'a'}, 100, Frame{}, 0, 0, ErrProtocol},
		{"bad opcode", clientFrame(true, 0x3, nil), 100, Frame{}, 0, 0, ErrProtocol},
		{"fragmented control", clientFrame(false, OpPing, nil), 100, Frame{}, 0, 0, ErrProtocol},
		{"long control", clientFrame(true, OpPing, big[:126]), 1000, Frame{}, 0, 0, ErrProtocol},
		{"too big", clientFrame(true, OpText, big[:200]), 100, Frame{}, 0, 0, ErrTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, need, err := Parse(tt.in, tt.max)
			if !errors.Is(err, tt.err) || n != tt.n || need != tt.need {
				t.Fatalf("n=%d need=%d err=%v, want n=%d need=%d err=%v", n, need, err, tt.n, tt.need, tt.err)
			}
			if n > 0 && (f.Fin != tt.want.Fin || f.Opcode != tt.want.Opcode || !bytes.Equal(f.Payload, tt.want.Payload)) {
				t.Fatalf("frame %v %d %q", f.Fin, f.Opcode, f.Payload)
			}
		})
	}
}

func TestAppendFrame(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		b := AppendFrame(nil, OpBinary, make([]byte, n))
		if len(b) != FrameSize(n) {
			t.Errorf("n=%d: frame of %d bytes, FrameSize says %d", n, len(b), FrameSize(n))
		}
	}
	if got := AppendClose(nil, CloseNormal); !bytes.Equal(got, []byte{0x88, 2, 0x03, 0xE8}) {
		t.Fatalf("close frame % x", got)
	}
}

func TestCheckHandshake(t *testing.T) {
	// The example of RFC 6455 section 1.3.
	if got := AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("accept %q", got)
	}
	r, _ := http.NewRequest("GET", "http://x/socket.io/", nil)
	r.Header.Set("Connection", "keep-alive, Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if _, err := CheckHandshake(r); err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Sec-WebSocket-Version", "8")
	if _, err := CheckHandshake(r); err == nil {
		t.Fatal("version 8 accepted")
	}
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "short")
	if _, err := CheckHandshake(r); err == nil {
		t.Fatal("bad key accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(clientFrame(true, OpText, []byte("4hello")))
	f.Add(clientFrame(false, OpText, []byte("part")))
	f.Add(clientFrame(true, OpContinuation, []byte("end")))
	f.Add(clientFrame(true, OpBinary, bytes.Repeat([]byte{7}, 300)))
	f.Add(clientFrame(true, OpClose, []byte{3, 232}))
	f.Add(clientFrame(true, OpPing, nil))
	f.Add([]byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := append([]byte(nil), b...)
		fr, n, need, err := Parse(in, 1<<16)
		if err != nil {
			return
		}
		if n > len(b) || (n == 0 && need != 0 && need <= len(b)) {
			t.Fatalf("n=%d need=%d for %d bytes", n, need, len(b))
		}
		if n > 0 {
			// Re-masking the payload with the same key gives the input back.
			again := clientFrame(fr.Fin, fr.Opcode, fr.Payload)
			if len(fr.Payload) < 126 && n == len(again) {
				hdr := n - len(fr.Payload)
				if !bytes.Equal(again[hdr:], b[hdr:n]) && bytes.Equal(b[hdr-4:hdr], []byte{1, 2, 3, 4}) {
					t.Fatalf("payload does not round trip")
				}
			}
		}
	})
}

func TestParseAllocs(t *testing.T) {
	frame := clientFrame(true, OpText, []byte(`42["echo","hello, weblink"]`))
	buf := make([]byte, len(frame))
	allocs := testing.AllocsPerRun(100, func() {
		copy(buf, frame)
		if _, n, _, err := Parse(buf, 1<<20); err != nil || n != len(frame) {
			t.Fatal(n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Parse allocates %v times per frame", allocs)
	}
}

func BenchmarkParse(b *testing.B) {
	frame := clientFrame(true, OpText, []byte(`42["echo","hello, weblink"]`))
	buf := make([]byte, len(frame))
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		copy(buf, frame)
		_, _, _, _ = Parse(buf, 1<<20)
	}
}
