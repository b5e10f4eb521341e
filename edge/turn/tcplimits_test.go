package turn

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

// dialFrom opens a TCP connection to addr from the local address from
// (loopback holds all of 127/8).
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 3 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitClosedByServer reads c until the server closes it, and fails if that
// takes longer than within.
func waitClosedByServer(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection from %s still open after %v", c.LocalAddr(), within)
	}
}

// streamClient is a pion TURN client over the TCP or TLS connection conn.
func streamClient(t *testing.T, conn net.Conn) *pionturn.Client {
	t.Helper()
	c := cred(t, testSecret, "app", "alice", time.Hour)
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{
		TURNServerAddr: conn.RemoteAddr().String(), STUNServerAddr: conn.RemoteAddr().String(),
		Username: c.Username, Password: c.Password, Realm: "longlink", Conn: pionturn.NewSTUNConn(conn),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// allocateOver allocates a UDP relay over the TCP or TLS connection conn.
func allocateOver(t *testing.T, conn net.Conn) net.PacketConn {
	t.Helper()
	relay, err := streamClient(t, conn).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	return relay
}

// A connection that does not authenticate within tcp_auth_timeout is closed,
// whether it sends nothing, stalls the TLS handshake, or only sends
// unauthenticated STUN; an authenticated one outlives the deadline.
func TestTCPAuthTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ts := newTestServer(t, func(c *Config) { c.TCPAuthTimeout = config.Duration(timeout) })
	tcpAddr, tlsAddr := ts.Addrs().TCP[0].String(), ts.Addrs().TLS[0].String()
	peer := echoPeer(t, "udp4", "127.0.0.1:0")

	authed := dialFrom(t, "127.0.0.1", tcpAddr)
	relay := allocateOver(t, authed)

	binding := func(c net.Conn) {
		m := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := c.Write(m.Raw); err != nil {
			t.Fatal(err)
		}
		resp := &stun.Message{Raw: make([]byte, 1500)}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Read(resp.Raw)
		if err != nil {
			t.Fatal(err)
		}
		resp.Raw = resp.Raw[:n]
		if err := resp.Decode(); err != nil || resp.Type != stun.BindingSuccess {
			t.Fatalf("binding answer %v, %v", resp.Type, err)
		}
	}
	cases := map[string]func() net.Conn{
		"tcp silent": func() net.Conn { return dialFrom(t, "127.0.0.1", tcpAddr) },
		"tcp unauthenticated binding": func() net.Conn {
			c := dialFrom(t, "127.0.0.1", tcpAddr)
			binding(c)
			return c
		},
		"tls no handshake": func() net.Conn { return dialFrom(t, "127.0.0.1", tlsAddr) },
		"tls unauthenticated binding": func() net.Conn {
			c := tls.Client(dialFrom(t, "127.0.0.1", tlsAddr), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test cert
			binding(c)
			return c
		},
	}
	for name, open := range cases {
		t.Run(name, func(t *testing.T) {
			// Before the fix these stayed open for tcp_idle_timeout (15m).
			waitClosedByServer(t, open(), 10*timeout)
		})
	}
	if got := ts.refusals(refuseTCPAuth); got != float64(len(cases)) {
		t.Fatalf("tcp_auth_timeout refusals = %v, want %d", got, len(cases))
	}
	// Every case waited out a deadline set after the authenticated
	// connection's: that one is still relaying.
	if err := roundTrip(t, relay, peer.LocalAddr(), "still here"); err != nil {
		t.Fatal(err)
	}
}

// One client address can hold at most max_tcp_connections_per_ip
// connections over the TCP and TLS listeners together; the others are
// closed at once and counted, and other addresses are not affected.
func TestTCPConnectionsPerIP(t *testing.T) {
	const perIP = 5
	ts := newTestServer(t, func(c *Config) { c.MaxTCPConnectionsPerIP = perIP })
	tcpAddr, tlsAddr := ts.Addrs().TCP[0].String(), ts.Addrs().TLS[0].String()

	var held []net.Conn
	for range perIP {
		held = append(held, dialFrom(t, "127.0.0.1", tcpAddr))
	}
	waittest.Until(t, 3*time.Second, "the first connections accepted", func() bool { return testutil.ToFloat64(ts.m.tcpConnsActive) == perIP })
	// A flood from the same address, on both listeners.
	const flood = 40
	for i := range flood {
		addr := tcpAddr
		if i%2 == 1 {
			addr = tlsAddr
		}
		waitClosedByServer(t, dialFrom(t, "127.0.0.1", addr), 3*time.Second)
	}
	if got := ts.refusals(refuseTCPConnsPerIP); got != flood {
		t.Fatalf("tcp_connection_limit_per_ip refusals = %v, want %d", got, flood)
	}
	if got := testutil.ToFloat64(ts.m.tcpConnsActive); got != perIP {
		t.Fatalf("%v connections open, want %d", got, perIP)
	}
	// Another address still gets service.
	allocateOver(t, dialFrom(t, "127.0.0.2", tcpAddr))
	// A slot given back is usable again.
	_ = held[0].Close()
	waittest.Until(t, 3*time.Second, "a connection released", func() bool { return testutil.ToFloat64(ts.m.tcpConnsActive) == perIP })
	allocateOver(t, dialFrom(t, "127.0.0.1", tcpAddr))
}

func TestClientAddrKey(t *testing.T) {
	tests := []struct{ a, b string }{
		{"203.0.113.7:1", "203.0.113.7:2"},
		{"[::ffff:203.0.113.7]:1", "203.0.113.7:2"},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:2"},
	}
	for _, tt := range tests {
		if clientAddrKey(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tt.a))) != clientAddrKey(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tt.b))) {
			t.Errorf("%s and %s are counted apart", tt.a, tt.b)
		}
	}
	if clientAddrKey(net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[2001:db8:1:2::1]:1"))) ==
		clientAddrKey(net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[2001:db8:1:3::1]:1"))) {
		t.Error("two /64s are counted together")
	}
}
