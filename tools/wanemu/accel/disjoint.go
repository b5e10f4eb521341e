package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/longlink/longlink/tools/wanemu/wan"
)

// disjointVariant is one edge of the disjoint-paths benchmark: the same
// routes (relay-a preferred, relay-b the other way round), its own copies.
type disjointVariant struct {
	name     string
	routing  string // the edge's extra routing keys
	port     int
	debug    int
	messages []float64
	failed   int
	wire     uint64 // bytes between the edge and both relays, both ways, in its message phases
	// From the edge's metrics at the end.
	wins, winsDisjoint, sent, noPath float64
}

// disjointBench measures what a copy of small frames through a second
// relay buys when the relay of a flow's path is lossy (world
// disjoint.yaml: relay-a's backbone loses bursts of packets, relay-b's is
// clean and longer). Three edges with the same routes run side by side:
// single (one copy of each stream, through relay-a), lanes (two copies on
// two lanes of relay-a, as routing.redundancy does) and disjoint (one copy
// through relay-a and its small records through relay-b too). The
// stand-in client measures message round trips through each in
// alternating rounds, so all three see the same machine and the same
// relays; the edge-to-relay bytes are counted per phase.
//
// The edges label relay-a with their home site (routing.home_site), so
// that every variant's streams start on the lossy relay: a relay whose
// loss is not high enough for the probes to move flows off it, the case
// the disjoint copy is for.
func disjointBench(ctx context.Context, log *slog.Logger, f flags) error {
	w, dir, stop, err := startWorld(ctx, log, f.world, "user", "edge", "relay_a", "relay_b", "core")
	if err != nil {
		return err
	}
	defer stop()
	addr := func(n string) string { return w.Addr(n).String() }
	edge, core := addr("edge"), addr("core")
	run, err := newLonglinkRun(ctx, w, dir, map[string]string{"edge": edge, "core": core, "relay_a": addr("relay_a"), "relay_b": addr("relay_b")})
	if err != nil {
		return err
	}
	defer run.finish()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if err := startRole(ctx, w, "core", exe, []string{"-role", "server", "-listen", "127.0.0.1:7710", "-pki", run.pkiDir}); err != nil {
		return fmt.Errorf("stand-in server: %w", err)
	}
	eg, err := run.config("egress.yaml", fmt.Sprintf(`name: egress
cluster: default
listen: {quic: "%s:7745"}
%sservices:
  link: {kind: link, address: "127.0.0.1:7710", proxy_protocol: false}
`, core, run.security("core")))
	if err != nil {
		return err
	}
	if _, err := run.start(ctx, "core", nil, "relay", "-egress", "-config", eg, "-debug-addr", core+":7759"); err != nil {
		return err
	}
	// World node names may not hold '-'; the relays' own names do.
	for _, r := range []string{"relay_a", "relay_b"} {
		rc, err := run.config(r+".yaml", fmt.Sprintf(`name: %s
listen: {quic: "%s:7740"}
%srouting:
  routes:
    - cluster: default
      next_hops: [{name: core, transport: quic, address: "%s:7745"}]
`, strings.ReplaceAll(r, "_", "-"), addr(r), run.security(r), core))
		if err != nil {
			return err
		}
		if _, err := run.start(ctx, r, nil, "relay", "-config", rc, "-debug-addr", addr(r)+":7749"); err != nil {
			return err
		}
	}
	variants := []*disjointVariant{
		{name: "single", routing: "  redundancy: {link: 1}\n", port: 7720, debug: 7729},
		{name: "lanes", routing: "  redundancy: {link: 2}\n", port: 7730, debug: 7739},
		{name: "disjoint", routing: fmt.Sprintf("  redundancy: {link: 1}\n  disjoint: {enabled: true, max_frame: %d}\n", f.maxFrame), port: 7750, debug: 7759},
	}
	for _, v := range variants {
		ed, err := run.config("edge-"+v.name+".yaml", fmt.Sprintf(`name: edge-%s
cluster: default
site: near
link: {listen: "%s:%d", service: link}
weblink: {listen: ""}
%srouting:
  routes:
    - cluster: default
      next_hops:
        - {name: relay-a, transport: quic, address: "%s:7740", site: near}
        - {name: relay-b, transport: quic, address: "%s:7740", site: far}
%s`, v.name, edge, v.port, run.security("edge"), addr("relay_a"), addr("relay_b"), v.routing))
		if err != nil {
			return err
		}
		if _, err := run.start(ctx, "edge", nil, "edge", "-config", ed, "-debug-addr", fmt.Sprintf("%s:%d", edge, v.debug)); err != nil {
			return err
		}
	}
	fmt.Printf("# world %s: stand-in client -> longlink edge (Link passthrough) -> relay-a (bursty loss) or relay-b (clean, +24 ms) -> egress -> stand-in server; single vs lanes vs disjoint (max_frame %d), %d alternating rounds of %s\n",
		f.world, f.maxFrame, f.rounds, f.plan.msgFor)

	client := func(v *disjointVariant, args ...string) (measurement, uint64, error) {
		return standinPhase(ctx, w, exe, run.pkiDir, fmt.Sprintf("%s:%d", edge, v.port), relayBytes, args...)
	}
	for _, v := range variants {
		if err := standinLogin(ctx, w, exe, run.pkiDir, fmt.Sprintf("%s:%d", edge, v.port)); err != nil {
			return fmt.Errorf("no login through %s: %w", v.name, err)
		}
	}
	for round := range f.rounds {
		for i := range variants {
			v := variants[(i+round)%len(variants)]
			m, wire, err := client(v, "-connects", "0", "-msg-conns", fmt.Sprint(f.plan.msgConns), "-msg-for", f.plan.msgFor.String(), "-bulk-for", "0s")
			if err != nil {
				return err
			}
			v.messages = append(v.messages, m.MessageMS...)
			v.failed += m.MessageFailed
			v.wire += wire
		}
	}
	for _, v := range variants {
		text, err := run.metrics("edge", fmt.Sprintf("%s:%d", edge, v.debug))
		if err != nil {
			return fmt.Errorf("metrics of edge-%s: %w", v.name, err)
		}
		v.wins = metricSum(text, "longlink_relay_disjoint_wins_total", `copy="primary"`)
		v.winsDisjoint = metricSum(text, "longlink_relay_disjoint_wins_total", `copy="disjoint"`)
		v.sent = metricSum(text, "longlink_relay_disjoint_sent_total")
		v.noPath = metricSum(text, "longlink_relay_disjoint_copies_total", `event="no_path"`)
		fmt.Printf("# edge-%s streams per path: relay-a %.0f, relay-b %.0f\n", v.name,
			metricSum(text, "longlink_relay_path_streams_total", `path="relay-a"`), metricSum(text, "longlink_relay_path_streams_total", `path="relay-b"`))
	}
	reportDisjoint(variants)
	printLinkStats(w)
	return nil
}

// relayBytes is what the emulator delivered between the edge and the two
// relays, both ways.
func relayBytes(w *wan.World) uint64 {
	var sum uint64
	for _, r := range []string{"relay_a", "relay_b"} {
		up, _ := w.Stats("edge", r)
		down, _ := w.Stats(r, "edge")
		sum += up.DeliveredBytes + down.DeliveredBytes
	}
	return sum
}

func reportDisjoint(vs []*disjointVariant) {
	res := func(name string, v float64, unit string) {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			fmt.Printf("RESULT disjoint_%s %.2f %s\n", name, v, unit)
		}
	}
	for _, v := range vs {
		fmt.Printf("# %s: %d messages (%d failed); p90 %.0f p95 %.0f p99.5 %.0f p99.9 %.0f max %.0f ms\n", v.name, len(v.messages), v.failed,
			pct(v.messages, 90), pct(v.messages, 95), pct(v.messages, 99.5), pct(v.messages, 99.9), pct(v.messages, 100))
		res("msg_rtt_"+v.name+"_p50", pct(v.messages, 50), "ms")
		res("msg_rtt_"+v.name+"_p99", pct(v.messages, 99), "ms")
		res("wire_per_message_"+v.name, float64(v.wire)/float64(len(v.messages)), "B")
	}
	single, disjoint := vs[0], vs[len(vs)-1]
	res("msg_rtt_p99_reduction", 100*(1-pct(disjoint.messages, 99)/pct(single.messages, 99)), "%")
	res("wire_overhead", 100*(float64(disjoint.wire)/float64(len(disjoint.messages))/(float64(single.wire)/float64(len(single.messages)))-1), "%")
	total := disjoint.wins + disjoint.winsDisjoint
	res("first_by_disjoint_copy", 100*disjoint.winsDisjoint/total, "%")
	fmt.Printf("# disjoint edge: %.0f small records sent twice, first arrivals %.0f primary / %.0f disjoint, %.0f streams without a second relay\n",
		disjoint.sent, disjoint.wins, disjoint.winsDisjoint, disjoint.noPath)
}

// disjointWorld is the default world of the disjoint-paths benchmark.
var disjointWorld = filepath.Join("tools", "wanemu", "worlds", "disjoint.yaml")

// startDisjointEdge starts, for -impl longlink -disjoint, relay_b (a relay
// to the core's egress) and edge-disjoint in the edge node: edge-1's
// configuration with its own ports (Link 7727, Link over QUIC 7728, debug
// 7739) and two next hops, the egress (its home path, as edge-1's direct
// hop) and relay_b, with routing.disjoint: every stream's small records
// also go through relay_b.
func startDisjointEdge(ctx context.Context, run *longlinkRun, w *wan.World, tunnel, egressPort, terminate, routing string) error {
	relay, core, edge := w.Addr("relay_b").String(), w.Addr("core").String(), w.Addr("edge").String()
	relayPort := map[string]string{"quic": "7740", "kcp": "7741"}[tunnel]
	rc, err := run.config("relay-b.yaml", fmt.Sprintf(`name: relay-b
listen: {%[1]s: "%[2]s:%[3]s"}
%[4]srouting:
  routes:
    - cluster: default
      next_hops: [{name: core, transport: %[1]s, address: "%[5]s:%[6]s"}]
`, tunnel, relay, relayPort, run.security("relay_b"), core, egressPort))
	if err != nil {
		return err
	}
	if _, err := run.start(ctx, "relay_b", nil, "relay", "-config", rc, "-debug-addr", ""); err != nil {
		return err
	}
	ec, err := run.config("edge-disjoint.yaml", fmt.Sprintf(`name: edge-disjoint
cluster: default
site: near
link: {listen: "%[1]s:7727", quic: "%[1]s:7728", service: link%[2]s}
weblink: {listen: ""}
%[3]srouting:
  routes:
    - cluster: default
      next_hops:
        - {name: core, transport: %[4]s, address: "%[5]s:%[6]s", site: near}
        - {name: relay-b, transport: %[4]s, address: "%[7]s:%[8]s", site: far}
  disjoint: {enabled: true}
%[9]s`, edge, terminate, run.security("edge"), tunnel, core, egressPort, relay, relayPort, routing))
	if err != nil {
		return err
	}
	_, err = run.start(ctx, "edge", nil, "edge", "-config", ec, "-debug-addr", edge+":7739")
	return err
}

// printDisjointCopies prints what edge-disjoint's copies did and cost: the
// small records it sent a second time, which copy brought the records it
// received first, and the bytes the emulator carried between the edge and
// relay_b (the copies, and the lanes' probes and keep-alives) per message
// through edge-disjoint, against the edge ↔ core bytes per message of all
// the edges' messages (their one path).
func printDisjointCopies(run *longlinkRun, w *wan.World, ms ...measurement) {
	text, err := run.metrics("edge", w.Addr("edge").String()+":7739")
	if err != nil {
		fmt.Printf("# edge-disjoint: metrics: %v\n", err)
		return
	}
	both := func(a, b string) uint64 {
		ab, _ := w.Stats(a, b)
		ba, _ := w.Stats(b, a)
		return ab.DeliveredBytes + ba.DeliveredBytes
	}
	n := 0
	for _, m := range ms {
		n += len(m.MessageMS)
	}
	fmt.Printf("# edge-disjoint: %.0f small records sent a second time, first arrivals %.0f primary / %.0f disjoint, %.0f streams without a second relay; "+
		"edge <-> relay_b %.1f MB (%.0f B per message through edge-disjoint, %d messages); edge <-> core %.1f MB for every edge\n",
		metricSum(text, "longlink_relay_disjoint_sent_total"),
		metricSum(text, "longlink_relay_disjoint_wins_total", `copy="primary"`), metricSum(text, "longlink_relay_disjoint_wins_total", `copy="disjoint"`),
		metricSum(text, "longlink_relay_disjoint_copies_total", `event="no_path"`),
		float64(both("edge", "relay_b"))/1e6, float64(both("edge", "relay_b"))/float64(n), n, float64(both("edge", "core"))/1e6)
}
