package relay

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRouterPrefersHomeSite: hops labelled with another site than
// routing.home_site carry new flows only while no home hop is up, whatever
// their RTT; a home hop back up takes new flows again ("home"). The same
// order holds among the direct egresses and in a stream's candidates.
func TestRouterPrefersHomeSite(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := fastRouting()
	cfg.HomeSite = "sh-a"
	r := NewRouter(cfg, nil, NewMetrics(reg, nil), discardLog())
	a := newPeer(r, Hop{Name: "egress-a", Transport: "mem", Address: "a", Site: "sh-a"}, nil)
	b := newPeer(r, Hop{Name: "egress-b", Transport: "mem", Address: "b", Site: "sh-b"}, nil)
	rs := &routeState{route: Route{Cluster: "c"}, hops: []*peer{b, a}, home: cfg.HomeSite}
	r.routes["c"] = rs
	set := func(p *peer, rtt time.Duration) {
		p.mu.Lock()
		p.srtt = rtt.Seconds()
		p.mu.Unlock()
		p.up.Store(true)
	}
	set(a, 50*time.Millisecond)
	set(b, 2*time.Millisecond) // much faster, but in the other site
	r.reselect()
	if rs.primary.Load() != a || rs.backup.Load() != b {
		t.Fatalf("primary %v backup %v: want the home site's egress first", rs.primary.Load().hop.Name, rs.backup.Load())
	}
	if c := rs.candidates(nil, nil); len(c) != 2 || c[0] != a || c[1] != b {
		t.Fatal("candidates not in site order")
	}
	a.up.Store(false) // the home site died
	r.reselect()
	if rs.primary.Load() != b {
		t.Fatal("did not move to the other site")
	}
	if c := rs.candidates(nil, nil); len(c) != 1 || c[0] != b {
		t.Fatal("a dead home hop is still a candidate")
	}
	set(a, 50*time.Millisecond)
	r.reselect()
	if rs.primary.Load() != a {
		t.Fatal("new flows did not go home again")
	}
	if got := testutil.ToFloat64(r.m.PathSwitches.WithLabelValues("c", "home")); got != 1 {
		t.Fatalf("home switches = %v", got)
	}

	// Directs (every core egress behind relays): the home site's first.
	rel := newPeer(r, Hop{Name: "relay", Transport: "mem", Address: "r"}, nil)
	rd := &routeState{route: Route{Cluster: "d"}, hops: []*peer{rel}, directs: []*peer{b, a}, home: cfg.HomeSite}
	r.routes["d"] = rd
	r.reselect()
	if rd.primary.Load() != a {
		t.Fatal("direct: the home site's egress is not the primary")
	}
	if c := rd.candidates(nil, nil); len(c) != 2 || c[0] != a || c[1] != b {
		t.Fatal("direct candidates not in site order")
	}
	a.up.Store(false)
	r.reselect()
	if rd.primary.Load() != b {
		t.Fatal("direct: did not move to the other site")
	}
	set(a, 50*time.Millisecond)
	r.reselect()
	if rd.primary.Load() != a {
		t.Fatal("direct: did not go home again")
	}
	set(rel, 10*time.Millisecond)
	r.reselect()
	if rd.primary.Load() != rel {
		t.Fatal("a relay that is up again does not carry the flows")
	}
}

// TestRouteSitesValidate: hop sites and home_site are DNS labels; a route
// may have only directs.
func TestRouteSitesValidate(t *testing.T) {
	cfg := fastRouting(Route{Cluster: "c", Directs: []Hop{{Transport: "mem", Address: "a", Site: "sh-a"}, {Transport: "mem", Address: "b", Site: "SH B"}}})
	cfg.HomeSite = "Shanghai"
	err := cfg.Validate()
	if err == nil {
		t.Fatal("bad sites accepted")
	}
	for _, want := range []string{"directs[1].site", "home_site"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%v: does not name %s", err, want)
		}
	}
	cfg.Routes[0].Directs[1].Site = "sh-b"
	cfg.HomeSite = "sh-a"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
