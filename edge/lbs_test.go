package edge

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/lbs"
	"github.com/longlink/longlink/lbs/nodeclient"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

// testLBS is a real single-member LBS on loopback with the dev policy for
// the given entry points, and an operator client for its admin API.
type testLBS struct {
	t     *testing.T
	l     *lbs.LBS
	cfg   lbs.Config
	admin *http.Client
}

func startLBS(t *testing.T, eps ...lbs.DevEntryPoint) *testLBS {
	t.Helper()
	dir := t.TempDir()
	cfg, err := lbs.DevConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClientListen, cfg.AdminListen, cfg.RaftListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.DNS.Listen = ""
	cfg.Cluster.HeartbeatTimeout = config.Duration(300 * time.Millisecond)
	cfg.Cluster.ElectionTimeout = config.Duration(300 * time.Millisecond)
	cfg.Cluster.LeaderLease = config.Duration(200 * time.Millisecond)
	l, err := lbs.New(cfg, lbs.Deps{Registerer: prometheus.NewRegistry(), Logger: testLogger(t).With("node", "lbs")})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	doc, err := lbs.DevPolicy("demo", eps...)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err = l.ApplyPolicy(ctx, doc, "test"); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &testLBS{t: t, l: l, cfg: cfg, admin: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: l.CAPool()}}}}
}

// node is the nodeclient config an entry point reports with.
func (s *testLBS) node(id string) *nodeclient.Config {
	return &nodeclient.Config{Servers: []string{"https://" + s.l.AdminAddr().String()}, Node: id,
		Token: s.cfg.NodeToken, RootCAs: s.l.CAPool(), Interval: config.Duration(50 * time.Millisecond)}
}

func (s *testLBS) do(method, path, body string) {
	s.t.Helper()
	req, _ := http.NewRequest(method, "https://"+s.l.AdminAddr().String()+path, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+s.cfg.AdminToken.Reveal())
	resp, err := s.admin.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("%s %s: %s: %s", method, path, resp.Status, b)
	}
}

// turnAllocates reports whether the TURN server at addr grants an
// allocation to a credential signed with secret.
func turnAllocates(t *testing.T, addr net.Addr, secret string) bool {
	t.Helper()
	k, err := turncred.NewKeyring([]turncred.Secret{{ID: "x", Value: config.NewSecret(secret)}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.Issue("demo", "alice", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{
		TURNServerAddr: addr.String(), STUNServerAddr: addr.String(),
		Username: c.Username, Password: c.Password, Realm: "longlink",
		Conn: conn, RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := cl.Allocate()
	if err != nil {
		return false
	}
	_ = relayConn.Close()
	return true
}

// The edge's TURN server takes its shared secrets from the LBS: the
// configured set until the LBS's arrives, then the LBS's, following a
// rotation (add new, remove old); an LBS with no secrets leaves the set as
// it is.
func TestEdgeTURNSecretsFromLBS(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	const cfgSecret, s1, s2 = "edge-configured-secret-0123456789", "lbs-turn-secret-one-0123456789", "lbs-turn-secret-two-0123456789"
	s := startLBS(t, lbs.DevEntryPoint{ID: "edge-1", Kind: "edge", Link: "127.0.0.1:7720", TURN: "127.0.0.1:7730"})
	w := newWorld(t, "mem", memCreds(), func(c *Config) {
		c.TURN.Enabled = true
		c.TURN.UDP = []string{"127.0.0.1:0"}
		c.TURN.TCP, c.TURN.TLS = nil, nil
		c.TURN.UDPSockets = 1
		c.TURN.Secrets = []turncred.Secret{{ID: "cfg", Value: config.NewSecret(cfgSecret)}}
		c.LBS = s.node("edge-1")
	})
	addr := w.edge.TURN().Addrs().UDP[0]
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// the LBS holds no secrets yet: the configured one keeps working
	time.Sleep(200 * time.Millisecond)
	if !turnAllocates(t, addr, cfgSecret) {
		t.Fatal("configured secret refused while the LBS has none")
	}
	s.do("POST", "/v1/turn-secrets", `{"id":"t1","secret":"`+s1+`"}`)
	eventually("LBS secret t1 never accepted", func() bool { return turnAllocates(t, addr, s1) })
	if turnAllocates(t, addr, cfgSecret) {
		t.Fatal("the configured secret is still accepted after the LBS's set arrived")
	}
	s.do("POST", "/v1/turn-secrets", `{"id":"t2","secret":"`+s2+`"}`)
	eventually("LBS secret t2 never accepted", func() bool { return turnAllocates(t, addr, s2) })
	if !turnAllocates(t, addr, s1) {
		t.Fatal("t1 refused while both are live")
	}
	s.do("DELETE", "/v1/turn-secrets/t1", "")
	eventually("old secret t1 still accepted after its removal", func() bool { return !turnAllocates(t, addr, s1) })
	if !turnAllocates(t, addr, s2) {
		t.Fatal("t2 refused after rotation")
	}
}

// The edge's route to its cluster follows the policy's topology: with no
// topology entry it keeps its configured relays; then the LBS's relays and
// cores (tunnel addresses from the routing document) replace them, and a
// change of topology changes the route again. Traffic flows over each.
func TestEdgeUplinksFromLBS(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	s := startLBS(t, lbs.DevEntryPoint{ID: "edge-1", Kind: "edge", Link: "127.0.0.1:7720"})
	w := newWorld(t, "quic", pkiCreds(t), func(c *Config) { c.LBS = s.node("edge-1") })
	names := func() []string {
		var out []string
		for _, p := range w.edge.Router().Paths() {
			out = append(out, p.Name)
		}
		return out
	}
	// primary is one of primaries: among several relays the router picks
	// by measured quality, not by the policy's order
	waitRoute := func(wantPaths []string, primaries ...string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !slices.Equal(names(), wantPaths) || !slices.Contains(primaries, w.edge.Router().Primary("demo")) || !tryHTTP(w.edge.Addr("weblink").String(), nil) {
			if time.Now().After(deadline) {
				t.Fatalf("paths %v primary %q, want %v primary in %q", names(), w.edge.Router().Primary("demo"), wantPaths, primaries)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// no topology entry for edge-1 yet: the configured relays stay
	time.Sleep(300 * time.Millisecond)
	if got := names(); !slices.Equal(got, []string{"relay-1", "relay-2"}) {
		t.Fatalf("paths %v before any topology", got)
	}
	apply := func(topology string) {
		t.Helper()
		tunnel := func(id string, n interface{ Addr(string) net.Addr }) string {
			return fmt.Sprintf("  - {id: %s, kind: %s, site: %s, tunnel: {quic: %q}}\n", id,
				map[bool]string{true: "egress", false: "relay"}[id == "core-egress"], id, n.Addr("quic").String())
		}
		doc := "description: uplinks test\n" +
			"apps: [{appkey: demo, pools: [p]}]\n" +
			"pools: [{name: p, entry_points: [edge-1]}]\n" +
			"entry_points:\n" +
			"  - {id: edge-1, kind: edge, site: e1, link: \"127.0.0.1:7720\"}\n" +
			tunnel("relay-1", w.relays["relay-1"]) + tunnel("relay-2", w.relays["relay-2"]) +
			tunnel("relay-3", w.relays["relay-3"]) + tunnel("core-egress", w.egress) +
			"topology:\n" + topology
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := s.l.ApplyPolicy(ctx, []byte(doc), "test"); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
	}
	apply("  - {edge: edge-1, relays: [relay-3], cores: [core-egress]}\n")
	waitRoute([]string{"core-egress", "relay-3"}, "relay-3")
	apply("  - {edge: edge-1, cores: [core-egress]}\n")
	waitRoute([]string{"core-egress"}, "core-egress")
	apply("  - {edge: edge-1, relays: [relay-2, relay-1], cores: [core-egress]}\n")
	waitRoute([]string{"core-egress", "relay-1", "relay-2"}, "relay-1", "relay-2")
	if n := testutil.ToFloat64(w.edge.m.uplinkUpdates); n != 3 {
		t.Fatalf("uplink updates %v, want 3", n)
	}
}
