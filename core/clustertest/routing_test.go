package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/core/clustertest"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/lbs"
	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/waittest"
)

// routingPolicy is the LBS policy of TestClusterRouting: the two gateways
// as entry points, the apps, and grayscale rules (rules: "" for none).
func routingPolicy(rules string) string {
	return `apps:
  - {appkey: demo, pools: [core]}
  - {appkey: acme, pools: [core]}
pools:
  - {name: core, entry_points: [gw-1, gw-2]}
entry_points:
  - {id: gw-1, kind: gateway, site: core, lat: 0, lon: 0, link: "127.0.0.1:1"}
  - {id: gw-2, kind: gateway, site: core, lat: 0, lon: 0, link: "127.0.0.1:2"}
` + rules
}

const canaryRule = `grayscale:
  - {name: canary-b, version: "2.0", appkeys: [demo], accounts: [vip], percent: 10}
`

// TestClusterRouting: grayscale and dedicated clusters in the request path,
// with real processes. A rule in the LBS policy moves 10% of demo's users
// and the account vip to the version 2.0 canary: the nodes' request counts
// show that exactly those users' requests land there, the LBS explains
// it, a killed canary makes them fall back to the stable nodes (counted),
// and one policy change rolls it back. acme has a dedicated cluster: its
// Link, WebLink and server API requests reach only that cluster's node,
// and once it is gone they fail at once with a clear error.
func TestClusterRouting(t *testing.T) {
	clustertest.Require(t)
	apps := []clustertest.App{{AppKey: "demo", Secret: "demo-secret-0123456789"}, {AppKey: "acme", Secret: "acme-secret-0123456789"}}
	c := clustertest.StartCluster(t, clustertest.ClusterOptions{
		Gateways: 2, Services: 2, Apps: apps, LBSPolicy: routingPolicy(""),
		Gateway: clustertest.CoreOptions{Config: map[string]any{"routing": map[string]any{"clusters": map[string]any{"acme": "acme"}}}},
		Service: clustertest.CoreOptions{Config: map[string]any{"service": map[string]any{"version": "1.0"}}},
	})
	acmeNode := c.AddService(clustertest.CoreOptions{Name: "svc-acme", Config: map[string]any{"service": map[string]any{"cluster": "acme", "version": "1.0"}}})
	canary := c.AddService(clustertest.CoreOptions{Name: "svc-canary", Config: map[string]any{"service": map[string]any{"version": "2.0", "canary": true}}})
	stable := c.Services()[:2]
	gws := c.Gateways()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// 40 users and vip; the rule will choose vip and those whose bucket
	// falls in its 10%.
	var accounts, chosen, others []string
	for i := range 40 {
		accounts = append(accounts, fmt.Sprintf("u%02d", i))
	}
	accounts = append(accounts, "vip")
	for _, a := range accounts {
		if a == "vip" || lbsapi.GrayscaleBucket("canary-b", "demo", a) < 1000 {
			chosen = append(chosen, a)
		} else {
			others = append(others, a)
		}
	}
	if len(chosen) < 2 || len(chosen) > 12 {
		t.Fatalf("the 10%% chose %d of %d: pick other accounts", len(chosen), len(accounts))
	}
	tok, err := c.Users(ctx, accounts...)
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]*sdk.Client{}
	for i, a := range accounts {
		// Every other client on WebLink, spread over both gateways.
		gw := gws[i%2]
		cfg := c.SDKConfig(a, tok[a], gw)
		if i%4 >= 2 {
			cfg.Addresses, cfg.Dialer = []string{"http://" + gw.WebLinkAddr}, sdk.WebLinkDialer()
		}
		clients[a] = startClient(t, cfg)
	}
	// sends is how many sends p has served (0 once it is dead: a killed
	// node's counts are gone with it).
	sends := func(p *clustertest.Core) float64 {
		if !p.Running() {
			return 0
		}
		// Gateways send a session's sends as batches (one here: each send
		// waits for its ack before the next).
		return metric(t, p, "longlink_service_requests_total", `op="send.batch"`)
	}
	sendAll := func(who []string, tag string) {
		t.Helper()
		for _, a := range who {
			if _, err := clients[a].Send(ctx, imapi.SendReq{ConvType: imapi.ConvP2P, To: "u00", ClientMsgID: tag + "-" + a, Body: []byte(`{"text":"x"}`)}); err != nil {
				t.Fatalf("%s send %s: %v", a, tag, err)
			}
		}
	}
	// delta sends who's messages and returns how many sends each service
	// node served meanwhile: canary, the stable ones together, acme's.
	delta := func(who []string, tag string) (onCanary, onStable, onAcme float64) {
		t.Helper()
		c0, s0, a0 := sends(canary), sends(stable[0])+sends(stable[1]), sends(acmeNode)
		sendAll(who, tag)
		return sends(canary) - c0, sends(stable[0]) + sends(stable[1]) - s0, sends(acmeNode) - a0
	}
	// gone waits until no gateway hears a live node with labels any more:
	// by then NATS has long dropped the dead node's subscriptions too (a
	// request racing that can be routed to the dead node and time out).
	gone := func(labels ...string) {
		t.Helper()
		waittest.Until(t, 20*time.Second, fmt.Sprintf("gateways forget the node %v", labels), func() bool {
			for _, g := range gws {
				if metric(t, g, "longlink_route_service_nodes", labels...) != 0 {
					return false
				}
			}
			return true
		})
	}
	rulesOnGateways := func(n float64) {
		t.Helper()
		waittest.Until(t, 20*time.Second, fmt.Sprintf("%v grayscale rules on every gateway", n), func() bool {
			for _, g := range gws {
				if metric(t, g, "longlink_route_grayscale_rules") != n {
					return false
				}
			}
			return true
		})
	}

	// No rule yet: nobody on the canary.
	if onCanary, onStable, _ := delta(accounts, "before"); onCanary != 0 || onStable != float64(len(accounts)) {
		t.Fatalf("before the rule: canary %v, stable %v", onCanary, onStable)
	}

	// The rule: exactly the chosen users' requests go to the canary.
	if err := c.LBS.Admin(ctx, http.MethodPost, "/v1/policy/apply", []byte(routingPolicy(canaryRule)), nil); err != nil {
		t.Fatal(err)
	}
	rulesOnGateways(1)
	if onCanary, onStable, onAcme := delta(chosen, "chosen"); onCanary != float64(len(chosen)) || onStable != 0 || onAcme != 0 {
		t.Fatalf("chosen users: canary %v (want %d), stable %v, acme %v", onCanary, len(chosen), onStable, onAcme)
	}
	if onCanary, onStable, _ := delta(others, "others"); onCanary != 0 || onStable != float64(len(others)) {
		t.Fatalf("other users: canary %v, stable %v (want %d)", onCanary, onStable, len(others))
	}

	// The LBS says which nodes serve vip and why.
	var ex lbs.ExplainResult
	waittest.Until(t, 10*time.Second, "explain lists the canary", func() bool {
		if err := c.LBS.Admin(ctx, http.MethodGet, "/v1/explain?appkey=demo&account=vip", nil, &ex); err != nil {
			t.Fatal(err)
		}
		r := ex.Route
		return r != nil && r.Grayscale != nil && r.Grayscale.Rule == "canary-b" && r.Grayscale.Version == "2.0" &&
			len(r.Nodes) == 1 && r.Nodes[0].ID == "svc-canary" && r.Cluster == "default"
	})

	// The canary dies: its users fall back to the stable nodes, counted.
	fallbacks := func() float64 {
		return metric(t, gws[0], "longlink_route_grayscale_fallbacks_total") + metric(t, gws[1], "longlink_route_grayscale_fallbacks_total")
	}
	f0 := fallbacks()
	if err := canary.Kill(); err != nil {
		t.Fatal(err)
	}
	gone(`version="2.0"`)
	if _, onStable, _ := delta(chosen, "fallback"); onStable != float64(len(chosen)) {
		t.Fatalf("with the canary dead: stable served %v of %d", onStable, len(chosen))
	}
	if f := fallbacks() - f0; f < float64(len(chosen)) {
		t.Fatalf("%v fallbacks counted for %d sends", f, len(chosen))
	}
	if err := canary.Start(); err != nil {
		t.Fatal(err)
	}
	if err := canary.WaitReady(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 10*time.Second, "the canary serves again", func() bool {
		onCanary, _, _ := delta(chosen[:1], fmt.Sprintf("back-%d", time.Now().UnixNano()))
		return onCanary == 1
	})

	// Rollback: one policy change, and the chosen users are back.
	if err := c.LBS.Admin(ctx, http.MethodPost, "/v1/policy/apply", []byte(routingPolicy("")), nil); err != nil {
		t.Fatal(err)
	}
	rulesOnGateways(0)
	if onCanary, onStable, _ := delta(chosen, "rolled-back"); onCanary != 0 || onStable != float64(len(chosen)) {
		t.Fatalf("after the rollback: canary %v, stable %v", onCanary, onStable)
	}

	t.Run("dedicated", func(t *testing.T) {
		atok, err := c.AppUsers(ctx, "acme", "ann", "bo")
		if err != nil {
			t.Fatal(err)
		}
		shared := append(slices.Clone(stable), canary)
		count := func(p *clustertest.Core) float64 {
			return metric(t, p, "longlink_service_requests_total") + metric(t, p, "longlink_serverapi_requests_total")
		}
		before := map[string]float64{}
		for _, p := range append(shared, acmeNode) {
			before[p.Name] = count(p)
		}
		// ann on Link through gw-1, bo on WebLink through gw-2; the server
		// API through both fronts.
		annCfg := c.SDKConfig("ann", atok["ann"], gws[0])
		annCfg.AppKey = "acme"
		boCfg := c.SDKConfig("bo", atok["bo"], gws[1])
		boCfg.AppKey, boCfg.Addresses, boCfg.Dialer = "acme", []string{"http://" + gws[1].WebLinkAddr}, sdk.WebLinkDialer()
		ann, bo := startClient(t, annCfg), startClient(t, boCfg)
		if _, err := ann.Send(ctx, imapi.SendReq{ConvType: imapi.ConvP2P, To: "bo", ClientMsgID: "a1", Body: []byte(`{"text":"hi"}`)}); err != nil {
			t.Fatal(err)
		}
		waitMessage(t, bo, "a1")
		if _, err := bo.Send(ctx, imapi.SendReq{ConvType: imapi.ConvP2P, To: "ann", ClientMsgID: "b1", Body: []byte(`{"text":"hi"}`)}); err != nil {
			t.Fatal(err)
		}
		for _, gw := range gws {
			if err := c.APIVia(ctx, gw, "acme", http.MethodGet, "/v1/users/ann", nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range shared {
			if d := count(p) - before[p.Name]; d != 0 {
				t.Fatalf("%s (shared cluster) served %v of acme's requests", p.Name, d)
			}
		}
		if d := count(acmeNode) - before[acmeNode.Name]; d < 6 { // 2 logins, 2 sends, 2 API calls
			t.Fatalf("acme's node served %v requests", d)
		}

		// acme's cluster loses its only node: a clear error at once.
		if err := acmeNode.Kill(); err != nil {
			t.Fatal(err)
		}
		gone(`cluster="acme"`)
		start := time.Now()
		err = c.APIVia(ctx, gws[0], "acme", http.MethodGet, "/v1/users/ann", nil, nil)
		if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "service cluster acme has no live node") {
			t.Fatalf("server API without acme's node: %v", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("the error took %v", took)
		}
		cfg := c.SDKConfig("ann", atok["ann"], gws[1])
		cfg.AppKey = "acme"
		late, err := sdk.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		late.Start()
		defer late.Close()
		waittest.Until(t, 20*time.Second, "a login error naming acme's cluster", func() bool {
			for {
				select {
				case ev := <-late.Events():
					var ie *imapi.Error
					if ev.Kind == sdk.EventState && errors.As(ev.Err, &ie) && ie.Code == imapi.ErrUnavailable &&
						strings.Contains(ie.Message, "service cluster acme has no live node") {
						return true
					}
				default:
					return false
				}
			}
		})
		// demo is untouched.
		sendAll(chosen[:1], "after-acme")
	})
}
