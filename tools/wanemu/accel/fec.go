package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/longlink/longlink/tools/wanemu/wan"
)

// fecVariant is one tunnel configuration of the FEC benchmark: an edge and
// an egress whose KCP transport uses the given Reed-Solomon shards.
type fecVariant struct {
	name           string
	data, parity   int
	edgePort       int
	egressPort     int
	edgeDebug      int
	egressDebug    int
	messages       []float64
	messageFailed  int
	messageWire    uint64 // backbone bytes delivered (both ways) during the message phases
	bulkBytes      int64
	bulkSeconds    float64
	bulkWire       uint64
	recovered      float64 // lost KCP packets rebuilt by FEC (edge and egress processes)
	parityReceived float64
	retransmitted  float64
}

// fecBench measures what KCP's forward error correction does on a lossy
// backbone (world lossy-backbone.yaml: 170 ms RTT, 3% loss each way): two
// edge → egress tunnels run side by side, one with FEC (-fec-data and
// -fec-parity shards, by default the transport's 10 + 3) and one without, and the stand-in client measures
// message round trips and a bulk download through each in alternating
// phases, with the backbone's bytes counted per phase. The figures of both
// variants come from the same run.
func fecBench(ctx context.Context, log *slog.Logger, f flags) error {
	w, dir, stop, err := startWorld(ctx, log, f.world, "user", "edge", "core")
	if err != nil {
		return err
	}
	defer stop()
	edge, core := w.Addr("edge").String(), w.Addr("core").String()
	run, err := newLonglinkRun(ctx, w, dir, map[string]string{"edge": edge, "core": core})
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
	variants := []*fecVariant{
		{name: "fec", data: f.fecData, parity: f.fecParity, edgePort: 7720, egressPort: 7746, edgeDebug: 7729, egressDebug: 7749},
		{name: "plain", data: 0, parity: 0, edgePort: 7730, egressPort: 7756, edgeDebug: 7739, egressDebug: 7759},
	}
	lanes := ""
	if f.lanes > 0 {
		lanes = fmt.Sprintf("  lanes: %d\n  redundancy: {link_frames: 1}\n", f.lanes)
	}
	for _, v := range variants {
		kcpCfg := fmt.Sprintf("transport: {kcp: {data_shards: %d, parity_shards: %d}}\n", v.data, v.parity)
		eg, err := run.config("egress-"+v.name+".yaml", fmt.Sprintf(`name: egress-%s
cluster: default
listen: {kcp: "%s:%d"}
%s%sservices:
  link: {kind: link, address: "127.0.0.1:7710", proxy_protocol: false}
`, v.name, core, v.egressPort, run.security("core"), kcpCfg))
		if err != nil {
			return err
		}
		ed, err := run.config("edge-"+v.name+".yaml", fmt.Sprintf(`name: edge-%s
cluster: default
link: {listen: "%s:%d", service: link}
weblink: {listen: ""}
%s%srouting:
  routes:
    - cluster: default
      next_hops: [{name: core, transport: kcp, address: "%s:%d"}]
%s`, v.name, edge, v.edgePort, run.security("edge"), kcpCfg, core, v.egressPort, lanes))
		if err != nil {
			return err
		}
		if _, err := run.start(ctx, "core", nil, "relay", "-egress", "-config", eg, "-debug-addr", fmt.Sprintf("%s:%d", core, v.egressDebug)); err != nil {
			return err
		}
		if _, err := run.start(ctx, "edge", nil, "edge", "-config", ed, "-debug-addr", fmt.Sprintf("%s:%d", edge, v.edgeDebug)); err != nil {
			return err
		}
	}
	fmt.Printf("# world %s: stand-in client -> longlink edge (Link passthrough) -> KCP tunnel -> longlink egress -> stand-in server; FEC %d+%d vs none, %d alternating rounds, lanes %d (0: default)\n",
		f.world, f.fecData, f.fecParity, f.rounds, f.lanes)

	client := func(v *fecVariant, args ...string) (measurement, uint64, error) {
		return standinPhase(ctx, w, exe, run.pkiDir, fmt.Sprintf("%s:%d", edge, v.edgePort), backboneBytes, args...)
	}
	// Warm up: both tunnels carry a login before anything is measured.
	for _, v := range variants {
		if err := standinLogin(ctx, w, exe, run.pkiDir, fmt.Sprintf("%s:%d", edge, v.edgePort)); err != nil {
			return fmt.Errorf("no login through %s: %w", v.name, err)
		}
	}
	for round := range f.rounds {
		order := variants
		if round%2 == 1 {
			order = []*fecVariant{variants[1], variants[0]}
		}
		for _, v := range order {
			m, wire, err := client(v, "-connects", "0", "-msg-conns", fmt.Sprint(f.plan.msgConns), "-msg-for", f.plan.msgFor.String(), "-bulk-for", "0s")
			if err != nil {
				return err
			}
			v.messages = append(v.messages, m.MessageMS...)
			v.messageFailed += m.MessageFailed
			v.messageWire += wire
			m, wire, err = client(v, "-connects", "0", "-msg-conns", "0", "-msg-for", "0s", "-bulk-for", f.plan.bulkFor.String())
			if err != nil {
				return err
			}
			v.bulkBytes += m.BulkBytes
			v.bulkSeconds += m.BulkSeconds
			v.bulkWire += wire
		}
	}
	for _, v := range variants {
		for _, p := range []struct{ node, addr string }{{"edge", fmt.Sprintf("%s:%d", edge, v.edgeDebug)}, {"core", fmt.Sprintf("%s:%d", core, v.egressDebug)}} {
			text, err := run.metrics(p.node, p.addr)
			if err != nil {
				return fmt.Errorf("metrics of %s at %s: %w", v.name, p.addr, err)
			}
			v.recovered += metricSum(text, "longlink_relay_kcp_fec_packets_total", `event="recovered"`)
			v.parityReceived += metricSum(text, "longlink_relay_kcp_fec_packets_total", `event="parity_received"`)
			v.retransmitted += metricSum(text, "longlink_relay_kcp_retransmitted_segments_total")
		}
	}
	reportFEC(variants[0], variants[1])
	printLinkStats(w)
	if f.measuredFEC != nil {
		f.measuredFEC(*variants[0], *variants[1])
	}
	return nil
}

// standinPhase runs the stand-in client (-role client) in the user node
// against target with args, once the backbone is quiet (the last phase's
// tail, a bulk download's data in flight and its retransmissions, must not
// count in this one), and returns its measurement and the bytes count
// delivered meanwhile.
func standinPhase(ctx context.Context, w *wan.World, exe, pkiDir, target string, count func(*wan.World) uint64, args ...string) (measurement, uint64, error) {
	var m measurement
	waitQuiet(ctx, w)
	before := count(w)
	cmd, err := w.Command(ctx, "user", exe, append([]string{"-role", "client", "-pki", pkiDir, "-target", target}, args...)...)
	if err != nil {
		return m, 0, err
	}
	out, err := runOutput(w, cmd)
	if err == nil {
		err = json.Unmarshal(out, &m)
	}
	if err != nil {
		return m, 0, fmt.Errorf("client via %s: %w", target, err)
	}
	return m, count(w) - before, nil
}

// standinLogin runs the stand-in client for one login against target until
// one succeeds (30 s at the most): the tunnels behind target have carried
// a login before anything is measured.
func standinLogin(ctx context.Context, w *wan.World, exe, pkiDir, target string) error {
	return waitFor(ctx, 30*time.Second, func() bool {
		m, _, err := standinPhase(ctx, w, exe, pkiDir, target, backboneBytes,
			"-connects", "1", "-concurrency", "1", "-msg-conns", "0", "-msg-for", "0s", "-bulk-for", "0s")
		return err == nil && len(m.ConnectMS) == 1
	})
}

// waitQuiet waits (at most 20 s) until the backbone carries less than
// 50 kB/s.
func waitQuiet(ctx context.Context, w *wan.World) {
	last := backboneBytes(w)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(500 * time.Millisecond)
		now := backboneBytes(w)
		if now-last < 25_000 {
			return
		}
		last = now
	}
}

// backboneBytes is what the emulator delivered between edge and core, both
// ways.
func backboneBytes(w *wan.World) uint64 {
	up, _ := w.Stats("edge", "core")
	down, _ := w.Stats("core", "edge")
	return up.DeliveredBytes + down.DeliveredBytes
}

func reportFEC(fec, plain *fecVariant) {
	res := func(name string, v float64, unit string) {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			fmt.Printf("RESULT fec_%s %.2f %s\n", name, v, unit)
		}
	}
	fmt.Printf("# samples: messages fec %d (failed %d), plain %d (failed %d)\n",
		len(fec.messages), fec.messageFailed, len(plain.messages), plain.messageFailed)
	for _, v := range []*fecVariant{plain, fec} {
		res("msg_rtt_"+v.name+"_p50", pct(v.messages, 50), "ms")
		res("msg_rtt_"+v.name+"_p99", pct(v.messages, 99), "ms")
		res("goodput_"+v.name, v.goodput(), "Mbit/s")
	}
	res("goodput_gain", 100*(fec.goodput()/plain.goodput()-1), "%")
	res("msg_rtt_p99_reduction", 100*(1-pct(fec.messages, 99)/pct(plain.messages, 99)), "%")
	// Bandwidth: backbone bytes (IP, both ways, retransmissions and parity
	// included) per byte the client received in the bulk phase, and per
	// message in the message phase.
	for _, v := range []*fecVariant{plain, fec} {
		res("bulk_wire_per_byte_"+v.name, v.bulkWirePerByte(), "B/B")
		res("msg_wire_per_message_"+v.name, v.msgWirePerMessage(), "B")
	}
	res("bulk_overhead", 100*(fec.bulkWirePerByte()/plain.bulkWirePerByte()-1), "%")
	res("msg_overhead", 100*(fec.msgWirePerMessage()/plain.msgWirePerMessage()-1), "%")
	for _, v := range []*fecVariant{plain, fec} {
		fmt.Printf("# %s: p90 %.0f p95 %.0f p98 %.0f p99.5 %.0f ms; kcp-go (edge + egress processes): %.0f retransmitted segments, %.0f parity shards received, %.0f packets recovered by FEC\n",
			v.name, pct(v.messages, 90), pct(v.messages, 95), pct(v.messages, 98), pct(v.messages, 99.5),
			v.retransmitted, v.parityReceived, v.recovered)
	}
}

func (v *fecVariant) goodput() float64 {
	if v.bulkSeconds == 0 {
		return math.NaN()
	}
	return float64(v.bulkBytes*8) / v.bulkSeconds / 1e6
}

func (v *fecVariant) bulkWirePerByte() float64 {
	return float64(v.bulkWire) / float64(v.bulkBytes)
}

func (v *fecVariant) msgWirePerMessage() float64 {
	return float64(v.messageWire) / float64(len(v.messages))
}

// fecWorld is the default world of the FEC benchmark.
var fecWorld = filepath.Join("tools", "wanemu", "worlds", "lossy-backbone.yaml")
