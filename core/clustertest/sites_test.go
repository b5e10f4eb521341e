package clustertest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/longlink/longlink/core/clustertest"
	"github.com/longlink/longlink/core/imapi"
)

// TestSites starts the two-site deployment (namespaces joined by the WAN
// emulator, a NATS super-cluster of the sites' clusters and the stretched
// JetStream cluster, PostgreSQL primary in a with its synchronous standby
// in b, a gateway and a service node per site) and checks what it
// promises: requests stay in their site while it has service nodes and
// cross when it has none (NATS's own queue groups over gateways), every
// stream the core made has a replica in each site, and a commit is on
// both PostgreSQL servers.
func TestSites(t *testing.T) {
	clustertest.Require(t)
	start := time.Now()
	s := clustertest.StartSites(t, clustertest.SitesOptions{})
	t.Logf("two sites up in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	tok, err := s.SiteA.Users(ctx, "alice", "bob")
	if err != nil {
		t.Fatal(err)
	}
	gwA, gwB := s.SiteA.Gateways()[0], s.SiteB.Gateways()[0]
	svcA, svcB := s.SiteA.Services()[0], s.SiteB.Services()[0]
	alice := startClient(t, s.SiteA.SDKConfig("alice", tok["alice"], gwA))
	bob := startClient(t, s.SiteB.SDKConfig("bob", tok["bob"], gwB))
	sends := func(svc *clustertest.Core) float64 {
		v, err := svc.Metric(ctx, "longlink_service_requests_total", `op="send`)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	send := func(from, to string, cl interface {
		Send(context.Context, imapi.SendReq) (imapi.SendAck, error)
	}, n int) {
		t.Helper()
		for i := range n {
			id := fmt.Sprintf("%s-%d-%d", from, time.Now().UnixNano(), i)
			if _, err := cl.Send(ctx, imapi.SendReq{ConvType: imapi.ConvP2P, To: to, ClientMsgID: id, Body: []byte(`{"text":"hi"}`)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Each site's sends are served by its own service node (the gateway
	// sends them in batches: counted as requests "send…").
	home := func(what string, cl interface {
		Send(context.Context, imapi.SendReq) (imapi.SendAck, error)
	}, from, to string, want, other *clustertest.Core) {
		t.Helper()
		w0, o0 := sends(want), sends(other)
		send(from, to, cl, 10)
		if w, o := sends(want)-w0, sends(other)-o0; w == 0 || o != 0 {
			t.Fatalf("%s: %s served %v requests, %s %v", what, want.Name, w, other.Name, o)
		}
	}
	home("a's sends", alice, "alice", "bob", svcA, svcB)
	home("b's sends", bob, "bob", "alice", svcB, svcA)

	// Without a service node in a, a's requests cross to b.
	if err := svcA.Kill(); err != nil {
		t.Fatal(err)
	}
	b0 := sends(svcB)
	send("alice", "bob", alice, 10)
	if b := sends(svcB) - b0; b == 0 {
		t.Fatalf("site b served none of site a's sends while a had no service node")
	}
	// And stay home again once a has one.
	if err := svcA.Start(); err != nil {
		t.Fatal(err)
	}
	if err := svcA.WaitReady(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	home("a's sends after its service node came back", alice, "alice", "bob", svcA, svcB)

	// Every stream and bucket lives in the js cluster, one replica per site.
	nc, err := nats.Connect(s.JS.Nodes[0].ClientURL, nats.UserInfo(s.JS.User, s.JS.Password),
		nats.RootCAs(s.Env.CAFile), nats.ClientCert(s.JS.ClientCert, s.JS.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	names := js.StreamNames(ctx)
	var n int
	for name := range names.Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		peers := []string{info.Cluster.Leader}
		for _, r := range info.Cluster.Replicas {
			peers = append(peers, r.Name)
		}
		sites := map[string]bool{}
		for _, p := range peers {
			site, _, _ := strings.Cut(p, "-")
			sites[site] = true
		}
		if info.Cluster.Name != "js" || len(sites) != 3 {
			t.Errorf("stream %s: cluster %q, peers %v: want js, one per site", name, info.Cluster.Name, peers)
		}
		n++
	}
	if names.Err() != nil {
		t.Fatal(names.Err())
	}
	if n < 4 {
		t.Fatalf("%d streams", n)
	}
	t.Logf("%d streams, each on a, b and w", n)

	// A commit is on the synchronous standby: the primary says so.
	if state, err := s.PG.Primary.Scalar(`SELECT sync_state FROM pg_stat_replication`); err != nil || state != "sync" {
		t.Fatalf("standby sync_state %q, %v", state, err)
	}
}
