// Command accel measures what an edge in front of a far-away core gains for a
// user, inside the WAN emulator's standard world (tools/wanemu/worlds):
//
//	direct       user -> core          180 ms RTT, 2% loss
//	accelerated  user -> edge -> core  10 ms RTT, 1% loss + 170 ms RTT, 0.1% loss
//
// For each path it measures connect-and-login time (p50/p99), message round
// trip (p50/p99) and bulk download throughput, and prints them as RESULT lines
// with the direct path as the baseline of the same run. It needs root (network
// namespaces); tools/bench runs it as accel-standin-quic, accel-standin-kcp
// and wanemu-ceiling.
//
// With -impl standin (the default) the core, edge and tunnels are this
// program's own stand-ins (standin.go): TLS 1.3 + a login request at the core,
// split TCP at the edge, QUIC or KCP+smux tunnels. Figures are named
// standin_*. The same binary runs each role inside a namespace (-role).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/pkg/pki"
	"github.com/longlink/longlink/tools/wanemu/wan"
)

type flags struct {
	role   string
	listen string
	tunnel string
	egress string
	target string
	pkiDir string
	impl   string
	local  bool
	// coreProbe: a client on the core's loopback sends messages while the
	// access variants are measured (probe.go).
	coreProbe bool
	// probeDevice: the probeclient role's device type.
	probeDevice string
	// disjoint: a third edge, edge-disjoint, sends the small records of
	// its streams through relay_b too (-impl longlink, world
	// standard-disjoint.yaml).
	disjoint bool
	// passthrough: the edge relays the client's Link bytes (no Link keys).
	passthrough bool
	// redundancy: the edge's routing.redundancy.link_frames; 0 keeps the default.
	redundancy int
	// lanes: the edge's routing.lanes; 0 keeps the default.
	lanes      int
	link       sdk.LinkOptions // the sdk clients' Link options
	clientFile string
	world      string
	mode       string
	timeout    time.Duration
	plan       clientPlan
	// rounds: alternating rounds of the variants (-mode fec).
	rounds int
	// fecData, fecParity: the FEC variant's shards (-mode fec).
	fecData, fecParity int
	// maxFrame: the disjoint edge's routing.disjoint.max_frame (-mode disjoint).
	maxFrame int
	// measured, when set, receives the figures of both paths (tests).
	measured func(direct, accel measurement)
	// measuredQUIC, when set, receives the figures through the edge over
	// Link over QUIC (-impl longlink; tests).
	measuredQUIC func(quic, plain measurement)
	// variants: the sdkclient role's variants (JSON), or -target alone.
	variants string
	// measuredRUM, when set, gets the rum mode's phases (tests).
	measuredRUM func(before, after rumMeasurement)
	lbsURL      string
	report      bool
	// measuredFEC, when set, receives both variants of -mode fec (tests).
	measuredFEC func(fec, plain fecVariant)
}

func main() {
	var f flags
	flag.StringVar(&f.role, "role", "", "internal: run one role inside a namespace (server, edge, egress, client)")
	flag.StringVar(&f.listen, "listen", "", "role: listen address")
	flag.StringVar(&f.tunnel, "tunnel", "quic", "tunnel between edge and core: quic or kcp")
	flag.StringVar(&f.egress, "egress", "", "edge role: egress address")
	flag.StringVar(&f.target, "target", "", "client and egress roles: address to connect to")
	flag.StringVar(&f.pkiDir, "pki", "", "role: directory with the run's CA and keys")
	flag.StringVar(&f.world, "world", "", "world file (nodes user, edge, core); default tools/wanemu/worlds/standard.yaml, lossy-backbone.yaml with -mode fec")
	flag.StringVar(&f.mode, "mode", "accel", "accel, fec (KCP with and without FEC on a lossy backbone), disjoint (one lossy relay: one path vs two lanes vs a disjoint pair), rum (steering by users' measurements: connect times before and after the LBS learns), or ceiling (the emulator's own throughput)")
	flag.IntVar(&f.rounds, "rounds", 2, "fec, disjoint: alternating rounds of the variants")
	flag.IntVar(&f.maxFrame, "max-frame", 1024, "disjoint: the disjoint edge's routing.disjoint.max_frame")
	flag.IntVar(&f.fecData, "fec-data", 10, "fec: data shards of the FEC variant")
	flag.IntVar(&f.fecParity, "fec-parity", 3, "fec: parity shards of the FEC variant")
	flag.StringVar(&f.impl, "impl", "standin", "accel mode: standin (this program's own edge and core) or longlink (cmd/longlink and core/sdk)")
	flag.BoolVar(&f.link.DisableNudge, "no-nudge", false, "longlink: clients do not nudge unacknowledged requests (core/sdk LinkOptions)")
	flag.DurationVar(&f.link.DialRace, "dial-race", 0, "longlink: clients' TCP dial race stagger (0: the SDK default, negative: off)")
	flag.IntVar(&f.redundancy, "redundancy", 0, "longlink: the edge's routing.redundancy.link_frames (0: the default)")
	flag.IntVar(&f.lanes, "lanes", 0, "longlink: the edge's routing.lanes (0: the default)")
	flag.BoolVar(&f.passthrough, "passthrough", false, "longlink: the edge passes Link bytes through instead of terminating Link itself")
	flag.BoolVar(&f.coreProbe, "core-probe", false, "longlink: while the clients measure the path through the edge, a client on the core's loopback and one in the edge node send messages too, to tell the core's late moments from the path's")
	flag.StringVar(&f.probeDevice, "probe-device", "probe", "probeclient role: the client's device type")
	flag.BoolVar(&f.disjoint, "disjoint", false, "longlink: also measure through edge-disjoint, whose streams' small records go through relay_b too (routing.disjoint; world standard-disjoint.yaml)")
	flag.BoolVar(&f.local, "local", true, "longlink: also measure a client on the core's own loopback (the core's share of the figures)")
	flag.StringVar(&f.variants, "variants", "", "sdkclient role: JSON list of {name, target, quic_duplicate_max} measured in turns (default: -target alone)")
	flag.StringVar(&f.clientFile, "clientfile", "", "sdkclient role: the client.json longlink dev wrote")
	flag.StringVar(&f.lbsURL, "lbs", "", "rumclient role: the LBS's client URL")
	flag.BoolVar(&f.report, "report", false, "rumclient role: report what each connect measured to the LBS")
	flag.DurationVar(&f.timeout, "timeout", 9*time.Minute, "stop everything after this long")
	flag.IntVar(&f.plan.connects, "connects", 200, "connect-and-login samples per path")
	flag.IntVar(&f.plan.concurrency, "concurrency", 10, "parallel connect-and-login attempts")
	flag.IntVar(&f.plan.msgConns, "msg-conns", 10, "connections sending messages")
	flag.DurationVar(&f.plan.msgFor, "msg-for", 20*time.Second, "how long to send messages per path")
	flag.DurationVar(&f.plan.bulkFor, "bulk-for", 10*time.Second, "how long to download per path")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	if err := run(ctx, log, f); err != nil {
		fmt.Fprintln(os.Stderr, "accel:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, f flags) error {
	switch f.role {
	case "server":
		return runServer(ctx, log, f.listen, f.pkiDir)
	case "edge":
		return runEdge(ctx, log, f.listen, f.tunnel, f.egress, f.pkiDir)
	case "egress":
		return runEgress(ctx, log, f.listen, f.tunnel, f.target, f.pkiDir)
	case "client":
		f.plan.target, f.plan.pkiDir = f.target, f.pkiDir
		return runClient(ctx, f.plan)
	case "rumclient":
		return runRUMClient(ctx, f.clientFile, f.lbsURL, f.plan.connects, f.report)
	case "sdkclient":
		vs := []variant{{Name: f.target, Target: f.target}}
		if f.variants != "" {
			if err := json.Unmarshal([]byte(f.variants), &vs); err != nil {
				return fmt.Errorf("-variants: %w", err)
			}
		}
		return runSDKClient(ctx, f.clientFile, vs, f.plan.connects, f.plan.msgFor, f.link)
	case "probeclient":
		return runProbe(ctx, f.clientFile, f.target, f.probeDevice)
	case "":
	default:
		return fmt.Errorf("unknown role %q", f.role)
	}
	if err := wan.Unsupported(); err != nil {
		return err
	}
	switch f.mode {
	case "accel":
		switch {
		case f.world != "":
		case f.disjoint:
			f.world = standardDisjointWorld
		default:
			f.world = standardWorld
		}
		return orchestrate(ctx, log, f)
	case "fec":
		if f.world == "" {
			f.world = fecWorld
		}
		return fecBench(ctx, log, f)
	case "disjoint":
		if f.world == "" {
			f.world = disjointWorld
		}
		return disjointBench(ctx, log, f)
	case "ceiling":
		return ceiling(ctx, log)
	case "rum":
		if f.world == "" {
			f.world = rumWorld
		}
		return rumBench(ctx, log, f)
	}
	return fmt.Errorf("unknown mode %q", f.mode)
}

var (
	standardWorld         = filepath.Join("tools", "wanemu", "worlds", "standard.yaml")
	standardDisjointWorld = filepath.Join("tools", "wanemu", "worlds", "standard-disjoint.yaml")
)

// ready tells the orchestrator that a role is listening.
func ready() { fmt.Println("READY") }

// orchestrate builds the world, starts the stand-in roles in their
// namespaces, runs the client on both paths and prints the figures.
func orchestrate(ctx context.Context, log *slog.Logger, f flags) error {
	if f.tunnel != "quic" && f.tunnel != "kcp" {
		return fmt.Errorf("-tunnel %q: want quic or kcp", f.tunnel)
	}
	if f.impl != "standin" && f.impl != "longlink" {
		return fmt.Errorf("-impl %q: want standin or longlink", f.impl)
	}
	w, dir, stop, err := startWorld(ctx, log, f.world, "user", "edge", "core")
	if err != nil {
		return err
	}
	defer stop()

	ca, err := pki.NewCA("accel-standin")
	if err != nil {
		return err
	}
	if err := ca.Save(dir); err != nil {
		return err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	if err := os.WriteFile(filepath.Join(dir, "kcp.key"), secret, 0o600); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if f.impl == "longlink" {
		return orchestrateLonglink(ctx, log, f, w, dir, exe)
	}

	core, edge := w.Addr("core").String(), w.Addr("edge").String()
	egressPort := map[string]string{"quic": "7745", "kcp": "7746"}[f.tunnel]
	roles := []struct {
		node string
		args []string
	}{
		{"core", []string{"-role", "server", "-listen", ":7710", "-pki", dir}},
		{"core", []string{"-role", "egress", "-tunnel", f.tunnel, "-listen", core + ":" + egressPort, "-target", "127.0.0.1:7710", "-pki", dir}},
		{"edge", []string{"-role", "edge", "-tunnel", f.tunnel, "-listen", edge + ":7720", "-egress", core + ":" + egressPort, "-pki", dir}},
	}
	for _, r := range roles {
		if err := startRole(ctx, w, r.node, exe, r.args); err != nil {
			return fmt.Errorf("%s %s: %w", r.node, r.args[1], err)
		}
	}
	fmt.Printf("# world %s: direct user->core, accelerated user->edge->core over %s (stand-in)\n", f.world, f.tunnel)

	clientArgs := []string{"-role", "client", "-pki", dir,
		"-connects", fmt.Sprint(f.plan.connects), "-concurrency", fmt.Sprint(f.plan.concurrency),
		"-msg-conns", fmt.Sprint(f.plan.msgConns), "-msg-for", f.plan.msgFor.String(), "-bulk-for", f.plan.bulkFor.String()}
	measure := func(target string) (measurement, error) {
		var m measurement
		cmd, err := w.Command(ctx, "user", exe, append(clientArgs, "-target", target)...)
		if err != nil {
			return m, err
		}
		out, err := runOutput(w, cmd)
		if err != nil {
			return m, fmt.Errorf("client for %s: %w", target, err)
		}
		if err := json.Unmarshal(out, &m); err != nil {
			return m, fmt.Errorf("client for %s: %w", target, err)
		}
		return m, nil
	}
	direct, err := measure(core + ":7710")
	if err != nil {
		return err
	}
	accel, err := measure(edge + ":7720")
	if err != nil {
		return err
	}
	report("standin", f.tunnel, direct, accel)
	if f.measured != nil {
		f.measured(direct, accel)
	}
	printLinkStats(w)
	return nil
}

// startWorld loads and starts the world in path, which must have the named
// nodes, and makes a directory for the run's files. stop shuts the world
// down, then removes the directory (which outlives the world's processes).
func startWorld(ctx context.Context, log *slog.Logger, path string, nodes ...string) (w *wan.World, dir string, stop func(), err error) {
	cfg, err := wan.Load(path)
	if err != nil {
		return nil, "", nil, err
	}
	if w, err = wan.New(cfg, wan.Deps{Logger: log}); err != nil {
		return nil, "", nil, err
	}
	for _, n := range nodes {
		if !w.Addr(n).IsValid() {
			return nil, "", nil, fmt.Errorf("world %s has no node %q", path, n)
		}
	}
	if dir, err = os.MkdirTemp("", "accel-"); err != nil {
		return nil, "", nil, err
	}
	if err := w.Start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	return w, dir, func() {
		if err := w.Shutdown(context.WithoutCancel(ctx)); err != nil {
			log.Error("tearing down the world", "err", err)
		}
		os.RemoveAll(dir)
	}, nil
}

// printLinkStats shows what the emulator did on each link direction, so a
// reader can check that the impairments were really applied.
func printLinkStats(w *wan.World) {
	nodes := w.Nodes()
	for _, a := range nodes {
		for _, b := range nodes {
			st, ok := w.Stats(a, b)
			if !ok || st.Delivered+st.Lost == 0 {
				continue
			}
			fmt.Printf("# link %s>%s: %d packets delivered (%.1f MB), %d lost (%.2f%%), %d tail-dropped\n",
				a, b, st.Delivered, float64(st.DeliveredBytes)/1e6, st.Lost,
				100*float64(st.Lost)/float64(st.Delivered+st.Lost+st.QueueFull), st.QueueFull)
		}
	}
}

// startRole runs this binary with args inside node's namespace and waits until
// it prints READY.
func startRole(ctx context.Context, w *wan.World, node, exe string, args []string) error {
	cmd, err := w.Command(ctx, node, exe, args...)
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := w.Spawn(cmd); err != nil {
		return err
	}
	readyc := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "READY" {
				readyc <- nil
				io.Copy(io.Discard, out)
				return
			}
		}
		readyc <- errors.New("exited before it was ready")
	}()
	go cmd.Wait()
	select {
	case err := <-readyc:
		return err
	case <-time.After(30 * time.Second):
		return errors.New("not ready after 30s")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runOutput runs a world command to its end and returns its standard output;
// its standard error passes through.
func runOutput(w *wan.World, cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := w.Spawn(cmd); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	return out.Bytes(), err
}

// report prints the RESULT lines of one run: the direct path is the baseline.
func report(prefix, tunnel string, direct, accel measurement) {
	res := func(name string, v float64, unit string) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		fmt.Printf("RESULT %s_%s %.2f %s\n", prefix, name, v, unit)
	}
	fmt.Printf("# samples: connect direct %d (failed %d), %s %d (failed %d); messages direct %d (failed %d), %s %d (failed %d)\n",
		len(direct.ConnectMS), direct.ConnectFailed, tunnel, len(accel.ConnectMS), accel.ConnectFailed,
		len(direct.MessageMS), direct.MessageFailed, tunnel, len(accel.MessageMS), accel.MessageFailed)
	// latencies prints p50 and p99 of both paths for one figure.
	latencies := func(figure string, d, a []float64) (d50, d99, a50, a99 float64) {
		d50, d99, a50, a99 = pct(d, 50), pct(d, 99), pct(a, 50), pct(a, 99)
		res(figure+"_direct_p50", d50, "ms")
		res(figure+"_direct_p99", d99, "ms")
		res(figure+"_"+tunnel+"_p50", a50, "ms")
		res(figure+"_"+tunnel+"_p99", a99, "ms")
		return
	}
	cd50, cd99, ca50, ca99 := latencies("connect_login", direct.ConnectMS, accel.ConnectMS)
	res("connect_login_speedup_"+tunnel+"_p50", cd50/ca50, "x")
	res("connect_login_speedup_"+tunnel+"_p99", cd99/ca99, "x")
	// Connect, login and the first message acknowledged by the core: the
	// user-visible figure, which includes the core round trip that an
	// edge-answered login saves nothing on.
	if len(direct.FirstMsgMS)+len(accel.FirstMsgMS) > 0 {
		fmt.Printf("# samples: first message direct %d (failed %d), %s %d (failed %d)\n",
			len(direct.FirstMsgMS), direct.FirstMsgFailed, tunnel, len(accel.FirstMsgMS), accel.FirstMsgFailed)
	}
	fd50, fd99, fa50, fa99 := latencies("connect_first_msg", direct.FirstMsgMS, accel.FirstMsgMS)
	res("connect_first_msg_speedup_"+tunnel+"_p50", fd50/fa50, "x")
	res("connect_first_msg_speedup_"+tunnel+"_p99", fd99/fa99, "x")
	_, md99, _, ma99 := latencies("msg_rtt", direct.MessageMS, accel.MessageMS)
	res("msg_rtt_p99_reduction_"+tunnel, 100*(1-ma99/md99), "%")
	// The tail's shape: loss recovery shows as the share of samples slower
	// than the median plus 100 ms (a retransmission timeout or more).
	for _, d := range []struct {
		name string
		v    []float64
	}{{"connect direct", direct.ConnectMS}, {"connect " + tunnel, accel.ConnectMS},
		{"msg direct", direct.MessageMS}, {"msg " + tunnel, accel.MessageMS}} {
		if len(d.v) == 0 {
			continue
		}
		slow := 0
		for _, x := range d.v {
			if x > pct(d.v, 50)+100 {
				slow++
			}
		}
		fmt.Printf("# %s: p90 %.0f p95 %.0f p98 %.0f p99.5 %.0f ms; %.2f%% over p50+100ms (%d samples)\n", d.name,
			pct(d.v, 90), pct(d.v, 95), pct(d.v, 98), pct(d.v, 99.5), 100*float64(slow)/float64(len(d.v)), len(d.v))
	}
	mbit := func(m measurement) float64 {
		if m.BulkSeconds == 0 {
			return math.NaN()
		}
		return float64(m.BulkBytes*8) / m.BulkSeconds / 1e6
	}
	res("bulk_direct", mbit(direct), "Mbit/s")
	res("bulk_"+tunnel, mbit(accel), "Mbit/s")
}

// pct returns the p-th percentile (nearest rank) of samples, NaN if none.
func pct(samples []float64, p float64) float64 {
	if len(samples) == 0 {
		return math.NaN()
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(rank, len(s)-1))]
}
