package relay

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

type fakeConn struct {
	net.Conn
	remote net.Addr
}

func (f fakeConn) RemoteAddr() net.Addr { return f.remote }

func TestProxyHeader(t *testing.T) {
	tests := []struct {
		client, dst string
		wantSrc     string
	}{
		{"198.51.100.7:4000", "127.0.0.1:7710", "198.51.100.7:4000"},
		{"[2001:db8::7]:4000", "[::1]:7710", "[2001:db8::7]:4000"},
		{"[2001:db8::7]:4000", "127.0.0.1:7710", "[2001:db8::7]:4000"}, // mixed families
		{"198.51.100.7:4000", "[::1]:7710", "198.51.100.7:4000"},
	}
	for _, tc := range tests {
		t.Run(tc.client+"->"+tc.dst, func(t *testing.T) {
			dst := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tc.dst))
			h := proxyHeader(netip.MustParseAddrPort(tc.client), fakeConn{remote: dst})
			var b bytes.Buffer
			if _, err := h.WriteTo(&b); err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b.Bytes(), []byte("\r\n\r\n\x00\r\nQUIT\n\x21")) {
				t.Fatalf("not a PROXY v2 PROXY-command header: %x", b.Bytes())
			}
			got, err := proxyproto.Read(bufio.NewReader(&b))
			if err != nil {
				t.Fatal(err)
			}
			if got.SourceAddr.String() != tc.wantSrc {
				t.Fatalf("source %s, want %s", got.SourceAddr, tc.wantSrc)
			}
		})
	}
	// No client address: a LOCAL header.
	h := proxyHeader(netip.AddrPort{}, fakeConn{remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}})
	var b bytes.Buffer
	if _, err := h.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	got, err := proxyproto.Read(bufio.NewReader(&b))
	if err != nil || got.Command != proxyproto.LOCAL {
		t.Fatalf("LOCAL header: %+v %v", got, err)
	}
}

// FuzzProxyHeader covers the PROXY path end to end: any client address the
// tunnel header can carry must produce a v2 header that the decoder the
// gateways use (go-proxyproto) reads back to the same source, and the decoder
// must survive arbitrary bytes.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte{198, 51, 100, 7}, uint16(4000), []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01\x00\x01\x00\x02"))
	f.Add(bytes.Repeat([]byte{0x20}, 16), uint16(443), []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"))
	f.Add([]byte{}, uint16(0), []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, ip []byte, port uint16, raw []byte) {
		_, _ = proxyproto.Read(bufio.NewReader(bytes.NewReader(raw)))

		var client netip.AddrPort
		switch len(ip) {
		case 4:
			client = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip)), port)
		case 16:
			client = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip)).Unmap(), port)
		default:
			return
		}
		dst := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7710}
		var b bytes.Buffer
		if _, err := proxyHeader(client, fakeConn{remote: dst}).WriteTo(&b); err != nil {
			t.Fatalf("write: %v", err)
		}
		got, err := proxyproto.Read(bufio.NewReader(&b))
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		src, ok := got.SourceAddr.(*net.TCPAddr)
		if !ok || src.AddrPort() != netip.AddrPortFrom(client.Addr().Unmap(), port) {
			// go-proxyproto returns IPv4 sources as 16-byte IPs; compare unmapped.
			if !ok || netip.AddrPortFrom(src.AddrPort().Addr().Unmap(), src.AddrPort().Port()) != netip.AddrPortFrom(client.Addr().Unmap(), port) {
				t.Fatalf("source %v, want %v", got.SourceAddr, client)
			}
		}
	})
}
