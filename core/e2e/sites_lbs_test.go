package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/longlink/longlink/core/clustertest"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/waittest"
)

// twoSitePolicy: gateways gw-1, gw-2 in site sh-a and gw-3, gw-4 in sh-b,
// each with its own address so that DNS answers tell them apart.
const twoSitePolicy = `defaults: {count: 4}
apps:
  - {appkey: demo, pools: [core]}
pools:
  - {name: core, entry_points: [gw-1, gw-2, gw-3, gw-4]}
entry_points:
  - {id: gw-1, kind: gateway, site: sh-a, lat: 31.2, lon: 121.5, link: "127.0.1.1:7710"}
  - {id: gw-2, kind: gateway, site: sh-a, lat: 31.2, lon: 121.5, link: "127.0.1.2:7710"}
  - {id: gw-3, kind: gateway, site: sh-b, lat: 31.2, lon: 121.5, link: "127.0.2.3:7710"}
  - {id: gw-4, kind: gateway, site: sh-b, lat: 31.2, lon: 121.5, link: "127.0.2.4:7710"}
`

// TestTwoSitesLBS: two sites' gateways (real processes on NATS and
// PostgreSQL) report to a real LBS member.
//
// Drain: `ctl site drain sh-a` (the admin API) with SDK clients logged in
// on sh-a while they send: the LBS stops handing out sh-a at once, and
// sh-a's gateways move their clients to sh-b over their drain window
// (operator_drain_time), each at its own moment: the moves are spread
// over the window, every client is on sh-b before it ends (plus a little
// slack), and every acked message is delivered exactly once.
//
// Site down: after the undrain, SIGKILL of sh-a's gateways: their entry
// points leave the HTTP and DNS answers within the heartbeat timeout (3
// missed 200 ms beats), from missed heartbeats alone.
func TestTwoSitesLBS(t *testing.T) {
	clustertest.Require(t)
	const window = 4 * time.Second
	c := clustertest.StartCluster(t, clustertest.ClusterOptions{Gateways: 2, Services: 2, LBSPolicy: twoSitePolicy,
		Gateway: clustertest.CoreOptions{Config: map[string]any{"site": "sh-a",
			"gateway": map[string]any{"operator_drain_time": window.String()}}}})
	for _, name := range []string{"gw-3", "gw-4"} {
		c.AddGateway(clustertest.CoreOptions{Name: name, Config: map[string]any{"site": "sh-b"}})
	}
	gws := c.Gateways()
	siteA, siteB := gws[:2], gws[2:]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	sitesUp := func() map[string]int {
		var sv []struct {
			Name    string `json:"name"`
			Up      int    `json:"up"`
			Drained int    `json:"drained"`
		}
		out := map[string]int{}
		if err := c.LBS.Admin(ctx, http.MethodGet, "/v1/sites", nil, &sv); err != nil {
			return out
		}
		for _, s := range sv {
			out[s.Name] = s.Up - s.Drained
		}
		return out
	}
	waittest.Until(t, 20*time.Second, "both sites up at the LBS", func() bool {
		u := sitesUp()
		return u["sh-a"] == 2 && u["sh-b"] == 2
	})
	answerIDs := func() []string {
		resp, err := http.Get("http://" + c.LBS.ClientAddr + lbsapi.PathQuery + "?appkey=demo")
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var a lbsapi.Answer
		if b, _ := io.ReadAll(resp.Body); json.Unmarshal(b, &a) != nil {
			return nil
		}
		var ids []string
		for _, e := range a.Link {
			ids = append(ids, e.ID)
		}
		sort.Strings(ids)
		return ids
	}
	dnsIPs := func() []string {
		m := new(dns.Msg)
		m.SetQuestion("link.demo."+c.LBS.DNSZone, dns.TypeA)
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, c.LBS.DNSAddr)
		if err != nil {
			return nil
		}
		var ips []string
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok {
				ips = append(ips, a.A.String())
			}
		}
		sort.Strings(ips)
		return ips
	}
	all := []string{"gw-1", "gw-2", "gw-3", "gw-4"}
	allIPs := []string{"127.0.1.1", "127.0.1.2", "127.0.2.3", "127.0.2.4"}
	onlyB, onlyBIPs := []string{"gw-3", "gw-4"}, []string{"127.0.2.3", "127.0.2.4"}
	if got := answerIDs(); !slices.Equal(got, all) {
		t.Fatalf("HTTP answer %v, want %v", got, all)
	}
	if got := dnsIPs(); !slices.Equal(got, allIPs) {
		t.Fatalf("DNS answer %v, want %v", got, allIPs)
	}

	// Clients: each prefers a gateway of sh-a and lists one of sh-b.
	const pairs = 6
	traffic := clustertest.StartPairs(t, ctx, c, pairs, func(i int, account, token string) sdk.Config {
		return c.SDKConfig(account, token, siteA[i%2], siteB[i%2])
	})
	sessions := func(gs []*clustertest.Core) int {
		n := 0.0
		for _, g := range gs {
			if v, err := g.Metric(ctx, "longlink_gateway_sessions"); err == nil {
				n += v
			}
		}
		return int(n)
	}
	waittest.Until(t, 30*time.Second, "every client on sh-a", func() bool { return sessions(siteA) == 2*pairs })

	traffic.Send(ctx, 20*time.Millisecond)
	waittest.Until(t, 20*time.Second, "traffic before the drain", func() bool { return traffic.Acked() >= 5*pairs })

	// Drain sh-a; watch the clients leave it.
	var dr struct {
		EntryPoints []string `json:"entry_points"`
	}
	drained := time.Now()
	if err := c.LBS.Admin(ctx, http.MethodPost, "/v1/sites/sh-a/drain", nil, &dr); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dr.EntryPoints, []string{"gw-1", "gw-2"}) {
		t.Fatalf("drained %v", dr.EntryPoints)
	}
	if ids := answerIDs(); !slices.Equal(ids, onlyB) {
		t.Fatalf("HTTP answer right after the drain %v, want %v", ids, onlyB)
	}
	var moves []time.Duration // when sh-a's session count fell, one entry per client
	last := 2 * pairs
	deadline := drained.Add(window + 5*time.Second)
	for sessions(siteB) < 2*pairs || last > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d sessions on sh-a, %d on sh-b", time.Since(drained), sessions(siteA), sessions(siteB))
		}
		if n := sessions(siteA); n < last {
			for range last - n {
				moves = append(moves, time.Since(drained))
			}
			last = n
		}
		time.Sleep(50 * time.Millisecond) // sampling the session gauges
	}
	moved := time.Since(drained)
	spread := moves[len(moves)-1] - moves[0]
	t.Logf("site drain: %d clients left sh-a at %v; all on sh-b after %v", len(moves), moves, moved.Round(time.Millisecond))
	t.Logf("RESULT site_drain_all_clients_moved %v (window %v, %d clients)", moved.Round(time.Millisecond), window, 2*pairs)
	t.Logf("RESULT site_drain_spread %v", spread.Round(time.Millisecond))
	if spread < window/3 {
		t.Fatalf("moves spread over %v only (%v): a reconnect storm, want them spread over the %v window", spread, moves, window)
	}
	// No quarter of the window saw more than half the clients leave.
	for i := range moves {
		n := 0
		for _, m := range moves[i:] {
			if m-moves[i] < window/4 {
				n++
			}
		}
		if n > pairs {
			t.Fatalf("%d of %d clients left within %v of each other (%v)", n, 2*pairs, window/4, moves)
		}
	}
	for _, g := range siteA {
		if v, err := g.Metric(ctx, "longlink_gateway_operator_drained"); err != nil || v != 1 {
			t.Fatalf("%s: longlink_gateway_operator_drained %v %v", g.Name, v, err)
		}
	}
	before := traffic.Acked()
	waittest.Until(t, 20*time.Second, "traffic after the drain", func() bool { return traffic.Acked() >= before+5*pairs })
	traffic.Check(t, 30*time.Second)

	// Undrain: sh-a is handed out again and its gateways take logins.
	if err := c.LBS.Admin(ctx, http.MethodPost, "/v1/sites/sh-a/undrain", nil, nil); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 10*time.Second, "sh-a back in the answers and its gateways undrained", func() bool {
		for _, g := range siteA {
			if v, err := g.Metric(ctx, "longlink_gateway_operator_drained"); err != nil || v != 0 {
				return false
			}
		}
		return slices.Equal(answerIDs(), all)
	})

	// Site down: SIGKILL sh-a's gateways; missed heartbeats take them out.
	killed := time.Now()
	for _, g := range siteA {
		if err := g.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	waittest.Until(t, 10*time.Second, "sh-a out of the HTTP and DNS answers", func() bool {
		return slices.Equal(answerIDs(), onlyB) && slices.Equal(dnsIPs(), onlyBIPs)
	})
	out := time.Since(killed)
	t.Logf("RESULT lbs_dead_site_out_of_answers %v (heartbeat 200ms, down after 3 missed)", out.Round(time.Millisecond))
	// 3 missed beats of 200 ms, the sweep and the commit; a loaded
	// machine's scheduling on top.
	if out > 3*time.Second {
		t.Fatalf("dead site left the answers after %v", out)
	}
	if u := sitesUp(); u["sh-a"] != 0 || u["sh-b"] != 2 {
		t.Fatalf("sites %v after the kill", u)
	}
}
