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
		plan: clientPlan{connects: 12, concurrency: 3, msgConns: 3,
			msgFor: 3 * time.Second, bulkFor: 2 * time.Second},
	}
}

// checkFigures asserts what the standard world must show on any machine,
// loaded or not: both paths work; no message or login beats physics (one
// 180 ms round trip per message, three for a direct login); and the best
// login through the edge beats the best direct one (~540 ms): ~370 ms (two
// long round trips and a short one) for the stand-in, which relays the
// handshake, and ~200 ms (one long round trip and two short ones) when the
// edge terminates Link (terminated). Minimums are used because CPU load on
// a shared CI machine only ever adds delay.
func checkFigures(t *testing.T, direct, accel measurement, terminated bool) {
	t.Helper()
	for name, m := range map[string]measurement{"direct": direct, "edge": accel} {
		if len(m.ConnectMS) < 6 || len(m.MessageMS) < 10 {
			t.Fatalf("%s: %d logins, %d messages (%d and %d failed)", name,
				len(m.ConnectMS), len(m.MessageMS), m.ConnectFailed, m.MessageFailed)
		}
		if lo := pct(m.MessageMS, 0); lo < 177 {
			t.Errorf("%s: a message took %.0f ms, faster than the 180 ms round trip", name, lo)
		}
		if p50 := pct(m.MessageMS, 50); p50 > 400 {
			t.Errorf("%s: message p50 %.0f ms, want about 180", name, p50)
		}
	}
	d, a := pct(direct.ConnectMS, 0), pct(accel.ConnectMS, 0)
	t.Logf("connect+login: direct min %.0f p50 %.0f ms, through the edge min %.0f p50 %.0f ms",
		d, pct(direct.ConnectMS, 50), a, pct(accel.ConnectMS, 50))
	if d < 535 {
		t.Errorf("direct connect+login in %.0f ms: faster than three 180 ms round trips", d)
	}
	switch {
	case terminated && (a < 28 || a > d/3):
		// The edge answers the login (signed token): TCP, Noise and login
		// on the 10 ms access leg.
		t.Errorf("best connect+login through the terminating edge %.0f ms, direct %.0f ms: want about 30 against 540", a, d)
	case !terminated && (a < 355 || a > d-100):
		t.Errorf("best connect+login through the edge %.0f ms, direct %.0f ms: want about 370 against 540", a, d)
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
	checkFigures(t, direct, accel, false)
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
	var direct, accel, overQUIC, plain measurement
	f.measured = func(d, a measurement) { direct, accel = d, a }
	f.measuredQUIC = func(q, p measurement) { overQUIC, plain = q, p }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := orchestrate(ctx, slog.New(slog.DiscardHandler), f); err != nil {
		t.Fatal(err)
	}
	checkFigures(t, direct, accel, true)
	// Link over QUIC from the SDK processes to the edge process: logins and
	// messages through edge → egress → core; a message takes about the
	// 180 ms round trip, and logging in stays far below the direct path.
	// The same without copies of small packets (a second edge) works too.
	for _, q := range []struct {
		name string
		m    measurement
	}{{"over QUIC", overQUIC}, {"over QUIC without copies", plain}} {
		if len(q.m.ConnectMS) == 0 || len(q.m.MessageMS) < 10 || q.m.ConnectFailed+q.m.MessageFailed > 0 {
			t.Fatalf("%s: %d logins (%d failed), %d messages (%d failed)", q.name, len(q.m.ConnectMS), q.m.ConnectFailed,
				len(q.m.MessageMS), q.m.MessageFailed)
		}
	}
	if lo, p50 := pct(overQUIC.MessageMS, 0), pct(overQUIC.MessageMS, 50); lo < 175 || p50 > 400 {
		t.Errorf("over QUIC: messages min %.0f p50 %.0f ms, want about one 180 ms round trip", lo, p50)
	}
	if q, d := pct(overQUIC.ConnectMS, 50), pct(direct.ConnectMS, 50); q > d/2 {
		t.Errorf("over QUIC: connect+login p50 %.0f ms, direct %.0f", q, d)
	}
	t.Logf("over QUIC: connect+login p50 %.0f ms, message p50 %.0f p99 %.0f ms", pct(overQUIC.ConnectMS, 50),
		pct(overQUIC.MessageMS, 50), pct(overQUIC.MessageMS, 99))
	// Connect, login and the first message acked: the core's answer
	// crosses the backbone on both paths.
	if len(direct.FirstMsgMS) == 0 || len(accel.FirstMsgMS) == 0 {
		t.Fatalf("first message samples: %d direct, %d through the edge", len(direct.FirstMsgMS), len(accel.FirstMsgMS))
	}
	fd, fa := pct(direct.FirstMsgMS, 0), pct(accel.FirstMsgMS, 0)
	t.Logf("connect+login+first message: direct min %.0f, through the edge min %.0f ms", fd, fa)
	if fd < 715 {
		t.Errorf("direct first message acked after %.0f ms: faster than four 180 ms round trips", fd)
	}
	if fa < 195 || fa > fd/2 {
		t.Errorf("first message through the edge acked after %.0f ms (direct %.0f): want about 200 (three 10 ms round trips and one of 170 ms)", fa, fd)
	}
}

// TestFECSmoke runs -mode fec briefly: a real edge and egress pair with KCP
// FEC and one without, side by side on a backbone losing 3% each way. Both
// carry messages and a download; only the FEC pair's receivers get parity
// and rebuild lost packets from it.
func TestFECSmoke(t *testing.T) {
	f := smokeFlags(t)
	f.mode, f.world, f.rounds, f.fecData, f.fecParity = "fec", fecWorld, 1, 10, 3
	var fec, plain fecVariant
	f.measuredFEC = func(a, b fecVariant) { fec, plain = a, b }
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := fecBench(ctx, slog.New(slog.DiscardHandler), f); err != nil {
		t.Fatal(err)
	}
	for _, v := range []fecVariant{fec, plain} {
		if len(v.messages) < 10 || v.bulkBytes == 0 {
			t.Fatalf("%s: %d messages (%d failed), %d bytes downloaded", v.name, len(v.messages), v.messageFailed, v.bulkBytes)
		}
		if lo := pct(v.messages, 0); lo < 168 {
			t.Errorf("%s: a message took %.0f ms, faster than the 170 ms round trip", v.name, lo)
		}
	}
	t.Logf("fec: %.0f parity shards, %.0f packets rebuilt; goodput %.1f Mbit/s (plain %.1f)", fec.parityReceived, fec.recovered, fec.goodput(), plain.goodput())
	if fec.parityReceived == 0 || fec.recovered == 0 {
		t.Errorf("with FEC: %.0f parity shards received, %.0f packets rebuilt", fec.parityReceived, fec.recovered)
	}
	if plain.parityReceived != 0 || plain.recovered != 0 {
		t.Errorf("without FEC: %.0f parity shards received, %.0f packets rebuilt", plain.parityReceived, plain.recovered)
	}
}

// TestRUMSteering runs -mode rum briefly (issue 17 part 4): the real
// LBS, two real edges and the core in worlds/rum.yaml. Before any report
// every answer puts the geo-nearer edge (200 ms, 2% loss) first; after
// three clients' reports every answer for the user's prefix puts the
// farther, faster edge first, and new clients connect faster.
func TestRUMSteering(t *testing.T) {
	f := smokeFlags(t)
	f.mode, f.world, f.plan.connects = "rum", rumWorld, 6
	var before, after rumMeasurement
	f.measuredRUM = func(b, a rumMeasurement) { before, after = b, a }
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := rumBench(ctx, slog.New(slog.DiscardHandler), f); err != nil {
		t.Fatal(err)
	}
	if before.First["edge-near"] != 6 || after.First["edge-far"] != 6 {
		t.Fatalf("first in the answers: before %v, after %v; want edge-near, then edge-far", before.First, after.First)
	}
	if len(before.ConnectMS) < 5 || len(after.ConnectMS) < 5 {
		t.Fatalf("connects: %d before, %d after", len(before.ConnectMS), len(after.ConnectMS))
	}
	b, a := pct(before.ConnectMS, 50), pct(after.ConnectMS, 50)
	t.Logf("connect+login p50: before %.0f ms, after %.0f ms", b, a)
	if a >= b {
		t.Fatalf("connect p50 after learning %.0f ms, before %.0f ms", a, b)
	}
}
