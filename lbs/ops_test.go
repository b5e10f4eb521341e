package lbs

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/config"
)

const testReaderToken = "test-reader-token-0123456789"

// Reader tokens read everything operators read and change nothing; diff
// says whether the documents differ; lists are [] rather than null; token
// list shows the config's tokens too; a site drains as a whole.
func TestAdminReaderDiffListsSites(t *testing.T) {
	l := startSingle(t, func(c *Config) { c.ReaderToken = config.NewSecret(testReaderToken) })
	a := newAdmin(t, l, testAdminToken)
	rd := newAdmin(t, l, testReaderToken)
	for _, p := range []string{"/v1/policy", "/v1/nodes", "/v1/cluster", "/v1/audit", "/v1/tokens", "/v1/explain?appkey=demo&ip=9.9.9.9", "/v1/raft"} {
		if code, b := rd.do("GET", p, nil); code != 200 {
			t.Fatalf("reader GET %s: %d %s", p, code, b)
		}
	}
	for _, p := range []string{"/v1/policy/apply", "/v1/nodes/edge-sg/drain", "/v1/sites/sg/drain", "/v1/tokens", "/v1/reload"} {
		if code, _ := rd.do("POST", p, mustRead(t, "testdata/policy.yaml")); code != 401 {
			t.Fatalf("reader POST %s: %d, want 401", p, code)
		}
	}
	var who struct{ Who, Kind string }
	if rd.json("GET", "/v1/whoami", nil, &who); who.Kind != "reader" {
		t.Fatalf("whoami: %+v", who)
	}

	var d struct {
		Changed bool
		Diff    string
	}
	if code := a.json("POST", "/v1/policy/diff?format=json", mustRead(t, "testdata/policy.yaml"), &d); code != 200 || d.Changed || d.Diff != "no changes\n" {
		t.Fatalf("same document: %d %+v", code, d)
	}
	doc := strings.Replace(string(mustRead(t, "testdata/policy.yaml")), "count: 2", "count: 3", 1)
	if a.json("POST", "/v1/policy/diff?format=json", []byte(doc), &d); !d.Changed || !strings.Contains(d.Diff, "+     count: 3") {
		t.Fatalf("changed document: %+v", d)
	}
	// a signing secret never shows in a diff
	if strings.Contains(d.Diff, "0123456789abcdef0123") {
		t.Fatalf("diff shows a secret:\n%s", d.Diff)
	}

	if code, b := a.do("GET", "/v1/topology", nil); code != 200 || strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("empty topology: %d %s", code, b)
	}
	var toks []struct{ ID, Kind, Source string }
	a.json("POST", "/v1/tokens", []byte(`{"id":"viewer","kind":"reader"}`), nil)
	a.json("GET", "/v1/tokens", nil, &toks)
	var got []string
	for _, t := range toks {
		got = append(got, t.ID+"/"+t.Kind+"/"+t.Source)
	}
	if want := []string{"admin/operator/config", "reader/reader/config", "shared/node/config", "viewer/reader/state"}; !slices.Equal(got, want) {
		t.Fatalf("tokens %v, want %v", got, want)
	}

	var sd struct {
		EntryPoints []string `json:"entry_points"`
	}
	if code := a.json("POST", "/v1/sites/sg/drain", nil, &sd); code != 200 || !slices.Equal(sd.EntryPoints, []string{"edge-sg"}) {
		t.Fatalf("site drain: %d %+v", code, sd)
	}
	_, ans := query(t, l, "appkey=demo", "101.0.0.7")
	if slices.Contains(linkIDs(ans), "edge-sg") {
		t.Fatal("drained site still listed")
	}
	if code, _ := a.do("POST", "/v1/sites/nowhere/drain", nil); code != 404 {
		t.Fatalf("unknown site: %d", code)
	}
	a.do("POST", "/v1/sites/sg/undrain", nil)
	if _, ok := l.fsm.Current().State.Drained["edge-sg"]; ok {
		t.Fatal("site undrain left edge-sg drained")
	}
}

// The console's map: members with their leader, sites, and each node's
// own report (version, labels, paths).
func TestAdminClusterView(t *testing.T) {
	l := startSingle(t)
	n := newAdmin(t, l, testNodeToken)
	hb, _ := json.Marshal(lbsapi.Heartbeat{Node: "edge-sg", Connections: 7, Version: "v9.8.7", Labels: map[string]string{"site": "sg"},
		Paths: []lbsapi.Path{{To: "relay-1", Up: true, RTTMs: 12.5, Loss: 0.01}}})
	if code, b := n.do("POST", lbsapi.PathHeartbeat, hb); code != 200 {
		t.Fatalf("heartbeat: %d %s", code, b)
	}
	var v clusterView
	if code := newAdmin(t, l, testAdminToken).json("GET", "/v1/cluster", nil, &v); code != 200 {
		t.Fatalf("cluster: %d", code)
	}
	if v.LBS.LeaderID != "lbs1" || len(v.LBS.Servers) != 1 || !v.LBS.Servers[0].Leader || v.PolicyVersion != 1 {
		t.Fatalf("lbs: %+v", v.LBS)
	}
	var sites []string
	for _, s := range v.Sites {
		sites = append(sites, s.Name)
	}
	if !slices.Contains(sites, "sg") || !slices.Contains(sites, "core") {
		t.Fatalf("sites %v", sites)
	}
	// ctl sites: the same grouping with health and load.
	var sv []siteView
	if code := newAdmin(t, l, testAdminToken).json("GET", "/v1/sites", nil, &sv); code != 200 {
		t.Fatalf("sites: %d", code)
	}
	for _, s := range sv {
		if s.Name == "sg" && (s.Connections != 7 || !slices.Equal(s.Nodes, []string{"edge-sg"})) {
			t.Fatalf("site sg: %+v", s)
		}
	}
	for _, nd := range v.Nodes {
		if nd.ID == "edge-sg" {
			if nd.Version != "v9.8.7" || nd.Connections != 7 || nd.Site != "sg" || len(nd.Paths) != 1 || nd.Paths[0].RTTMs != 12.5 || nd.Labels["site"] != "sg" {
				t.Fatalf("edge-sg: %+v", nd)
			}
			return
		}
	}
	t.Fatal("edge-sg not in the map")
}

// Reload applies reloadable keys and refuses, by name, a change that needs
// a restart, changing nothing then.
func TestReload(t *testing.T) {
	var next Config
	l := startSingle(t)
	cur := *l.config()
	l.deps.Reload = func() (Config, error) { return next, nil }

	next = cur
	next.AdminToken = config.NewSecret("rotated-admin-token-0123456789")
	next.Health.Watermark = 0.8
	applied, err := l.ReloadFromSource()
	if err != nil || !slices.Equal(applied, []string{"admin_token", "health.watermark"}) {
		t.Fatalf("reload: %v %v", applied, err)
	}
	if code, _ := newAdmin(t, l, testAdminToken).do("GET", "/v1/nodes", nil); code != 401 {
		t.Fatal("old admin token still accepted")
	}
	a := newAdmin(t, l, "rotated-admin-token-0123456789")
	if code, _ := a.do("GET", "/v1/nodes", nil); code != 200 {
		t.Fatal("rotated admin token refused")
	}

	bad := *l.config()
	bad.RaftListen = "127.0.0.1:1"
	bad.DNS.Zone = "other.test."
	bad.NodeToken = config.NewSecret("another-node-token-0123456789")
	next = bad
	_, err = l.ReloadFromSource()
	if err == nil || !strings.Contains(err.Error(), "raft_listen: changed") || !strings.Contains(err.Error(), "dns.zone: changed") {
		t.Fatalf("restart-only change: %v", err)
	}
	if l.config().NodeToken.Reveal() != testNodeToken {
		t.Fatal("a refused reload changed the node token")
	}
	next.AdminToken = config.Secret{}
	if _, err := l.ReloadFromSource(); err == nil || !strings.Contains(err.Error(), "admin_token: required") {
		t.Fatalf("invalid config: %v", err)
	}
	// the admin call does the same
	next = *l.config()
	next.NodeToken = config.NewSecret("another-node-token-0123456789")
	var res struct{ Applied []string }
	if code := a.json("POST", "/v1/reload", nil, &res); code != 200 || !slices.Equal(res.Applied, []string{"node_token"}) {
		t.Fatalf("POST /v1/reload: %d %+v", code, res)
	}
}
