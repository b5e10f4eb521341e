package turn

import (
	"bufio"
	"bytes"
	"io"
	"net"
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

func (c *bytesConn) Read(p []byte) (int, error)      { return c.r.Read(p) }
func (c *bytesConn) RemoteAddr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (c *bytesConn) SetReadDeadline(time.Time) error { return nil }
func (c *bytesConn) Close() error                    { return nil }

// FuzzStreamFraming feeds an arbitrary byte stream to the TCP/TLS framing
// layer: it must never panic nor return more than asked.
func FuzzStreamFraming(f *testing.F) {
	s := fuzzServer(f)
	f.Add(signedAllocate(f))
	f.Add(append([]byte{0x40, 0x01, 0x00, 0x03, 'a', 'b', 'c', 0}, signedAllocate(f)...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		l := newAuthListener(s, nil, 1)
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
