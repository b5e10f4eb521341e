package lbs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDevMode runs what `longlink dev` does: DevConfig (tokens kept across
// restarts), the demo policy for a gateway and an edge, and the ctl file.
func TestDevMode(t *testing.T) {
	dir := t.TempDir()
	cfg, err := DevConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := DevConfig(dir)
	if cfg.AdminToken.Reveal() != again.AdminToken.Reveal() || len(cfg.AdminToken.Reveal()) < 16 {
		t.Fatal("dev admin token not kept")
	}
	cfg.ClientListen, cfg.AdminListen, cfg.RaftListen, cfg.DNS.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	l, err := New(cfg, Deps{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Shutdown(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	doc, err := DevPolicy("demo",
		DevEntryPoint{ID: "edge-1", Kind: "edge", Link: "127.0.0.1:7720", LinkQUIC: "127.0.0.1:7724", WebLink: "http://127.0.0.1:7721", TURN: "127.0.0.1:7730"},
		DevEntryPoint{ID: "core-gw", Kind: "gateway", Link: "127.0.0.1:7710", WebLink: "http://127.0.0.1:7711", KeyIDs: []string{"k1"}})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := l.ApplyPolicy(ctx, doc, "system:dev"); err != nil || v != 1 {
		t.Fatalf("apply: %d %v", v, err)
	}
	var ex ExplainResult
	newAdmin(t, l, cfg.AdminToken.Reveal()).json("GET", "/v1/explain?appkey=demo&ip=8.8.8.8", nil, &ex)
	if !strings.Contains(fmt.Sprint(ex.Location), "US") || len(ex.Steps) < 6 {
		t.Fatalf("dev explain: %+v", ex)
	}
	code, a := query(t, l, "appkey=demo", "")
	if code != 200 || len(a.Link) != 2 || a.Link[len(a.Link)-1].ID != "core-gw" || !a.Link[len(a.Link)-1].Fallback {
		t.Fatalf("dev answer: %d %+v", code, a)
	}
	// The edge's Link over QUIC address is published; the gateway has none.
	if len(a.LinkQUIC) != 1 || a.LinkQUIC[0].ID != "edge-1" || a.LinkQUIC[0].Port != 7724 {
		t.Fatalf("dev answer's link_quic: %+v", a.LinkQUIC)
	}
	ctl := filepath.Join(dir, "ctl.yaml")
	if err := l.WriteCtlConfig(ctl); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(ctl)
	if !strings.Contains(string(b), "https://"+l.AdminAddr().String()) || !strings.Contains(string(b), cfg.AdminToken.Reveal()) {
		t.Fatalf("ctl file: %s", b)
	}
}
