package turn

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
	"github.com/longlink/longlink/pkg/waittest"
)

const (
	testSecret  = "test-secret-0123456789"
	testSecret2 = "second-secret-0123456789"
)

type testServer struct {
	*Server
	reg *prometheus.Registry
	now time.Time
	mu  sync.Mutex
}

// newTestServer starts a server on 127.0.0.1 port 0. Unless mutate says
// otherwise, loopback peers are allowed so that tests can relay to local
// sockets.
func newTestServer(t *testing.T, mutate func(*Config)) *testServer {
	t.Helper()
	cfg := Default()
	cfg.UDP = []string{"127.0.0.1:0"}
	cfg.TCP = []string{"127.0.0.1:0"}
	cfg.TLS = []string{"127.0.0.1:0"}
	cfg.UDPSockets = 2
	cfg.Secrets = []turncred.Secret{{ID: "k1", Value: config.NewSecret(testSecret)}}
	cfg.Peers.Allow = []string{"127.0.0.0/8"}
	if mutate != nil {
		mutate(&cfg)
	}
	ts := &testServer{reg: prometheus.NewRegistry(), now: time.Now()}
	srv, err := New(cfg, Deps{Registerer: ts.reg, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	ts.Server = srv
	return ts
}

func (ts *testServer) refusals(reason string) float64 {
	return testutil.ToFloat64(ts.m.refusals.WithLabelValues(reason))
}

func cred(t *testing.T, secret, app, account string, ttl time.Duration) turncred.Credential {
	t.Helper()
	kr, err := turncred.NewKeyring([]turncred.Secret{{ID: "x", Value: config.NewSecret(secret)}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := kr.Issue(app, account, ttl, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// udpClient is a pion TURN client over UDP.
func udpClient(t *testing.T, server net.Addr, c turncred.Credential) *pionturn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{
		TURNServerAddr: server.String(), STUNServerAddr: server.String(),
		Username: c.Username, Password: c.Password, Realm: "longlink",
		Conn: conn, RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); _ = conn.Close() })
	return cl
}

// echoPeer answers every UDP datagram with the same bytes.
func echoPeer(t *testing.T, network, addr string) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return pc
}

func roundTrip(t *testing.T, relay net.PacketConn, peer net.Addr, msg string) error {
	t.Helper()
	if _, err := relay.WriteTo([]byte(msg), peer); err != nil {
		return err
	}
	_ = relay.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := relay.ReadFrom(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != msg || from.String() != peer.String() {
		return fmt.Errorf("got %q from %v, want %q from %v", buf[:n], from, msg, peer)
	}
	return nil
}

func TestRelayUDP(t *testing.T) {
	ts := newTestServer(t, nil)
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	cl := udpClient(t, ts.Addrs().UDP[0], cred(t, testSecret, "app", "alice", time.Hour))
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if !strings.HasPrefix(relay.LocalAddr().String(), "127.0.0.1:") {
		t.Fatalf("relay address %v", relay.LocalAddr())
	}
	for i := 0; i < 5; i++ {
		if err := roundTrip(t, relay, peer.LocalAddr(), fmt.Sprintf("media-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(ts.m.allocationsActive); got != 1 {
		t.Fatalf("allocations_active = %v", got)
	}
	// Counters move right after the syscalls, and the client binds its
	// channel in the background: wait for them.
	waittest.Until(t, 3*time.Second, "5 packets to the peer", func() bool { return testutil.ToFloat64(ts.m.packetsToPeer) >= 5 })
	waittest.Until(t, 3*time.Second, "5 datagrams' bytes to the client", func() bool { return testutil.ToFloat64(ts.m.bytesToClient) >= float64(5*len("media-0")) })
	waittest.Until(t, 3*time.Second, "a channel and a permission", func() bool {
		return testutil.ToFloat64(ts.m.channelsCreated) >= 1 && testutil.ToFloat64(ts.m.permissionsCreated) >= 1
	})
	// Once the channel is bound, data takes the fast path both ways.
	waittest.Until(t, 3*time.Second, "the channel on the fast path", func() bool {
		ts.fast.mu.RLock()
		defer ts.fast.mu.RUnlock()
		for _, rc := range ts.fast.byClient {
			rc.chMu.RLock()
			n := len(rc.ch.byNumber)
			rc.chMu.RUnlock()
			return n == 1
		}
		return false
	})
	for i := 0; i < 20; i++ {
		if err := roundTrip(t, relay, peer.LocalAddr(), fmt.Sprintf("fast-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waittest.Until(t, 3*time.Second, "25 packets to the client", func() bool { return testutil.ToFloat64(ts.m.packetsToClient) >= 25 })
	if testutil.ToFloat64(ts.m.credentialsAccepted.WithLabelValues("k1")) == 0 {
		t.Fatal("accepted credential not counted by secret id")
	}
	_ = relay.Close()
	waittest.Until(t, 3*time.Second, "no allocation left", func() bool { return ts.Allocations() == 0 })
	if got := testutil.ToFloat64(ts.m.allocationsDeleted); got != 1 {
		t.Fatalf("allocations_deleted = %v", got)
	}
}

func TestDefaultConfigDeniesLoopbackAndMetadataPeers(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Peers.Allow = nil })
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	cl := udpClient(t, ts.Addrs().UDP[0], cred(t, testSecret, "app", "alice", time.Hour))
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	for _, p := range []net.Addr{peer.LocalAddr(), &net.UDPAddr{IP: net.ParseIP("169.254.169.254"), Port: 80}, &net.UDPAddr{IP: net.ParseIP("10.0.0.1"), Port: 5000}} {
		if err := cl.CreatePermission(p); err == nil {
			t.Fatalf("permission to %v granted", p)
		}
	}
	if got := ts.refusals(refusePeer); got < 3 {
		t.Fatalf("peer_denied = %v, want >= 3", got)
	}
	// Data to the loopback peer never arrives.
	_, _ = relay.WriteTo([]byte("x"), peer.LocalAddr())
	if testutil.ToFloat64(ts.m.packetsToPeer) != 0 {
		t.Fatal("data relayed to a denied peer")
	}
}

func TestAllowListKeepsMetadataClosed(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Peers.Allow = []string{"169.254.0.0/16", "127.0.0.0/8"} })
	cl := udpClient(t, ts.Addrs().UDP[0], cred(t, testSecret, "app", "alice", time.Hour))
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if err := cl.CreatePermission(&net.UDPAddr{IP: net.ParseIP("169.254.169.254"), Port: 80}); err == nil {
		t.Fatal("metadata address opened by a wide allow entry")
	}
	if err := cl.CreatePermission(&net.UDPAddr{IP: net.ParseIP("169.254.10.10"), Port: 80}); err != nil {
		t.Fatalf("allowed link-local peer refused: %v", err)
	}
}

func TestCredentialsRefused(t *testing.T) {
	ts := newTestServer(t, nil)
	good := cred(t, testSecret, "app", "alice", time.Hour)
	tests := []struct {
		name   string
		c      turncred.Credential
		reason string
	}{
		{name: "expired", c: cred(t, testSecret, "app", "alice", -time.Minute), reason: refuseExpired},
		{name: "forged password", c: turncred.Credential{Username: good.Username, Password: "bm90IHRoZSBwYXNzd29yZA=="}, reason: refuseBadCredential},
		{name: "unknown secret", c: cred(t, "some-other-secret-123456", "app", "alice", time.Hour), reason: refuseBadCredential},
		{name: "malformed username", c: turncred.Credential{Username: "alice", Password: turncred.Password(testSecret, "alice")}, reason: refuseMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ts.refusals(tt.reason)
			cl := udpClient(t, ts.Addrs().UDP[0], tt.c)
			if _, err := cl.Allocate(); err == nil {
				t.Fatal("allocation granted")
			}
			if ts.refusals(tt.reason) <= before {
				t.Fatalf("refusal %s not counted", tt.reason)
			}
		})
	}
	if ts.Allocations() != 0 {
		t.Fatalf("allocations = %d", ts.Allocations())
	}
}

func TestSecretRotation(t *testing.T) {
	ts := newTestServer(t, nil)
	old := cred(t, testSecret, "app", "alice", time.Hour)
	if err := ts.SetSecrets([]turncred.Secret{
		{ID: "k2", Value: config.NewSecret(testSecret2)},
		{ID: "k1", Value: config.NewSecret(testSecret)},
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []turncred.Credential{old, cred(t, testSecret2, "app", "bob", time.Hour)} {
		cl := udpClient(t, ts.Addrs().UDP[0], c)
		r, err := cl.Allocate()
		if err != nil {
			t.Fatalf("%s: %v", c.Username, err)
		}
		_ = r.Close()
	}
	if err := ts.SetSecrets([]turncred.Secret{{ID: "k2", Value: config.NewSecret(testSecret2)}}); err != nil {
		t.Fatal(err)
	}
	cl := udpClient(t, ts.Addrs().UDP[0], old)
	if _, err := cl.Allocate(); err == nil {
		t.Fatal("credential of a retired secret accepted")
	}
}

func TestQuotas(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Quotas = QuotaConfig{PerUser: 2, PerApp: 3} })
	srv := ts.Addrs().UDP[0]
	alloc := func(app, account string) (net.PacketConn, error) {
		return udpClient(t, srv, cred(t, testSecret, app, account, time.Hour)).Allocate()
	}
	a1, err := alloc("app", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alloc("app", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := alloc("app", "alice"); err == nil {
		t.Fatal("third allocation of alice granted (per_user 2)")
	}
	if ts.refusals(refuseQuotaUser) == 0 {
		t.Fatal("quota_user not counted")
	}
	if _, err := alloc("app", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := alloc("app", "carol"); err == nil {
		t.Fatal("fourth allocation of app granted (per_app 3)")
	}
	if ts.refusals(refuseQuotaApp) == 0 {
		t.Fatal("quota_app not counted")
	}
	if _, err := alloc("other", "carol"); err != nil {
		t.Fatalf("another app is not limited by app's quota: %v", err)
	}
	// Releasing one of alice's allocations frees her quota.
	_ = a1.Close()
	waittest.Until(t, 3*time.Second, "3 allocations", func() bool { return ts.Allocations() == 3 })
	if _, err := alloc("app", "alice"); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestBandwidthLimits(t *testing.T) {
	for _, tt := range []struct {
		name   string
		limits LimitConfig
		reason string
	}{
		{name: "allocation", limits: LimitConfig{AllocationKbps: 80}, reason: dropAllocBandwidth},
		{name: "user", limits: LimitConfig{UserKbps: 80}, reason: dropUserBandwidth},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, func(c *Config) { c.Limits = tt.limits })
			peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			relay, err := udpClient(t, ts.Addrs().UDP[0], cred(t, testSecret, "app", "alice", time.Hour)).Allocate()
			if err != nil {
				t.Fatal(err)
			}
			defer relay.Close()
			// 80 kbit/s is 10 kB/s with a 3.2 kB burst: of 100 packets of
			// 1000 B sent at once, a handful pass in the first half second.
			payload := make([]byte, 1000)
			start := time.Now()
			for i := 0; i < 100; i++ {
				if _, err := relay.WriteTo(payload, peer.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			got := 0
			buf := make([]byte, 2048)
			for {
				_ = peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				if _, _, err := peer.ReadFrom(buf); err != nil {
					break
				}
				got++
			}
			elapsed := time.Since(start).Seconds()
			limit := int(3 + elapsed*10 + 1)
			if got == 0 || got > limit {
				t.Fatalf("peer received %d packets in %.2fs, want 1..%d", got, elapsed, limit)
			}
			var dropped float64
			if tt.reason == dropUserBandwidth {
				dropped = testutil.ToFloat64(ts.m.droppedUserBW)
			} else {
				dropped = testutil.ToFloat64(ts.m.droppedAllocBW)
			}
			if dropped < float64(100-limit) {
				t.Fatalf("dropped %v packets, want >= %d", dropped, 100-limit)
			}
		})
	}
}

func TestDrain(t *testing.T) {
	ts := newTestServer(t, nil)
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	relay, err := udpClient(t, ts.Addrs().UDP[0], cred(t, testSecret, "app", "alice", time.Hour)).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	ts.Drain()
	if _, err := udpClient(t, ts.Addrs().UDP[0], cred(t, testSecret, "app", "bob", time.Hour)).Allocate(); err == nil {
		t.Fatal("allocation granted while draining")
	}
	if ts.refusals(refuseDraining) == 0 {
		t.Fatal("draining refusal not counted")
	}
	if err := roundTrip(t, relay, peer.LocalAddr(), "still relaying"); err != nil {
		t.Fatalf("existing allocation stopped relaying: %v", err)
	}
	// Shutdown waits for the allocation until its context ends, then closes it.
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		done <- ts.Shutdown(ctx)
	}()
	select {
	case err := <-done:
		t.Fatalf("shutdown returned before the drain time: %v", err)
	case <-time.After(150 * time.Millisecond):
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ts.Allocations() != 0 {
		t.Fatalf("allocations after shutdown: %d", ts.Allocations())
	}
}

func TestTCPAndTLSControlConnections(t *testing.T) {
	ts := newTestServer(t, nil)
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	dial := map[string]func() (net.Conn, error){
		"tcp": func() (net.Conn, error) { return net.Dial("tcp", ts.Addrs().TCP[0].String()) },
		"tls": func() (net.Conn, error) {
			return tls.Dial("tcp", ts.Addrs().TLS[0].String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test cert
		},
	}
	for name, d := range dial {
		t.Run(name, func(t *testing.T) {
			conn, err := d()
			if err != nil {
				t.Fatal(err)
			}
			relay := allocateOver(t, conn)
			if err := roundTrip(t, relay, peer.LocalAddr(), "over "+name); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTCPRelayRFC6062(t *testing.T) {
	ts := newTestServer(t, nil)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	c := cred(t, testSecret, "app", "alice", time.Hour)
	conn, err := net.Dial("tcp", ts.Addrs().TCP[0].String())
	if err != nil {
		t.Fatal(err)
	}
	alloc, err := streamClient(t, conn).AllocateTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer alloc.Close()
	if testutil.ToFloat64(ts.m.relaysActiveTCP) != 1 {
		t.Fatal("tcp relay not counted")
	}
	dc, err := alloc.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	msg := []byte("a TCP relay through RFC 6062")
	if _, err := dc.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	_ = dc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(dc, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo %q", got)
	}
	// A TCP relay requested over UDP is refused.
	if _, err := udpClient(t, ts.Addrs().UDP[0], c).AllocateTCP(); err == nil {
		t.Fatal("TCP relay over a UDP control connection granted")
	}
	if ts.refusals(refuseTCPOverUDP) == 0 {
		t.Fatal("tcp_relay_over_udp not counted")
	}
}

func TestIPv6(t *testing.T) {
	probe, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	_ = probe.Close()
	ts := newTestServer(t, func(c *Config) {
		c.UDP = []string{"[::1]:0"}
		c.TCP, c.TLS = nil, nil
		c.Relay.IPv6 = "::1"
		c.Peers.Allow = []string{"::1/128"}
	})
	peer := echoPeer(t, "udp6", "[::1]:0")
	conn, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := cred(t, testSecret, "app", "alice", time.Hour)
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{
		TURNServerAddr: ts.Addrs().UDP[0].String(), STUNServerAddr: ts.Addrs().UDP[0].String(),
		Username: c.Username, Password: c.Password, Realm: "longlink", Conn: conn,
		RequestedAddressFamily: pionturn.RequestedAddressFamilyIPv6,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if !strings.HasPrefix(relay.LocalAddr().String(), "[::1]:") {
		t.Fatalf("relay address %v", relay.LocalAddr())
	}
	if err := roundTrip(t, relay, peer.LocalAddr(), "v6"); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{name: "defaults need a secret", yaml: "", want: []string{"secrets"}},
		{name: "ok", yaml: "secrets: [{id: a, secret: long-enough-secret-0}]\n"},
		{name: "unknown key", yaml: "secrets: [{id: a, secret: long-enough-secret-0}]\nrelm: x\n", want: []string{"test.yaml:2"}},
		{name: "many problems", yaml: `
realm: ""
udp: ["nope"]
relay: {ipv4: "::1", min_port: 10}
peers: {allow: ["10.0.0.0/33"]}
quotas: {per_user: -1}
secrets: [{id: a, secret: short}]
max_tcp_connections_per_ip: 0
tcp_auth_timeout: 5m
`, want: []string{"realm", "udp[0]", "relay.ipv4", "min_port", "peers.allow[0]", "quotas", "shorter than 16",
			"max_tcp_connections_per_ip", "tcp_auth_timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			err := config.Decode("test.yaml", []byte(tt.yaml), &cfg)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	var b safeBuilder
	cfg := Default()
	cfg.Secrets = []turncred.Secret{{ID: "k1", Value: config.NewSecret(testSecret)}}
	cfg.UDP, cfg.TCP, cfg.TLS = []string{"127.0.0.1:0"}, nil, nil
	srv, err := New(cfg, Deps{Logger: slogTo(&b)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = srv.SetSecrets([]turncred.Secret{{ID: "k2", Value: config.NewSecret(testSecret2)}})
	_ = srv.Shutdown(context.Background())
	if strings.Contains(b.String(), testSecret) || strings.Contains(b.String(), testSecret2) {
		t.Fatal("secret in logs")
	}
	if !strings.Contains(b.String(), "k2") {
		t.Fatalf("secret ids not logged: %s", b.String())
	}
}

// TestReusePortSteersByClientIP checks that two sockets of one client IP
// reach the same listener socket (so RESERVATION-TOKEN works), while the
// sockets of the group all serve.
func TestReusePortSteersByClientIP(t *testing.T) {
	conns, err := listenUDPReusePort(context.Background(), slogTo(io.Discard), "127.0.0.1:0", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	hits := make([]int, len(conns))
	for i := 0; i < 20; i++ {
		cl, err := net.Dial("udp4", conns[0].LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = cl.Write([]byte("x"))
		_ = cl.Close()
	}
	buf := make([]byte, 16)
	for i, c := range conns {
		for {
			_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, _, err := c.ReadFrom(buf); err != nil {
				break
			}
			hits[i]++
		}
	}
	used := 0
	for _, h := range hits {
		if h > 0 {
			used++
		}
	}
	if used != 1 {
		t.Fatalf("datagrams of one client IP spread over sockets: %v", hits)
	}
}

type safeBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
