package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// ipv4 builds a minimal IPv4 packet with payload bytes after a 20-byte header.
func ipv4(src, dst string, proto uint8, payload int) []byte {
	b := make([]byte, 20+payload)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	b[8] = 64
	b[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	return b
}

func TestParse(t *testing.T) {
	good := ipv4("10.99.0.1", "10.99.0.2", 17, 8)
	tests := []struct {
		name    string
		pkt     []byte
		wantErr error
		want    Header
	}{
		{name: "udp", pkt: good, want: Header{
			Src: netip.MustParseAddr("10.99.0.1"), Dst: netip.MustParseAddr("10.99.0.2"), Protocol: 17, Length: 28}},
		{name: "short", pkt: good[:19], wantErr: ErrShort},
		{name: "ipv6", pkt: append([]byte{0x60}, make([]byte, 39)...), wantErr: ErrNotIPv4},
		{name: "ihl too small", pkt: func() []byte { b := ipv4("10.99.0.1", "10.99.0.2", 6, 0); b[0] = 0x44; return b }(), wantErr: ErrBadHeader},
		{name: "ihl beyond packet", pkt: func() []byte { b := ipv4("10.99.0.1", "10.99.0.2", 6, 0); b[0] = 0x4f; return b }(), wantErr: ErrBadHeader},
		{name: "total length beyond packet", pkt: func() []byte {
			b := ipv4("10.99.0.1", "10.99.0.2", 6, 4)
			binary.BigEndian.PutUint16(b[2:4], 100)
			return b
		}(), wantErr: ErrBadLength},
		{name: "multicast", pkt: ipv4("10.99.0.1", "224.0.0.22", 2, 8), wantErr: ErrBadAddress},
		{name: "broadcast", pkt: ipv4("10.99.0.1", "255.255.255.255", 17, 8), wantErr: ErrBadAddress},
		{name: "trailing bytes allowed", pkt: append(ipv4("10.99.0.1", "10.99.0.3", 6, 0), 0, 0), want: Header{
			Src: netip.MustParseAddr("10.99.0.1"), Dst: netip.MustParseAddr("10.99.0.3"), Protocol: 6, Length: 20}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Parse(tc.pkt)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h != tc.want {
				t.Fatalf("got %+v, want %+v", h, tc.want)
			}
		})
	}
}

func TestParseAllocs(t *testing.T) {
	pkt := ipv4("10.99.0.1", "10.99.0.2", 6, 1000)
	if n := testing.AllocsPerRun(100, func() { _, _ = Parse(pkt) }); n != 0 {
		t.Fatalf("Parse allocates %v times per packet", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(ipv4("10.99.0.1", "10.99.0.2", 17, 8))
	f.Add(ipv4("10.99.0.2", "10.99.0.1", 6, 0))
	f.Add([]byte{0x46, 0, 0, 24, 0, 0, 0, 0, 64, 6, 0, 0, 10, 99, 0, 1, 10, 99, 0, 2, 1, 1, 1, 1})
	f.Add([]byte{0x60, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Parse(b)
		if err != nil {
			return
		}
		if h.Length < 20 || h.Length > len(b) {
			t.Fatalf("accepted length %d for %d bytes", h.Length, len(b))
		}
		if !h.Src.Is4() || !h.Dst.Is4() {
			t.Fatalf("non-IPv4 addresses %v %v", h.Src, h.Dst)
		}
	})
}
