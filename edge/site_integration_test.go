package edge

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/longlink/longlink/core/clustertest"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
	"github.com/longlink/longlink/relay"
)

// siteCore is the configuration of a core process of site with a gateway
// on linkAddr behind its egress on tunnelAddr (KCP, keyed by keyFile).
func siteCore(site, linkAddr, tunnelAddr, keyFile string) map[string]any {
	return map[string]any{
		"site":    site,
		"roles":   map[string]any{"egress": true},
		"gateway": map[string]any{"listen": linkAddr, "trusted_proxies": []any{"127.0.0.1/32"}},
		"egress": map[string]any{
			"name":     "egress-" + site,
			"listen":   map[string]any{"kcp": tunnelAddr},
			"security": map[string]any{"cluster_key": "file:" + keyFile},
			"services": map[string]any{"link": map[string]any{"kind": "link", "address": linkAddr}},
		},
	}
}

// TestEdgeSiteFailover: an edge whose route knows the core egresses of two
// sites (real core processes on NATS and PostgreSQL) carries SDK clients
// to its home site sh-a; SIGKILL of every core process of sh-a (gateway
// with its egress, service node) while they send moves them, through the
// same edge, to sh-b within seconds: each client reconnects, every acked
// message is delivered exactly once, and new flows take sh-b at once.
func TestEdgeSiteFailover(t *testing.T) {
	clustertest.Require(t)
	c := clustertest.StartCluster(t, clustertest.ClusterOptions{Gateways: 1, Services: 1,
		Service: clustertest.CoreOptions{Config: map[string]any{"site": "sh-b"}}})
	keyFile := filepath.Join(c.Env.MkDir("tunnel"), "cluster.key")
	if err := os.WriteFile(keyFile, []byte("two-site-cluster-key-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	type site struct {
		name, link, tunnel string
		gw, svc            *clustertest.Core
	}
	sites := []*site{{name: "sh-a"}, {name: "sh-b"}}
	for _, s := range sites {
		s.link, s.tunnel = c.Env.Addr("127.0.0.1"), c.Env.Addr("127.0.0.1")
		s.gw = c.AddGateway(clustertest.CoreOptions{Name: "gw-" + s.name, Config: siteCore(s.name, s.link, s.tunnel, keyFile)})
	}
	a, b := sites[0], sites[1]
	a.svc = c.AddService(clustertest.CoreOptions{Name: "svc-sh-a", Config: map[string]any{"site": "sh-a"}})

	cfg := Default()
	cfg.Name, cfg.Site = "edge-1", "sh-a"
	cfg.Link.Listen, cfg.WebLink.Listen = "127.0.0.1:0", ""
	cfg.Security.ClusterKey = config.NewSecret("two-site-cluster-key-0123456789")
	var hops []relay.Hop
	for _, s := range []*site{b, a} { // the policy's order does not matter: the home site does
		hops = append(hops, relay.Hop{Name: "egress-" + s.name, Transport: "kcp", Address: s.tunnel, Site: s.name})
	}
	cfg.Routing.Routes = []relay.Route{{Cluster: "default", NextHops: hops}}
	e, err := New(cfg, Deps{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = e.Shutdown(sctx)
	})
	waittest.Until(t, 15*time.Second, "the home site's egress as the primary path", func() bool {
		return e.Router().Primary("default") == "egress-sh-a"
	})

	// Clients through the edge: senders to receivers, all on sh-a.
	const pairs = 8
	edgeAddr := e.Addr("link").String()
	traffic := clustertest.StartPairs(t, ctx, c, pairs, func(_ int, account, token string) sdk.Config {
		sc := c.SDKConfig(account, token)
		sc.Addresses = []string{edgeAddr}
		return sc
	})
	for acc, cl := range traffic.Clients {
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		err := cl.WaitConnected(wctx)
		wcancel()
		if err != nil {
			t.Fatalf("%s: %v", acc, err)
		}
	}
	sessions := func(s *site) float64 {
		v, _ := s.gw.Metric(ctx, "longlink_gateway_sessions")
		return v
	}
	waittest.Until(t, 10*time.Second, "every client on sh-a", func() bool { return sessions(a) == 2*pairs })

	// Each sender sends every 20 ms until stopped; an ack is a promise.
	traffic.Send(ctx, 20*time.Millisecond)
	waittest.Until(t, 20*time.Second, "traffic before the kill", func() bool { return traffic.Acked() >= 10*pairs })

	killed := time.Now()
	for _, p := range []*clustertest.Core{a.gw, a.svc} {
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("SIGKILLed gw-sh-a (gateway + egress) and svc-sh-a")
	waittest.Until(t, 10*time.Second, "new flows through the edge to sh-b", func() bool {
		return e.Router().Primary("default") == "egress-sh-b"
	})
	primaryAfter := time.Since(killed)
	waittest.Until(t, 15*time.Second, "every client served by sh-b", func() bool { return sessions(b) == 2*pairs })
	allBack := time.Since(killed)
	t.Logf("RESULT edge_site_failover_new_flows_to_other_site %v", primaryAfter.Round(time.Millisecond))
	t.Logf("RESULT edge_site_failover_all_clients_on_other_site %v (%d clients)", allBack.Round(time.Millisecond), 2*pairs)
	if allBack > 10*time.Second {
		t.Fatalf("clients back on sh-b after %v, want within 10s", allBack)
	}
	before := traffic.Acked()
	waittest.Until(t, 20*time.Second, "traffic after the move", func() bool { return traffic.Acked() >= before+10*pairs })
	if n := traffic.Check(t, 30*time.Second); n < pairs*20 {
		t.Fatalf("only %d messages acked", n)
	}
}
