package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"testing"
)

func sampleHeaders() []*Header {
	return []*Header{
		{Kind: KindLink, Hops: 4, Trace: NewTraceID(), Client: netip.MustParseAddrPort("203.0.113.7:51234"), Cluster: "demo", Service: "link"},
		{Kind: KindHTTP, Hops: 1, Client: netip.MustParseAddrPort("[2001:db8::1]:443"), Cluster: "c1", Service: "weblink", Affinity: "sid-abc"},
		{Kind: KindUDP, Hops: 16, Flow: 77, Cluster: "c", Service: "media"},
		{Kind: KindProbe},
		{Kind: KindLinkFrames, Hops: 8, Client: netip.MustParseAddrPort("198.51.100.2:40000"), Cluster: "default", Service: "link-frames"},
		{Kind: KindLinkFrames, Hops: 7, Trace: NewTraceID(), Cluster: "default", Service: "link-frames", Sequenced: true, Copy: 1},
		{Kind: KindLink, Hops: 2, Cluster: "default", Service: "link", Sequenced: true, Copy: MaxCopies - 1},
		{Kind: KindHTTP, Hops: 3, Cluster: "default", Service: "weblink", Sequenced: true, Join: true},
		{Kind: KindLinkFrames, Hops: 8, Cluster: "default", Service: "link-frames", Sequenced: true, Copy: 2, Join: true, Small: 1024},
		{Kind: KindUDP, Hops: 8, Flow: 9, Cluster: "default", Service: "media", Numbered: true},
		{Kind: KindUDP, Hops: 8, Flow: 10, Cluster: "default", Service: "media", Numbered: true, Copy: 1, Join: true, Small: 200,
			Affinity: "x", Client: netip.MustParseAddrPort("198.51.100.2:40000")},
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range sampleHeaders() {
		t.Run(fmt.Sprintf("%s/%v/%d/%v", h.Kind, h.Sequenced, h.Copy, h.Join), func(t *testing.T) {
			b, err := AppendHeader(nil, h)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > MaxHeaderLen {
				t.Fatalf("header %d bytes > MaxHeaderLen %d", len(b), MaxHeaderLen)
			}
			got, err := ReadHeader(bytes.NewReader(append(b, "payload"...)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, h) {
				t.Fatalf("got %+v want %+v", got, h)
			}
			got2, n, err := DecodeHeader(append(b, 1, 2, 3))
			if err != nil || n != len(b) || !reflect.DeepEqual(got2, h) {
				t.Fatalf("DecodeHeader: %+v %d %v", got2, n, err)
			}
		})
	}
}

func TestHeaderRejects(t *testing.T) {
	good, _ := AppendHeader(nil, sampleHeaders()[0])
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"magic", append([]byte("XX"), good[2:]...), ErrBadMagic},
		{"version", func() []byte { b := bytes.Clone(good); b[2] = 9; return b }(), ErrVersion},
		{"kind", func() []byte { b := bytes.Clone(good); b[3] = 99; return b }(), ErrMalformed},
		{"hops", func() []byte { b := bytes.Clone(good); b[4] = MaxHops + 1; return b }(), ErrMalformed},
		{"reserved flag", func() []byte { b := bytes.Clone(good); b[5] = 0x40; return b }(), ErrMalformed},
		{"numbered link", func() []byte { b := bytes.Clone(good); b[5] = flagNumbered; return b }(), ErrMalformed},
		{"small without its field", func() []byte { b, _ := AppendHeader(nil, sampleHeaders()[5]); b[5] |= flagSmall; return b }(), ErrMalformed},
		{"small limit 0", func() []byte {
			b, _ := AppendHeader(nil, sampleHeaders()[8])
			b[len(b)-2], b[len(b)-1] = 0, 0
			return b
		}(), ErrMalformed},
		{"small over a record", func() []byte {
			b, _ := AppendHeader(nil, sampleHeaders()[8])
			b[len(b)-2], b[len(b)-1] = 0x80, 0
			return b
		}(), ErrMalformed},
		{"small of a stream neither sequenced nor numbered", func() []byte {
			h := *sampleHeaders()[0]
			h.Sequenced, h.Small = true, 10
			b, _ := AppendHeader(nil, &h)
			b[5] &^= flagSequenced
			return b
		}(), ErrMalformed},
		{"copy of a udp flow not numbered", func() []byte { b, _ := AppendHeader(nil, sampleHeaders()[2]); b[5] = 1 << copyShift; return b }(), ErrMalformed},
		{"copy of a stream not sequenced", func() []byte { b := bytes.Clone(good); b[5] = 1 << copyShift; return b }(), ErrMalformed},
		{"join of a stream not sequenced", func() []byte { b := bytes.Clone(good); b[5] = flagJoin; return b }(), ErrMalformed},
		{"sequenced udp", func() []byte { b, _ := AppendHeader(nil, sampleHeaders()[2]); b[5] = flagSequenced; return b }(), ErrMalformed},
		{"length", func() []byte { b := bytes.Clone(good); b[6], b[7] = 0xff, 0xff; return b }(), ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"ipv4-mapped in family 6", func() []byte {
			b, _ := AppendHeader(nil, sampleHeaders()[1])
			a := netip.MustParseAddr("::ffff:203.0.113.7").As16()
			copy(b[29:], a[:])
			return b
		}(), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeHeader(tc.b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	mapped := &Header{Kind: KindLink, Client: netip.MustParseAddrPort("[::ffff:203.0.113.7]:80"), Cluster: "c", Service: "link"}
	b, err := AppendHeader(nil, mapped)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := DecodeHeader(b); err != nil || got.Client != netip.MustParseAddrPort("203.0.113.7:80") {
		t.Fatalf("mapped client address decodes as %v, %v; want it written as IPv4", got, err)
	}
	long := &Header{Kind: KindLink, Cluster: string(make([]byte, MaxNameLen+1)), Service: "x"}
	if _, err := AppendHeader(nil, long); !errors.Is(err, ErrMalformed) {
		t.Fatalf("long name accepted: %v", err)
	}
}

func TestStatus(t *testing.T) {
	if err := ReadStatus(bytes.NewReader(AppendStatus(nil, StatusOK, ""))); err != nil {
		t.Fatal(err)
	}
	err := ReadStatus(bytes.NewReader(AppendStatus(nil, StatusNoService, "media")))
	var se *StatusError
	if !errors.As(err, &se) || se.Status != StatusNoService || se.Reason != "media" {
		t.Fatalf("got %v", err)
	}
}

func TestDatagramAndProbe(t *testing.T) {
	d := AppendDatagram(nil, 42, []byte("hi"))
	f, p, err := ParseDatagram(d)
	if err != nil || f != 42 || string(p) != "hi" {
		t.Fatal(f, p, err)
	}
	if _, _, err := ParseDatagram([]byte{1}); err == nil {
		t.Fatal("short datagram accepted")
	}
	s, ts, err := ParseProbe(AppendProbe(nil, 7, 12345))
	if err != nil || s != 7 || ts != 12345 {
		t.Fatal(s, ts, err)
	}
}

func TestAppendHeaderAllocs(t *testing.T) {
	h := sampleHeaders()[0]
	buf := make([]byte, 0, MaxHeaderLen)
	if n := testing.AllocsPerRun(100, func() { _, _ = AppendHeader(buf[:0], h) }); n != 0 {
		t.Fatalf("AppendHeader allocates %v times", n)
	}
}

func FuzzHeader(f *testing.F) {
	for _, h := range sampleHeaders() {
		b, _ := AppendHeader(nil, h)
		f.Add(b)
	}
	f.Add([]byte("LT\x01\x01\x00\x00\x00\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := DecodeHeader(b)
		h2, err2 := ReadHeader(bytes.NewReader(b))
		if (err == nil) != (err2 == nil) {
			t.Fatalf("DecodeHeader and ReadHeader disagree: %v / %v", err, err2)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(h, h2) {
			t.Fatalf("decoders disagree: %+v / %+v", h, h2)
		}
		out, err := AppendHeader(nil, h)
		if err != nil {
			t.Fatalf("decoded header does not encode: %v", err)
		}
		if !bytes.Equal(out, b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", out, b[:n])
		}
	})
}

func FuzzStatus(f *testing.F) {
	f.Add(AppendStatus(nil, StatusOK, ""))
	f.Add(AppendStatus(nil, StatusUnreachable, "dial tcp: refused"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = ReadStatus(bytes.NewReader(b))
		_, _, _ = ParseDatagram(b)
		_, _, _ = ParseProbe(b)
	})
}

func TestNumbered(t *testing.T) {
	b := AppendNumbered(nil, 7, 1<<31+5, []byte("opus"))
	flow, rest, err := ParseDatagram(b)
	if err != nil || flow != 7 {
		t.Fatalf("ParseDatagram: %d %v", flow, err)
	}
	seq, p, err := ParseNumbered(rest)
	if err != nil || seq != 1<<31+5 || string(p) != "opus" {
		t.Fatalf("ParseNumbered: %d %q %v", seq, p, err)
	}
	if _, _, err := ParseNumbered([]byte{1, 2, 3}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short: %v", err)
	}
}

// FuzzNumbered: any datagram payload either fails or splits into a
// sequence number and a payload that encode back to the same bytes.
func FuzzNumbered(f *testing.F) {
	f.Add(AppendNumbered(nil, 1, 2, []byte("x"))[DatagramOverhead:])
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, p, err := ParseNumbered(b)
		if err != nil {
			if len(b) >= SeqLen {
				t.Fatalf("rejected %x: %v", b, err)
			}
			return
		}
		if out := AppendNumbered(nil, 0, seq, p)[DatagramOverhead:]; !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", out, b)
		}
	})
}

func TestFrames(t *testing.T) {
	var b []byte
	b = AppendRecord(b, []byte("one"))
	b = AppendAck(b, 1<<40+3)
	b = AppendRecord(b, bytes.Repeat([]byte{7}, MaxRecordLen))
	b = AppendSeek(b, 12)
	b = AppendEndRecord(b)
	r := bytes.NewReader(b)
	for i, want := range []Frame{
		{Kind: FrameRecord, Payload: []byte("one")},
		{Kind: FrameAck, Index: 1<<40 + 3},
		{Kind: FrameRecord, Payload: bytes.Repeat([]byte{7}, MaxRecordLen)},
		{Kind: FrameSeek, Index: 12},
		{Kind: FrameEnd},
	} {
		got, err := ReadFrame(r)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("frame %d: %+v %v, want %+v", i, got.Kind, err, want.Kind)
		}
	}
	if _, err := ReadFrame(r); !errors.Is(err, io.EOF) {
		t.Fatalf("after the end: %v", err)
	}
	for name, bad := range map[string]struct {
		b    []byte
		want error
	}{
		"truncated record":  {[]byte{0, 5, 1, 2}, io.ErrUnexpectedEOF},
		"truncated control": {AppendAck(nil, 9)[:6], io.ErrUnexpectedEOF},
		"control length":    {[]byte{0x80, 3, 1, 0, 0}, ErrMalformed},
		"control type":      {[]byte{0x80, 9, 7, 0, 0, 0, 0, 0, 0, 0, 0}, ErrMalformed},
	} {
		if _, err := ReadFrame(bytes.NewReader(bad.b)); !errors.Is(err, bad.want) {
			t.Errorf("%s: %v, want %v", name, err, bad.want)
		}
	}
	f, first, err := ParseCopyStart(AppendCopyStart(nil, 0xfeed, 42))
	if err != nil || f != 0xfeed || first != 42 {
		t.Fatal(f, first, err)
	}
	if _, _, err := ParseCopyStart([]byte{1}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short copy start: %v", err)
	}
}

// FuzzFrames checks that the frame decoder never panics and that what it
// accepts re-encodes to the bytes it read.
func FuzzFrames(f *testing.F) {
	f.Add(AppendEndRecord(AppendSeek(AppendRecord(AppendAck(AppendRecord(nil, []byte("hello")), 3), []byte{1}), 9)))
	f.Add([]byte{0x7f, 0xff, 1})
	f.Add([]byte{0x80, 9, 2})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		var out []byte
		for {
			fr, err := ReadFrame(r)
			consumed := len(b) - r.Len()
			if err != nil {
				// Nothing before the bad frame was misread.
				if !bytes.Equal(out, b[:len(out)]) {
					t.Fatalf("re-encoding differs:\n%x\n%x", out, b[:len(out)])
				}
				return
			}
			if fr.Kind == FrameRecord && (len(fr.Payload) == 0 || len(fr.Payload) > MaxRecordLen) {
				t.Fatalf("record of %d bytes", len(fr.Payload))
			}
			out = AppendFrame(out, fr)
			if !bytes.Equal(out, b[:consumed]) {
				t.Fatalf("re-encoding differs:\n%x\n%x", out, b[:consumed])
			}
		}
	})
}
