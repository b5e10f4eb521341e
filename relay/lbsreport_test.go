package relay

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/lbs/nodeclient"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
	"github.com/longlink/longlink/relay/transport"
)

// A relay with lbs set reports its next hops' measured paths to the LBS
// (what the operators' console shows), and drains there on shutdown.
func TestRelayReportsPathsToLBS(t *testing.T) {
	var mu sync.Mutex
	var beats []lbsapi.Heartbeat
	drained := false
	lbs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var hb lbsapi.Heartbeat
		json.NewDecoder(r.Body).Decode(&hb)
		mu.Lock()
		if r.URL.Path == lbsapi.PathNodeDrain {
			drained = true
		} else {
			beats = append(beats, hb)
		}
		mu.Unlock()
		json.NewEncoder(w).Encode(lbsapi.HeartbeatReply{IntervalMs: 50})
	}))
	defer lbs.Close()
	pool := lbs.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	mn := transport.NewMemNetwork()
	ctx := context.Background()
	ecfg := DefaultEgress()
	ecfg.Name, ecfg.Listen, ecfg.Cluster = "egress", map[string]string{"mem": "egress"}, "demo"
	eg, err := NewEgress(ecfg, Deps{Transports: map[string]transport.Transport{"mem": mn.Transport("egress")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := eg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer eg.Shutdown(ctx)

	cfg := Default()
	cfg.Name = "relay-a"
	cfg.Listen = map[string]string{"mem": "relay-a"}
	cfg.Routing = fastRouting(Route{Cluster: "demo", NextHops: []Hop{{Name: "egress", Transport: "mem", Address: "egress"}}})
	cfg.LBS = &nodeclient.Config{Servers: []string{lbs.URL}, Node: "relay-a", Token: config.NewSecret("node-token"), RootCAs: pool}
	n, err := New(cfg, Deps{Transports: map[string]transport.Transport{"mem": mn.Transport("relay-a")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 5*time.Second, "a heartbeat with the egress path up", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, hb := range beats {
			if hb.Node == "relay-a" && len(hb.Paths) == 1 && hb.Paths[0].To == "egress" && hb.Paths[0].Up {
				return true
			}
		}
		return false
	})
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !drained {
		t.Fatal("the relay did not drain at the LBS on shutdown")
	}
}
