package lbs

import (
	"context"
	"testing"
	"time"

	"github.com/longlink/longlink/lbs/nodeclient"
	"github.com/longlink/longlink/pkg/config"
)

// TestSiteDrainReachesNodes: an operator's site drain reaches the site's
// reporting nodes through their heartbeat replies (nodeclient OnDrained:
// true, then false on the undrain); a node's own drain on shutdown is not
// reported as an operator's.
func TestSiteDrainReachesNodes(t *testing.T) {
	l := startSingle(t)
	a := newAdmin(t, l, testAdminToken)
	drained := make(chan bool, 16)
	nc, err := nodeclient.New(nodeclient.Config{Servers: []string{"https://" + l.AdminAddr().String()}, Node: "edge-sg",
		Token: config.NewSecret(testNodeToken), RootCAs: l.CAPool(), Interval: config.Duration(50 * time.Millisecond)},
		nodeclient.Deps{OnDrained: func(on bool) { drained <- on }})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	next := func(want bool) {
		t.Helper()
		select {
		case got := <-drained:
			if got != want {
				t.Fatalf("OnDrained(%v), want %v", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("OnDrained(%v) not called", want)
		}
	}
	if code, b := a.do("POST", "/v1/sites/sg/drain", nil); code != 200 {
		t.Fatalf("site drain: %d %s", code, b)
	}
	next(true)
	if code, b := a.do("POST", "/v1/sites/sg/undrain", nil); code != 200 {
		t.Fatalf("site undrain: %d %s", code, b)
	}
	next(false)
	// The node's own drain (shutdown) is committed but not an operator's.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := nc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if who := l.fsm.Current().State.Drained["edge-sg"]; who != "node:edge-sg" {
		t.Fatalf("drained by %q", who)
	}
	select {
	case on := <-drained:
		t.Fatalf("the node's own drain handed over as an operator's (%v)", on)
	default:
	}
}
