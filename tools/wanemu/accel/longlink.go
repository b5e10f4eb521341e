package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/pkg/pki"
	"github.com/longlink/longlink/tools/wanemu/wan"
)

// This file runs the real Longlink in the standard world: `longlink dev` (the
// core with its demo app and users) and `longlink relay -egress` in the core
// namespace, `longlink edge` in the edge namespace, and core/sdk clients in
// the user namespace, once straight to the core's gateway and once through
// the edge. Figures are named accel_*.

// demoAccounts are the users `longlink dev` seeds.
var demoAccounts = []string{"alice", "bob", "carol"}

// orchestrateLonglink builds cmd/longlink, starts it in the world and
// measures both paths.
func orchestrateLonglink(ctx context.Context, log *slog.Logger, f flags, w *wan.World, dir, exe string) error {
	nodes := map[string]string{"edge": w.Addr("edge").String(), "core": w.Addr("core").String()}
	if f.disjoint {
		if !w.Addr("relay_b").IsValid() {
			return fmt.Errorf("-disjoint: world %s has no node relay_b", f.world)
		}
		nodes["relay_b"] = w.Addr("relay_b").String()
	}
	run, err := newLonglinkRun(ctx, w, dir, nodes)
	if err != nil {
		return err
	}
	defer run.finish()
	core, edge := w.Addr("core").String(), w.Addr("edge").String()
	port := map[string]string{"quic": "7745", "kcp": "7746"}[f.tunnel]
	files := map[string]string{
		// The gateway also listens on the core's world address, for the
		// direct path; the egress reaches it on loopback.
		"dev.yaml": `
core:
  gateway:
    listen: 0.0.0.0:7710
    trusted_proxies: [127.0.0.1/32]
`,
		"egress.yaml": fmt.Sprintf(`
name: core-egress
cluster: default
listen: {quic: "%[1]s:7745", kcp: "%[1]s:7746"}
%[2]s
services:
  link: {kind: link, address: "127.0.0.1:7710"}
  link-frames: {kind: link-frames, address: "127.0.0.1:7713"}
`, core, run.security("core")),
	}
	// Two edges side by side in the edge node: edge-1 as deployed, and
	// edge-plain, the same but sending no copies of small packets to its
	// Link over QUIC clients: the same run's baseline for the copies.
	edgeYAML := `
name: %[8]s
cluster: default
link: {listen: "%[1]s:%[9]d", quic: "%[1]s:%[10]d", quic_duplicate_max: %[11]d, service: link%[6]s}
weblink: {listen: ""}
%[2]s
routing:
  routes:
    - cluster: default
      direct: {name: core, transport: %[3]s, address: "%[4]s:%[5]s"}
%[7]s`
	for name, text := range files {
		if _, err := run.config(name, text); err != nil {
			return err
		}
	}
	devDir := filepath.Join(dir, "dev")
	start := func(node string, args ...string) error {
		_, err := run.start(ctx, node, nil, args...)
		return err
	}
	if err := start("core", "dev", "-dir", devDir, "-config", filepath.Join(dir, "dev.yaml")); err != nil {
		return err
	}
	clientFile := filepath.Join(devDir, "client.json")
	if err := waitFor(ctx, 60*time.Second, func() bool { _, err := os.Stat(clientFile); return err == nil }); err != nil {
		return fmt.Errorf("longlink dev did not write %s: %w", clientFile, err)
	}
	// The edge terminates Link with the dev core's key (as `longlink dev`'s
	// own edge does), unless -passthrough.
	terminate := ""
	if !f.passthrough {
		var st struct {
			ID      string `json:"link_key_id"`
			Private string `json:"link_private_key"`
			// The dev core signs the demo tokens; with the public key the
			// edge answers logins itself (LINK.md section 7).
			TokenKeyID     string `json:"token_key_id"`
			TokenPublicKey string `json:"token_public_key"`
		}
		b, err := os.ReadFile(filepath.Join(devDir, "dev.json"))
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err != nil {
			return fmt.Errorf("dev state: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "link.key"), []byte(st.Private), 0o600); err != nil {
			return err
		}
		if st.TokenPublicKey == "" {
			return errors.New("dev state has no token_public_key: longlink dev no longer signs its tokens?")
		}
		terminate = fmt.Sprintf(", terminate: {keys: [{id: %q, private_key: \"file:%s\"}], token_keys: [{id: %q, public_key: %q}]}",
			st.ID, filepath.Join(dir, "link.key"), st.TokenKeyID, st.TokenPublicKey)
	}
	redundancy := ""
	if f.redundancy > 0 {
		redundancy = fmt.Sprintf("  redundancy: {link_frames: %d}\n", f.redundancy)
	}
	if f.lanes > 0 {
		redundancy += fmt.Sprintf("  lanes: %d\n", f.lanes)
	}
	for _, e := range []struct {
		name              string
		link, quic, dupes int
	}{{"edge-1", 7720, 7724, 0}, {"edge-plain", 7722, 7725, -1}} {
		text := fmt.Sprintf(edgeYAML, edge, run.security("edge"), f.tunnel, core, port, terminate, redundancy, e.name, e.link, e.quic, e.dupes)
		if _, err := run.config(e.name+".yaml", text); err != nil {
			return err
		}
	}
	if err := start("core", "relay", "-egress", "-config", filepath.Join(dir, "egress.yaml"), "-debug-addr", core+":7759"); err != nil {
		return err
	}
	if err := start("edge", "edge", "-config", filepath.Join(dir, "edge-1.yaml"), "-debug-addr", edge+":7729"); err != nil {
		return err
	}
	if err := start("edge", "edge", "-config", filepath.Join(dir, "edge-plain.yaml"), "-debug-addr", ""); err != nil {
		return err
	}
	edgePorts := []string{"7720", "7722"}
	if f.disjoint {
		if err := startDisjointEdge(ctx, run, w, f.tunnel, port, terminate, redundancy); err != nil {
			return err
		}
		edgePorts = append(edgePorts, "7727")
	}
	for _, port := range edgePorts {
		if err := waitFor(ctx, 30*time.Second, func() bool {
			return w.Do("edge", func() error {
				c, err := net.DialTimeout("tcp", edge+":"+port, time.Second)
				if err == nil {
					c.Close()
				}
				return err
			}) == nil
		}); err != nil {
			return fmt.Errorf("edge Link listener %s: %w", port, err)
		}
	}
	mode := "terminating Link"
	if f.passthrough {
		mode = "Link passthrough"
	}
	fmt.Printf("# world %s: Longlink direct user->core gateway vs user->edge (%s)->%s tunnel->core egress; clients: dial race %v (0: default), nudge %v; edge link-frames redundancy %d, lanes %d (0: default)\n",
		f.world, mode, f.tunnel, f.link.DialRace, !f.link.DisableNudge, f.redundancy, f.lanes)

	clientArgs := []string{"-role", "sdkclient", "-clientfile", clientFile,
		"-connects", fmt.Sprint(f.plan.connects), "-msg-for", f.plan.msgFor.String(),
		"-dial-race", f.link.DialRace.String(), fmt.Sprintf("-no-nudge=%v", f.link.DisableNudge)}
	measure := func(node string, vs ...variant) (map[string]measurement, error) {
		var m map[string]measurement
		b, err := json.Marshal(vs)
		if err != nil {
			return nil, err
		}
		cmd, err := w.Command(ctx, node, exe, append(clientArgs, "-variants", string(b))...)
		if err != nil {
			return nil, err
		}
		out, err := runOutput(w, cmd)
		if err != nil {
			return nil, fmt.Errorf("sdk client for %s: %w", b, err)
		}
		if err := json.Unmarshal(out, &m); err != nil {
			return nil, fmt.Errorf("sdk client for %s: %w", b, err)
		}
		return m, nil
	}
	d, err := measure("user", variant{Name: "direct", Target: core + ":7710"})
	if err != nil {
		return err
	}
	direct := d["direct"]
	var stopCore, stopEdge func() (measurement, error)
	if f.coreProbe {
		if stopCore, err = startProbe(ctx, w, exe, "core", clientFile, "127.0.0.1:7710", "probe-core"); err != nil {
			return err
		}
		if stopEdge, err = startProbe(ctx, w, exe, "edge", clientFile, edge+":7720", "probe-edge"); err != nil {
			return err
		}
	}
	// Through the edge, Link over TCP and over QUIC on the access leg
	// (core/link/linkquic), with copies of small packets and without,
	// taking turns in one client process.
	variants := []variant{{Name: "tcp", Target: edge + ":7720"},
		{Name: "quic", Target: "quic://" + edge + ":7724"},
		{Name: "quic_plain", Target: "quic://" + edge + ":7725", QUICDuplicateMax: -1}}
	if f.disjoint {
		// edge-disjoint: the same, and the small records of every stream
		// through relay_b too.
		variants = append(variants, variant{Name: "tcp_disjoint", Target: edge + ":7727"},
			variant{Name: "quic_disjoint", Target: "quic://" + edge + ":7728"})
	}
	var names []string
	for _, v := range variants {
		names = append(names, v.Name)
	}
	access, err := measure("user", variants...)
	if err != nil {
		return err
	}
	if f.coreProbe {
		core, err := stopCore()
		if err != nil {
			return err
		}
		edge, err := stopEdge()
		if err != nil {
			return err
		}
		reportProbe(core, edge, access, names...)
	}
	accel, overQUIC := access["tcp"], access["quic"]
	report("accel", f.tunnel, direct, accel)
	if f.measured != nil {
		f.measured(direct, accel)
	}
	reportAccess(f.tunnel, access, names, worldFloor(f.world))
	printQUICCopies(w, edge+":7729")
	printLanes(run, "core", core+":7759", "egress, lanes it accepted (towards the edges)", `side="accepted"`)
	printLanes(run, "edge", edge+":7729", "edge-1, lanes it dialed (towards the core)", `side="dialed"`)
	if f.disjoint {
		printDisjointCopies(run, w, access["tcp_disjoint"], access["quic_disjoint"])
	}
	if f.measuredQUIC != nil {
		f.measuredQUIC(overQUIC, access["quic_plain"])
	}
	if f.local {
		// The core's own share: the same client on the core's loopback, no
		// WAN at all (it competes with the core for this machine's CPU).
		l, err := measure("core", variant{Name: "local", Target: "127.0.0.1:7710"})
		if err != nil {
			return err
		}
		local := l["local"]
		fmt.Printf("# core-local samples: connect %d (failed %d), messages %d (failed %d)\n",
			len(local.ConnectMS), local.ConnectFailed, len(local.MessageMS), local.MessageFailed)
		for _, r := range []struct {
			name string
			v    float64
		}{
			{"connect_login_core_local_p50", pct(local.ConnectMS, 50)},
			{"connect_login_core_local_p99", pct(local.ConnectMS, 99)},
			{"msg_rtt_core_local_p50", pct(local.MessageMS, 50)},
			{"msg_rtt_core_local_p99", pct(local.MessageMS, 99)},
		} {
			if !math.IsNaN(r.v) {
				fmt.Printf("RESULT accel_%s %.2f ms\n", r.name, r.v)
			}
		}
	}
	printLinkStats(w)
	return nil
}

// printLanes prints the QUIC lanes of a node as its transport sees them at
// the end of the run (relay/README.md, "Lane metrics"): a lane whose
// congestion window shrank after losses while its traffic is bursty sends
// the burst's tail a round trip late.
func printLanes(run *longlinkRun, node, debug, what string, side string) {
	text, err := run.metrics(node, debug)
	if err != nil {
		fmt.Printf("# lanes of %s: %v\n", what, err)
		return
	}
	q := `transport="quic"`
	cwnd := metricSamples(text, "longlink_relay_lane_cwnd_bytes", side, q)
	rtt := metricSamples(text, "longlink_relay_lane_rtt_seconds", side, q)
	minRTT := metricSamples(text, "longlink_relay_lane_min_rtt_seconds", side, q)
	for i := range rtt {
		rtt[i] *= 1000
	}
	for i := range minRTT {
		minRTT[i] *= 1000
	}
	fmt.Printf("# lanes of %s: %d, cwnd min %.0f p50 %.0f max %.0f bytes; smoothed RTT p50 %.1f max %.1f ms (min RTT p50 %.1f); %.0f packets sent, %.0f lost\n",
		what, len(cwnd), pct(cwnd, 0), pct(cwnd, 50), pct(cwnd, 100), pct(rtt, 50), pct(rtt, 100), pct(minRTT, 50),
		metricSum(text, "longlink_relay_lane_sent_packets_total", side, q), metricSum(text, "longlink_relay_lane_lost_packets_total", side, q))
}

// reportAccess prints the access leg's figures of each variant (in names:
// TCP against QUIC, with copies of small packets and without, quic_plain,
// and through edge-disjoint with -disjoint) through the edges in the same
// run (accel_access_*), and the message p99 over the propagation floor of
// the path through the edge (the goal is 1.15).
func reportAccess(tunnel string, access map[string]measurement, names []string, floor time.Duration) {
	res := func(name string, v float64, unit string) {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			fmt.Printf("RESULT accel_access_%s %.2f %s\n", name, v, unit)
		}
	}
	var samples []string
	for _, n := range names {
		m := access[n]
		samples = append(samples, fmt.Sprintf("%s connect %d (failed %d), messages %d (failed %d)", n,
			len(m.ConnectMS), m.ConnectFailed, len(m.MessageMS), m.MessageFailed))
	}
	fmt.Printf("# access leg over TCP vs QUIC (edges, %s tunnel; the variants take turns); samples: %s; propagation floor %v\n",
		tunnel, strings.Join(samples, "; "), floor)
	for _, n := range names {
		m := access[n]
		res("connect_login_"+n+"_p50", pct(m.ConnectMS, 50), "ms")
		res("connect_login_"+n+"_p99", pct(m.ConnectMS, 99), "ms")
		res("connect_first_msg_"+n+"_p50", pct(m.FirstMsgMS, 50), "ms")
		res("connect_first_msg_"+n+"_p99", pct(m.FirstMsgMS, 99), "ms")
		res("msg_rtt_"+n+"_p50", pct(m.MessageMS, 50), "ms")
		res("msg_rtt_"+n+"_p99", pct(m.MessageMS, 99), "ms")
		if floor > 0 {
			res("msg_rtt_"+n+"_p99_over_floor", pct(m.MessageMS, 99)/ms(floor), "x")
		}
		fmt.Printf("# msg %s: p90 %.0f p95 %.0f p98 %.0f p99.5 %.0f ms, %.1f%% slower than p50 + 100 ms\n", n,
			pct(m.MessageMS, 90), pct(m.MessageMS, 95), pct(m.MessageMS, 98), pct(m.MessageMS, 99.5),
			slowShare(m.MessageMS))
		reportSplit(n, m)
	}
	for _, n := range names[1:] {
		res("msg_rtt_p99_reduction_"+n, 100*(1-pct(access[n].MessageMS, 99)/pct(access[names[0]].MessageMS, 99)), "%")
	}
}

// messageSplit is where a variant's messages spent their time, cut at the
// service's stamp: up (client, edge, backbone, gateway, bus, service) and
// down (the store, then back the same way), and what the late ones (over
// p50 + 50 ms) have in common: which part was late (over its own p50 + 40
// ms), whether they were the first on their connection (its stream behind
// the edge still opening), and how many separate moments (starts more than
// 300 ms apart) they fall in: one stall delays every message in flight at
// once.
type messageSplit struct {
	up, down                                   []float64
	late, lateUp, lateDown, lateFirst, moments int
	first                                      int
	rest                                       []float64 // the messages after each connection's first
}

// splitOf cuts m's messages; false when m has no stamps (not the sdkclient).
func splitOf(m measurement) (messageSplit, bool) {
	var s messageSplit
	n := len(m.MessageMS)
	if n == 0 || len(m.MessageUpMS) != n || len(m.MessageNth) != n || len(m.MessageAt) != n {
		return s, false
	}
	s.up = m.MessageUpMS
	s.down = make([]float64, n)
	for i := range s.down {
		s.down[i] = m.MessageMS[i] - m.MessageUpMS[i]
	}
	p50, up50, down50 := pct(m.MessageMS, 50), pct(s.up, 50), pct(s.down, 50)
	var lateAt []int64
	for i, x := range m.MessageMS {
		if m.MessageNth[i] == 0 {
			s.first++
		} else {
			s.rest = append(s.rest, x)
		}
		if x <= p50+50 {
			continue
		}
		s.late++
		lateAt = append(lateAt, m.MessageAt[i])
		if s.up[i] > up50+40 {
			s.lateUp++
		}
		if s.down[i] > down50+40 {
			s.lateDown++
		}
		if m.MessageNth[i] == 0 {
			s.lateFirst++
		}
	}
	slices.Sort(lateAt)
	for i, at := range lateAt {
		if i == 0 || at-lateAt[i-1] > 300 {
			s.moments++
		}
	}
	return s, true
}

// reportSplit prints a variant's messageSplit.
func reportSplit(name string, m measurement) {
	s, ok := splitOf(m)
	if !ok {
		return
	}
	fmt.Printf("# msg %s at the service's stamp: up p50 %.0f p90 %.0f p99 %.0f max %.0f, down p50 %.0f p90 %.0f p99 %.0f max %.0f ms; "+
		"%d late (over p50 + 50 ms): %d late up, %d late down, %d first on their connection, in %d moments; p99 without the %d first messages %.1f ms\n",
		name, pct(s.up, 50), pct(s.up, 90), pct(s.up, 99), pct(s.up, 100),
		pct(s.down, 50), pct(s.down, 90), pct(s.down, 99), pct(s.down, 100),
		s.late, s.lateUp, s.lateDown, s.lateFirst, s.moments, s.first, pct(s.rest, 99))
}

// printQUICCopies prints what the copies of small packets cost edge-1 (its
// metrics on debug, inside the edge node): copies and their bytes against
// the Link payload it sent its QUIC clients.
func printQUICCopies(w *wan.World, debug string) {
	var text []byte
	// The connection is made inside the edge node; the HTTP client's own
	// dialer would run on a goroutine outside it.
	var conn net.Conn
	err := w.Do("edge", func() (err error) {
		conn, err = net.DialTimeout("tcp", debug, 5*time.Second)
		return err
	})
	if err == nil {
		c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
		var resp *http.Response
		if resp, err = c.Get("http://" + debug + "/metrics"); err == nil {
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			} else {
				text, err = io.ReadAll(resp.Body)
			}
		}
	}
	if err != nil {
		fmt.Printf("# edge copies: metrics: %v\n", err)
		return
	}
	if math.IsNaN(metricValue(text, "longlink_edge_link_quic_duplicate_packets_total")) {
		fmt.Printf("# edge copies: not in edge-1's metrics (%d bytes)\n", len(text))
		return
	}
	fmt.Printf("# edge copies to Link over QUIC clients: %.0f packets, %.0f bytes, for %.0f bytes of Link payload sent to them\n",
		metricValue(text, "longlink_edge_link_quic_duplicate_packets_total"),
		metricValue(text, "longlink_edge_link_quic_duplicate_bytes_total"),
		metricValue(text, "longlink_edge_bytes_total", `direction="down"`, `listener="link-quic"`))
}

// metricValue finds a sample of name with all of labels in Prometheus text
// (NaN when there is none).
func metricValue(text []byte, name string, labels ...string) float64 {
	for _, line := range strings.Split(string(text), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(rest, l)
		}
		if f := strings.Fields(rest); match && len(f) > 0 {
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				return v
			}
		}
	}
	return math.NaN()
}

func slowShare(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	cut, n := pct(v, 50)+100, 0
	for _, x := range v {
		if x > cut {
			n++
		}
	}
	return 100 * float64(n) / float64(len(v))
}

// worldFloor is the propagation round trip user → edge → core of the world
// file (the links' one-way delays both ways); 0 when it has no such links.
func worldFloor(path string) time.Duration {
	cfg, err := wan.Load(path)
	if err != nil {
		return 0
	}
	rtt := func(a, b string) time.Duration {
		for _, l := range cfg.Links {
			if (l.A == a && l.B == b) || (l.A == b && l.B == a) {
				ab, ba := l.Both, l.Both
				if l.AToB != nil {
					ab = *l.AToB
				}
				if l.BToA != nil {
					ba = *l.BToA
				}
				return ab.Delay.D() + ba.Delay.D()
			}
		}
		return 0
	}
	access, backbone := rtt("user", "edge"), rtt("edge", "core")
	if access == 0 || backbone == 0 {
		return 0
	}
	return access + backbone
}

// issueNodeCerts creates a cluster CA in dir and a certificate per node for
// its name, its world address and loopback, in the layout `longlink relay
// -issue` writes (name.pem, name-key.pem).
func issueNodeCerts(dir string, nodes map[string]string) error {
	ca, err := pki.LoadOrCreateCA(dir, "longlink-cluster")
	if err != nil {
		return err
	}
	for name, addr := range nodes {
		if err := ca.IssueFiles(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"), name, addr, "127.0.0.1"); err != nil {
			return err
		}
	}
	return nil
}

func waitFor(ctx context.Context, limit time.Duration, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// variant is one way to reach the server that the sdkclient role measures:
// an address (TCP, or quic://) and the SDK's Link over QUIC copies.
type variant struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	// QUICDuplicateMax is the SDK's LinkOptions.QUICDuplicateMax.
	QUICDuplicateMax int `json:"quic_duplicate_max,omitempty"`
}

// msgRound is how long one variant sends messages before the next one
// takes over, when an sdkclient measures several: rounds alternate so that
// every variant meets the same load on this shared machine and the same
// state of the core (a run's later minutes are slower than its first).
const msgRound = 10 * time.Second

// runSDKClient measures with core/sdk against each variant: connect-and-login
// (dial, Link handshake, login) with each demo account in parallel, then 1:1
// text messages between them, each timed from Send to the server's durable
// ack. With several variants, connects alternate between them one by one and
// messages in rounds of msgRound (msgFor in all per variant). It prints the
// measurements as a JSON object by variant name.
func runSDKClient(ctx context.Context, clientFile string, variants []variant, connects int, msgFor time.Duration, lo sdk.LinkOptions) error {
	cf, err := sdk.LoadClientFile(clientFile)
	if err != nil {
		return err
	}
	configFor := func(v variant, account string) (sdk.Config, error) {
		c, err := cf.Config(account)
		if err != nil {
			return c, err
		}
		c.Addresses = []string{v.Target}
		c.ConnectTimeout = 20 * time.Second
		c.DeviceType = "phone"
		c.Link = lo
		c.Link.QUICDuplicateMax = v.QUICDuplicateMax
		return c, nil
	}
	results := make([]measurement, len(variants))
	var mu sync.Mutex
	var wg sync.WaitGroup

	// Warm up both the path and the server (first logins touch cold caches).
	for _, v := range variants {
		for _, a := range demoAccounts {
			cfg, err := configFor(v, a)
			if err != nil {
				return err
			}
			if _, err := connectOnce(ctx, cfg, ""); err != nil {
				return fmt.Errorf("warm-up login %s via %s: %w", a, v.Target, err)
			}
		}
	}

	// Connects, then connect + login + a first message until its ack with
	// fresh clients (each account to the next one); the variants take turns.
	per := (connects + len(demoAccounts) - 1) / len(demoAccounts)
	for _, firstMsg := range []bool{false, true} {
		for i, a := range demoAccounts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				to := ""
				if firstMsg {
					to = demoAccounts[(i+1)%len(demoAccounts)]
				}
				for n := range per * len(variants) {
					if ctx.Err() != nil {
						return
					}
					k := n % len(variants)
					cfg, _ := configFor(variants[k], a)
					d, err := connectOnce(ctx, cfg, to)
					mu.Lock()
					m := &results[k]
					switch {
					case err != nil && firstMsg:
						m.FirstMsgFailed++
					case err != nil:
						m.ConnectFailed++
					case firstMsg:
						m.FirstMsgMS = append(m.FirstMsgMS, ms(d))
					default:
						m.ConnectMS = append(m.ConnectMS, ms(d))
					}
					mu.Unlock()
					if err != nil {
						fmt.Fprintf(os.Stderr, "login (first message %v) %s via %s: %v\n", firstMsg, a, variants[k].Target, err)
					}
				}
			}()
		}
		wg.Wait()
	}

	// Senders: every demo account on three devices (a device of another
	// type does not kick the first), each messaging the next account.
	type sender struct{ account, device, to string }
	var senders []sender
	for i, a := range demoAccounts {
		for _, dev := range []string{"pc", "pad", "web"} {
			senders = append(senders, sender{a, dev, demoAccounts[(i+1)%len(demoAccounts)]})
		}
	}
	round := msgFor
	if len(variants) > 1 {
		round = min(msgRound, msgFor)
	}
	rounds := int((msgFor + round - 1) / round)
	for r := range rounds * len(variants) {
		// Each round the next variant, starting one further each time
		// through, so that none always follows the same one.
		k := (r + r/len(variants)) % len(variants)
		deadline := time.Now().Add(round)
		for i, s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cfg, _ := configFor(variants[k], s.account)
				cfg.DeviceType = s.device
				c, err := sdk.New(cfg)
				if err != nil {
					return
				}
				defer c.Close()
				c.Start()
				go func() {
					for range c.Events() { // pushes of the messages sent to a
					}
				}()
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err = c.WaitConnected(wctx)
				cancel()
				if err != nil {
					mu.Lock()
					results[k].MessageFailed++
					mu.Unlock()
					return
				}
				rng := rand.New(rand.NewPCG(uint64(i), uint64(11+r)))
				text := strings.Repeat("x", 200)
				for nth := 0; time.Now().Before(deadline) && ctx.Err() == nil; nth++ {
					sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					start := time.Now()
					ack, err := c.SendText(sctx, imapi.ConvP2P, s.to, text)
					d := time.Since(start)
					cancel()
					mu.Lock()
					if m := &results[k]; err != nil {
						m.MessageFailed++
					} else {
						m.MessageMS = append(m.MessageMS, ms(d))
						m.MessageAt = append(m.MessageAt, start.UnixMilli())
						m.MessageUpMS = append(m.MessageUpMS, float64(ack.Time-start.UnixMilli()))
						m.MessageNth = append(m.MessageNth, nth)
					}
					mu.Unlock()
					time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
				}
			}()
		}
		wg.Wait()
	}
	out := make(map[string]measurement, len(variants))
	for k, v := range variants {
		out[v.Name] = results[k]
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// connectOnce starts a fresh client, waits until it is logged in and, when
// to is set, until one text to it is acknowledged; it returns the time since
// the start.
func connectOnce(ctx context.Context, cfg sdk.Config, to string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	c, err := sdk.New(cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.Start()
	go func() {
		for range c.Events() {
		}
	}()
	if err := c.WaitConnected(ctx); err != nil {
		return 0, err
	}
	if to != "" {
		if _, err := c.SendText(ctx, imapi.ConvP2P, to, "first"); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}
