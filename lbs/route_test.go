package lbs

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/lbs/nodeclient"
	"github.com/longlink/longlink/pkg/config"
)

// TestGrayscaleRules: the policy's grayscale rules are validated with
// clear errors, reach a gateway through its heartbeat replies (and their
// removal too), and explain says which service nodes serve an account from
// what the gateways report.
func TestGrayscaleRules(t *testing.T) {
	l := startSingle(t)
	a := newAdmin(t, l, testAdminToken)
	base := string(mustRead(t, "testdata/policy.yaml"))

	code, b := a.do("POST", "/v1/policy/validate", []byte(base+`grayscale:
  - {name: Bad, version: "2.0", percent: 10}
  - {name: ramp, version: "2.0", appkeys: [nope], sdk: ">=x", percent: 150}
  - {name: empty, version: "2.0", appkeys: [demo]}
`))
	var verr lbsapi.Error
	json.Unmarshal(b, &verr)
	for _, want := range []string{`grayscale[0] (Bad).name: "Bad" is not a lower-case DNS label`, `grayscale[1] (ramp).appkeys: unknown appkey "nope"`,
		`grayscale[1] (ramp).sdk: range`, "grayscale[1] (ramp).percent: 150 not in 0..100", "grayscale[2] (empty): chooses nobody"} {
		if code != 422 || !strings.Contains(verr.Error, want) {
			t.Errorf("validate: %d %s: want %q", code, verr.Error, want)
		}
	}

	// A gateway reporting its routing, and what it is handed.
	handed := make(chan lbsapi.Grayscale, 16)
	routing := nodeclient.Routing{
		Clusters: map[string]string{"*": "default", "acme": "acme"},
		ServiceNodes: []lbsapi.ServiceNode{
			{ID: "svc-a1", Cluster: "default", Version: "1.0"},
			{ID: "svc-b1", Cluster: "default", Version: "2.0", Canary: true},
			{ID: "svc-acme", Cluster: "acme", Version: "1.0"},
		},
	}
	nc, err := nodeclient.New(nodeclient.Config{Servers: []string{"https://" + l.AdminAddr().String()}, Node: "core-gw",
		Token: config.NewSecret(testNodeToken), RootCAs: l.CAPool(), Interval: config.Duration(50 * time.Millisecond)},
		nodeclient.Deps{
			Routing:     func() nodeclient.Routing { return routing },
			OnGrayscale: func(g lbsapi.Grayscale) error { handed <- g; return nil },
		})
	if err != nil {
		t.Fatal(err)
	}
	nc.Start(context.Background())
	t.Cleanup(func() { nc.Shutdown(context.Background()) })
	next := func() lbsapi.Grayscale {
		t.Helper()
		select {
		case g := <-handed:
			return g
		case <-time.After(5 * time.Second):
			t.Fatal("no grayscale rules handed over")
			return lbsapi.Grayscale{}
		}
	}
	if g := next(); len(g.Rules) != 0 {
		t.Fatalf("first rules %+v", g)
	}

	withRule := base + `grayscale:
  - {name: canary-b, version: "2.0", appkeys: [demo], accounts: [boss], percent: 10}
`
	if code, b := a.do("POST", "/v1/policy/apply", []byte(withRule)); code != 200 {
		t.Fatalf("apply: %d %s", code, b)
	}
	if g := next(); len(g.Rules) != 1 || g.Rules[0].Name != "canary-b" || g.PolicyVersion != 2 {
		t.Fatalf("rules after apply %+v", g)
	}

	explain := func(q string) RouteExplain {
		t.Helper()
		var ex ExplainResult
		if code := a.json("GET", "/v1/explain?"+q, nil, &ex); code != 200 || ex.Route == nil {
			t.Fatalf("explain %s: %d %+v", q, code, ex)
		}
		return *ex.Route
	}
	r := explain("appkey=demo&account=boss")
	if r.Cluster != "default" || r.Grayscale == nil || r.Grayscale.Rule != "canary-b" || r.Grayscale.Why != "account listed" ||
		len(r.Nodes) != 1 || r.Nodes[0].ID != "svc-b1" || !strings.Contains(r.Serves, "version 2.0 nodes") || r.ReportedBy[0] != "core-gw" {
		t.Fatalf("boss: %+v", r)
	}
	// An account outside the 10%: stable nodes (the canary is not one).
	var outside string
	for _, acct := range []string{"u1", "u2", "u3", "u4", "u5", "u6"} {
		if lbsapi.GrayscaleBucket("canary-b", "demo", acct) >= 1000 {
			outside = acct
			break
		}
	}
	r = explain("appkey=demo&account=" + outside)
	if r.Grayscale != nil || len(r.Nodes) != 1 || r.Nodes[0].ID != "svc-a1" || len(r.Skipped) != 1 || !strings.Contains(r.Skipped[0], "outside the 10%") {
		t.Fatalf("%s: %+v", outside, r)
	}
	// acme is dedicated: its own cluster's nodes.
	r = explain("appkey=acme&account=boss")
	if r.Cluster != "acme" || len(r.Nodes) != 1 || r.Nodes[0].ID != "svc-acme" {
		t.Fatalf("acme: %+v", r)
	}
	// No live node of the rule's version: the explain says the gateways fall back.
	routing.ServiceNodes = routing.ServiceNodes[:1]
	deadline := time.Now().Add(5 * time.Second)
	for r = explain("appkey=demo&account=boss"); !strings.Contains(r.Serves, "fall back"); r = explain("appkey=demo&account=boss") {
		if time.Now().After(deadline) {
			t.Fatalf("no fallback explained: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(r.Nodes) != 1 || r.Nodes[0].ID != "svc-a1" {
		t.Fatalf("fallback nodes %+v", r.Nodes)
	}

	// Rollback is one apply without the rule.
	if code, b := a.do("POST", "/v1/policy/apply", []byte(base)); code != 200 {
		t.Fatalf("rollback: %d %s", code, b)
	}
	if g := next(); len(g.Rules) != 0 || g.PolicyVersion != 3 {
		t.Fatalf("rules after rollback %+v", g)
	}
	var raw json.RawMessage
	a.json("GET", "/v1/explain?appkey=demo&account=boss", nil, &raw)
	if !strings.Contains(string(raw), "no grayscale rule chose the account") {
		t.Fatalf("after rollback: %s", raw)
	}
}
