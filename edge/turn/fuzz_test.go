package turn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

func fuzzServer(f *testing.F) *Server {
	cfg := Default()
	cfg.Secrets = []turncred.Secret{{ID: "k1", Value: config.NewSecret(testSecret)}}
	s, err := New(cfg, Deps{})
	if err != nil {
		f.Fatal(err)
	}
	return s
}

func signedAllocate(f *testing.F) []byte {
	c, err := turncred.NewKeyring([]turncred.Secret{{ID: "k1", Value: config.NewSecret(testSecret)}})
	if err != nil {
		f.Fatal(err)
	}
	cr, _ := c.Issue("app", "alice", time.Hour, time.Now())
	key := pionturn.GenerateAuthKey(cr.Username, "longlink", cr.Password)
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.NewUsername(cr.Username), stun.NewRealm("longlink"), stun.NewNonce("n"), stun.MessageIntegrity(key))
	if err != nil {
		f.Fatal(err)
	}
	return m.Raw
}

// FuzzInspect feeds arbitrary datagrams to the credential pre-check that
// runs before pion on every listener socket.
func FuzzInspect(f *testing.F) {
	s := fuzzServer(f)
	f.Add(signedAllocate(f))
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4})
	f.Add([]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	f.Fuzz(func(t *testing.T, b []byte) {
		if k := s.inspect(b, from); k != "" {
			s.auth.forget(k)
		}
	})
}

type bytesConn struct {
	net.Conn
	r io.Reader
}

func (c *bytesConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *bytesConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }
func (c *bytesConn) Close() error                     { return nil }

// FuzzStreamFraming feeds an arbitrary byte stream to the TCP/TLS framing
// layer: it must never panic nor return more than asked.
func FuzzStreamFraming(f *testing.F) {
	s := fuzzServer(f)
	f.Add(signedAllocate(f))
	f.Add(append([]byte{0x40, 0x01, 0x00, 0x03, 'a', 'b', 'c', 0}, signedAllocate(f)...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		l := newAuthListener(s, nil, 1, newClientAddrCounts(1))
		l.slots <- struct{}{}
		c := &authStreamConn{Conn: &bytesConn{r: bytes.NewReader(b)}, l: l}
		c.br = bufio.NewReaderSize(c.Conn, 4096)
		buf := make([]byte, 1600)
		for i := 0; i < 100; i++ {
			n, err := c.Read(buf)
			if n > len(buf) {
				t.Fatalf("read %d > %d", n, len(buf))
			}
			if err != nil {
				break
			}
		}
		if c.last != "" {
			s.auth.forget(c.last)
		}
	})
}

// FuzzClientChannelData feeds arbitrary client datagrams to the fast path's
// ChannelData decoder (the relay poller calls it for every datagram read
// from a UDP listener): it relays exactly the well-formed frames of the
// bound channel, their payload and nothing else, to the bound peer.
func FuzzClientChannelData(f *testing.F) {
	s := fuzzServer(f)
	relaySock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	defer relaySock.Close()
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	defer sink.Close()
	const number = 0x4001
	client := netip.MustParseAddrPort("127.0.0.1:5000")
	local := netip.MustParseAddrPort("127.0.0.1:3478")
	raw, err := relaySock.SyscallConn()
	if err != nil {
		f.Fatal(err)
	}
	rc := &relayPacketConn{PacketConn: relaySock, s: s, user: &userState{}, udp: relaySock, raw: raw}
	rc.setChannel(sink.LocalAddr().(*net.UDPAddr).AddrPort(), number, true)
	s.fast.byClient[clientKey{client, local}] = rc

	f.Add([]byte{0x40, 0x01, 0x00, 0x04, 1, 2, 3, 4})
	f.Add([]byte{0x40, 0x01, 0x00, 0x03, 1, 2, 3, 0}) // padded
	f.Add([]byte{0x40, 0x02, 0x00, 0x01, 9})          // another channel
	f.Add([]byte{0x40, 0x01, 0x00, 0x09, 1, 2})       // length past the end
	f.Add([]byte{0x00, 0x01, 0x00, 0x00})
	buf := make([]byte, 2048)
	f.Fuzz(func(t *testing.T, b []byte) {
		want := len(b) >= 4 && b[0]&0xC0 == 0x40 && binary.BigEndian.Uint16(b) == number &&
			int(binary.BigEndian.Uint16(b[2:])) <= len(b)-4
		if got := s.clientChannelData(b, client, local); got != want {
			t.Fatalf("relayed = %v, want %v", got, want)
		}
		if !want {
			return
		}
		_ = sink.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := sink.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if payload := b[4 : 4+int(binary.BigEndian.Uint16(b[2:]))]; !bytes.Equal(buf[:n], payload) {
			t.Fatalf("peer got %x, want %x", buf[:n], payload)
		}
	})
}
