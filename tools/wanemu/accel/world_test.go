package main

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/longlink/longlink/tools/wanemu/wan"
)

// TestMain lets the test binary play the roles the orchestrator starts in
// the namespaces (it runs os.Executable() with -role …).
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "-role" {
		main()
		return
	}
	os.Exit(m.Run())
}

func smokeFlags(t *testing.T) flags {
	t.Helper()
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	if err := wan.Unsupported(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	wd, _ := os.Getwd()
	root := wd + "/../../.."
	if err := os.Chdir(root); err != nil { // go build ./cmd/longlink runs from the root
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chdir(wd) })
	return flags{
		tunnel: "quic",
		world:  "tools/wanemu/worlds/standard.yaml",
		mode:   "accel",
		plan: clientPlan{connects: 9, concurrency: 3, msgConns: 3,
			msgFor: 3 * time.Second, bulkFor: 2 * time.Second},
	}
}

// checkFigures asserts what the standard world must show on any machine:
// both paths work, messages take about one 180 ms round trip, and logging in
// through the edge beats going direct (~370 ms against ~540 ms).
func checkFigures(t *testing.T, direct, accel measurement) {
	t.Helper()
	for name, m := range map[string]measurement{"direct": direct, "edge": accel} {
		if len(m.ConnectMS) < 6 || len(m.MessageMS) < 10 {
			t.Fatalf("%s: %d logins, %d messages (%d and %d failed)", name,
				len(m.ConnectMS), len(m.MessageMS), m.ConnectFailed, m.MessageFailed)
		}
		if p50 := pct(m.MessageMS, 50); p50 < 178 || p50 > 260 {
			t.Errorf("%s: message p50 %.0f ms, want about 180", name, p50)
		}
	}
	d, a := pct(direct.ConnectMS, 50), pct(accel.ConnectMS, 50)
	t.Logf("connect+login p50: direct %.0f ms, through the edge %.0f ms", d, a)
	if d < 530 {
		t.Errorf("direct connect+login p50 %.0f ms: faster than three 180 ms round trips", d)
	}
	if a >= d-80 {
		t.Errorf("through the edge %.0f ms, direct %.0f ms: no gain", a, d)
	}
}

func TestStandinSmoke(t *testing.T) {
	f := smokeFlags(t)
	f.impl = "standin"
	f.tunnel = "kcp"
	var direct, accel measurement
	f.measured = func(d, a measurement) { direct, accel = d, a }
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := orchestrate(ctx, slog.New(slog.DiscardHandler), f); err != nil {
		t.Fatal(err)
	}
	checkFigures(t, direct, accel)
	if direct.BulkBytes == 0 || accel.BulkBytes == 0 {
		t.Errorf("bulk: %d bytes direct, %d through the edge", direct.BulkBytes, accel.BulkBytes)
	}
}

// TestLonglinkSmoke runs the real Longlink (longlink dev, relay -egress, edge
// and core/sdk clients) in the standard world: logins and messages work both
// ways and the edge path is faster to log in.
func TestLonglinkSmoke(t *testing.T) {
	f := smokeFlags(t)
	f.impl = "longlink"
	f.plan.msgFor = 4 * time.Second
	var direct, accel measurement
	f.measured = func(d, a measurement) { direct, accel = d, a }
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := orchestrate(ctx, slog.New(slog.DiscardHandler), f); err != nil {
		t.Fatal(err)
	}
	checkFigures(t, direct, accel)
}
