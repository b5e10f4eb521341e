package route

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/metricstest"
)

func TestTable(t *testing.T) {
	reg := prometheus.NewRegistry()
	tb, err := New(Config{Clusters: map[string]string{"acme": "acme-ded"}}, Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if r := tb.ForUser("acme", "ann", ""); r != (Route{Cluster: "acme-ded"}) {
		t.Fatalf("acme: %+v", r)
	}
	if r := tb.ForUser("demo", "ann", ""); r != (Route{Cluster: "default"}) {
		t.Fatalf("demo: %+v", r)
	}
	gen := tb.Generation()
	err = tb.SetGrayscale(lbsapi.Grayscale{PolicyVersion: 4, Rules: []lbsapi.GrayscaleRule{
		{Name: "ann", Version: "1.5.0", Accounts: []string{"ann"}},
		{Name: "app", Version: "2", AppKeys: []string{"acme"}, Percent: 100},
	}})
	if err != nil || tb.Generation() == gen {
		t.Fatalf("set: %v, generation %d → %d", err, gen, tb.Generation())
	}
	if r := tb.ForUser("acme", "ann", ""); r != (Route{Cluster: "acme-ded", Version: "1.5.0", Rule: "ann"}) {
		t.Fatalf("ann: %+v", r)
	}
	if r := tb.ForApp("acme"); r != (Route{Cluster: "acme-ded", Version: "2", Rule: "app"}) {
		t.Fatalf("acme's server API: %+v", r)
	}
	if r := tb.ForApp("demo"); r != (Route{Cluster: "default"}) {
		t.Fatalf("demo's server API: %+v", r)
	}
	gen = tb.Generation()
	if err := tb.SetGrayscale(lbsapi.Grayscale{Rules: []lbsapi.GrayscaleRule{{Name: "bad", Version: "x y", Percent: 1}}}); err == nil || tb.Generation() != gen {
		t.Fatalf("bad rules: %v, generation %d → %d", err, gen, tb.Generation())
	}
	if r := tb.ForUser("acme", "ann", ""); r.Version != "1.5.0" {
		t.Fatalf("refused rules replaced the good ones: %+v", r)
	}
	if metricstest.Value(t, reg, "longlink_route_grayscale_refused_total") != 1 || metricstest.Value(t, reg, "longlink_route_grayscale_rules") != 2 ||
		metricstest.Value(t, reg, "longlink_route_grayscale_policy_version") != 4 {
		t.Fatal("rule metrics")
	}
	if c := tb.Clusters(); c["*"] != "default" || c["acme"] != "acme-ded" {
		t.Fatalf("clusters %v", c)
	}
	if _, err := New(Config{Clusters: map[string]string{"acme": "a.b"}}, Deps{}); err == nil || !strings.Contains(err.Error(), "routing.clusters") {
		t.Fatalf("bad cluster name: %v", err)
	}
}

func TestSubjects(t *testing.T) {
	r := Route{Cluster: "acme", Version: "1.5.0"}
	if got := r.Subject(imapi.OpSend); got != "ll.acme.v.1_5_0.svc.send" {
		t.Fatalf("versioned: %s", got)
	}
	if got := r.Stable().Subject(imapi.OpGroupCreate); got != "ll.acme.svc.group_create" {
		t.Fatalf("stable: %s", got)
	}
	// The call service's wildcard takes every version's requests.
	want, any := strings.Split(r.Subject(imapi.OpSend), "."), strings.Split(AnyVersionSubject("acme", imapi.OpSend), ".")
	if len(want) != len(any) {
		t.Fatalf("%v vs %v", want, any)
	}
	for i := range want {
		if any[i] != "*" && any[i] != want[i] {
			t.Fatalf("%v does not match %v", any, want)
		}
	}
}

func TestNodesHeard(t *testing.T) {
	ns, err := server.NewServer(&server.Options{DontListen: true, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats not ready")
	}
	defer ns.Shutdown()
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	reg := prometheus.NewRegistry()
	tb, _ := New(Default(), Deps{Registerer: reg})
	nodes, err := tb.WatchNodes(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer nodes.Close()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	a := NewAnnouncer(nc, NodeAnnounce{ID: "svc-b1", Cluster: "default", Version: "2.0", Site: "sh-b", Canary: true}, 100*time.Millisecond, nil)
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor := func(ok func([]lbsapi.ServiceNode) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok(nodes.Live()) {
			if time.Now().After(deadline) {
				t.Fatalf("nodes %+v", nodes.Live())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(func(l []lbsapi.ServiceNode) bool {
		return len(l) == 1 && l[0] == lbsapi.ServiceNode{ID: "svc-b1", Cluster: "default", Version: "2.0", Site: "sh-b", Canary: true}
	})
	if metricstest.Value(t, reg, "longlink_route_service_nodes", "cluster", "default", "version", "2.0") != 1 {
		t.Fatal("node gauge")
	}
	a.Shutdown(context.Background())
	waitFor(func(l []lbsapi.ServiceNode) bool { return len(l) == 1 && l[0].Draining })
	// Silent for three intervals: gone.
	waitFor(func(l []lbsapi.ServiceNode) bool { return len(l) == 0 })
	if err := NewAnnouncer(nc, NodeAnnounce{ID: "x", Cluster: "default", Canary: true}, time.Second, nil).Start(context.Background()); err == nil {
		t.Fatal("a canary without a version announced")
	}
	if err := NewAnnouncer(nc, NodeAnnounce{ID: "x", Cluster: "default", Site: "Site A"}, time.Second, nil).Start(context.Background()); err == nil {
		t.Fatal("a site that is not a DNS label announced")
	}
}

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.grayscale.WithLabelValues("x")
	m.fallbacks.WithLabelValues("x")
	m.noResponders.WithLabelValues("x")
	m.nodes.WithLabelValues("x", "y")
	metricstest.InREADME(t, metricstest.Check(t, reg, "longlink_route_"), "README.md")
}

func FuzzNodeAnnounce(f *testing.F) {
	f.Add([]byte(`{"id":"svc-1","cluster":"default","version":"1.5.0","canary":true,"every_ms":2000}`))
	f.Add([]byte(`{"id":"svc-2","cluster":"acme","every_ms":100,"draining":true}`))
	f.Add([]byte(`{"id":"","cluster":"a.b","every_ms":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeNodeAnnounce(b)
		if err != nil {
			return
		}
		if !subjectSafe(a.Cluster) || a.ID == "" || (a.Version != "" && !lbsapi.ValidVersionLabel(a.Version)) || a.EveryMS < 100 {
			t.Fatalf("accepted %+v", a)
		}
	})
}
