package relay

import (
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

// Reload moves a running relay to new routes and limits, and refuses
// (changing nothing) restart-only keys and hops on transports it did not
// build, naming them.
func TestReload(t *testing.T) {
	ch := newMemChain(t)
	n := ch.relays[0]
	next := *n.live.Load()
	next.Routing.Routes = []Route{{Cluster: "demo", NextHops: []Hop{{Name: "relay-b", Transport: "mem", Address: "relay-b"}}}}
	next.MaxStreams = 7
	next.HeaderTimeout = config.Duration(3 * time.Second)
	applied, err := n.Reload(next)
	if err != nil || strings.Join(applied, ",") != "header_timeout,max_streams,routing.routes" {
		t.Fatalf("reload: %v %v", applied, err)
	}
	waittest.Until(t, 3*time.Second, "the new route's hop as primary", func() bool { return n.router.Primary("demo") == "relay-b" })
	for _, p := range n.router.Paths() {
		if p.Name == "egress" {
			t.Fatalf("the removed hop is still a path: %+v", n.router.Paths())
		}
	}
	if n.live.Load().MaxStreams != 7 {
		t.Fatal("max_streams not applied")
	}

	bad := *n.live.Load()
	bad.Name = "renamed"
	bad.Listen = map[string]string{"mem": "elsewhere"}
	bad.MaxStreams = 9
	if _, err := n.Reload(bad); err == nil || !strings.Contains(err.Error(), "name: changed") || !strings.Contains(err.Error(), "listen: changed") {
		t.Fatalf("restart-only keys: %v", err)
	}
	quic := *n.live.Load()
	quic.Routing.Routes = []Route{{Cluster: "demo", NextHops: []Hop{{Name: "far", Transport: "quic", Address: "127.0.0.1:1"}}}}
	if _, err := n.Reload(quic); err == nil || !strings.Contains(err.Error(), "transport quic was not built at start") {
		t.Fatalf("a hop on an unbuilt transport: %v", err)
	}
	if n.live.Load().MaxStreams != 7 || n.router.Primary("demo") != "relay-b" {
		t.Fatal("a refused reload changed something")
	}
}
