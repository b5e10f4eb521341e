package edge

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/relay"
	"github.com/longlink/longlink/relay/transport"
)

// TestUplinksSites: the LBS's cores keep their sites on the edge's hops
// (every core, not only the first), behind relays as the direct paths;
// the edge's site becomes its home site and labels longlink_edge_info.
func TestUplinksSites(t *testing.T) {
	cfg := Default()
	cfg.Name = "edge-sg"
	cfg.Site = "sg"
	cfg.Cluster = "demo"
	cfg.Routing.Routes = []relay.Route{{Cluster: "demo", NextHops: []relay.Hop{{Name: "start", Transport: "quic", Address: "127.0.0.1:1"}}}}
	reg := prometheus.NewRegistry()
	mn := transport.NewMemNetwork()
	e, err := New(cfg, Deps{Registerer: reg, Transports: map[string]transport.Transport{"quic": mn.Transport("edge")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Router().Shutdown)
	if e.cfg.Routing.HomeSite != "sg" {
		t.Fatalf("home site %q", e.cfg.Routing.HomeSite)
	}
	if v := testutil.ToFloat64(e.m.info.WithLabelValues("sg", "sg")); v != 1 {
		t.Fatalf("longlink_edge_info{site=sg,home_site=sg} = %v", v)
	}
	cores := []lbsapi.Tunnel{{ID: "egress-a", Site: "sh-a", QUIC: "127.0.0.1:2"}, {ID: "egress-b", Site: "sh-b", QUIC: "127.0.0.1:3"}}
	if err := e.setUplinks(lbsapi.Uplinks{Cores: cores}); err != nil {
		t.Fatal(err)
	}
	sites := map[string]string{}
	for _, p := range e.Router().Paths() {
		sites[p.Name] = p.Site
	}
	if len(sites) != 2 || sites["egress-a"] != "sh-a" || sites["egress-b"] != "sh-b" {
		t.Fatalf("paths %v: want both cores with their sites", sites)
	}
	if err := e.setUplinks(lbsapi.Uplinks{Relays: []lbsapi.Tunnel{{ID: "relay-1", QUIC: "127.0.0.1:4"}}, Cores: cores}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.Router().Paths()); n != 3 {
		t.Fatalf("%d paths: want the relay and both cores as direct paths", n)
	}
	if n, err := testutil.GatherAndCount(reg, "longlink_relay_path_site_info"); err != nil || n != 2 {
		t.Fatalf("longlink_relay_path_site_info: %d series (%v), want one per core", n, err)
	}
}
