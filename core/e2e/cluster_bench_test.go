package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/clustertest"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/store/storetest"
)

// The cluster figures (tools/bench cluster-send, cluster-failover): real
// processes from core/clustertest, load from SDK clients in this process.

// benchRequire runs a cluster benchmark only for tools/bench.
func benchRequire(b *testing.B) {
	clustertest.Require(b)
	if !storetest.BenchResults() {
		b.Skip("run through tools/bench (LONGLINK_BENCH_RESULT=1)")
	}
}

// loadGen sends durable 1:1 messages from senders to receivers (one
// conversation per pair) at an offered rate and records, per message, when
// it was sent, acknowledged and delivered.
type loadGen struct {
	pairs []loadPair
	runs  int // runs so far: client_msg_ids differ from run to run
	mu    sync.Mutex
	msgs  map[string]*loadMsg // by client_msg_id
	// ups: when each client came (back) up, in order (StateConnected).
	ups  map[*sdk.Client][]time.Time
	stop chan struct{}
	wg   sync.WaitGroup
}

type loadPair struct {
	from, to  *sdk.Client
	toAccount string
}

type loadMsg struct {
	sent, acked, delivered time.Time
	from                   *sdk.Client
}

// newLoadGen logs in n pairs of fresh accounts (prefix) through gws.
func newLoadGen(b *testing.B, ctx context.Context, c *clustertest.Cluster, prefix string, n int, gws ...*clustertest.Core) *loadGen {
	b.Helper()
	g := &loadGen{msgs: map[string]*loadMsg{}, ups: map[*sdk.Client][]time.Time{}}
	g.add(b, ctx, c, prefix, n, gws...)
	return g
}

// add logs in n more pairs of fresh accounts (prefix) through gws.
func (g *loadGen) add(b *testing.B, ctx context.Context, c *clustertest.Cluster, prefix string, n int, gws ...*clustertest.Core) {
	b.Helper()
	var accounts []string
	for i := range n {
		accounts = append(accounts, fmt.Sprintf("%s%da", prefix, i), fmt.Sprintf("%s%db", prefix, i))
	}
	tokens, err := c.Users(ctx, accounts...)
	if err != nil {
		b.Fatal(err)
	}
	start := func(account string) *sdk.Client {
		cfg := c.SDKConfig(account, tokens[account], gws...)
		cfg.BackoffMin, cfg.BackoffMax = 50*time.Millisecond, 500*time.Millisecond
		cfg.SendQueue = 100000
		cl, err := sdk.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		cl.Start()
		b.Cleanup(func() { _ = cl.Close() })
		go g.collect(cl)
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := cl.WaitConnected(wctx); err != nil {
			b.Fatal(err)
		}
		return cl
	}
	for i := range n {
		g.pairs = append(g.pairs, loadPair{from: start(accounts[2*i]), to: start(accounts[2*i+1]), toAccount: accounts[2*i+1]})
	}
}

func (g *loadGen) collect(cl *sdk.Client) {
	for ev := range cl.Events() {
		now := time.Now()
		switch ev.Kind {
		case sdk.EventSent:
			g.mu.Lock()
			if m := g.msgs[ev.ClientMsgID]; m != nil && m.acked.IsZero() {
				m.acked = now
			}
			g.mu.Unlock()
		case sdk.EventMessage:
			g.mu.Lock()
			if m := g.msgs[ev.Message.ClientMsgID]; m != nil && m.delivered.IsZero() {
				m.delivered = now
			}
			g.mu.Unlock()
		case sdk.EventState:
			if ev.State == sdk.StateConnected {
				g.mu.Lock()
				g.ups[cl] = append(g.ups[cl], now)
				g.mu.Unlock()
			}
		}
	}
}

// run offers rate messages per second in total until stop is closed.
func (g *loadGen) run(rate int) {
	g.stop = make(chan struct{})
	g.runs++
	run := g.runs
	per := time.Duration(float64(time.Second) * float64(len(g.pairs)) / float64(rate))
	for i, p := range g.pairs {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			// Spread the senders' ticks over the period.
			next := time.Now().Add(per * time.Duration(i) / time.Duration(len(g.pairs)))
			for k := 0; ; k++ {
				select {
				case <-g.stop:
					return
				case <-time.After(time.Until(next)):
				}
				next = next.Add(per)
				id := fmt.Sprintf("%d-%d-%d", run, i, k)
				g.mu.Lock()
				g.msgs[id] = &loadMsg{sent: time.Now(), from: p.from}
				g.mu.Unlock()
				_, _ = p.from.SendAsync(&imapi.SendReq{ConvType: imapi.ConvP2P, To: p.toAccount, ClientMsgID: id, Body: json.RawMessage(`{"t":1}`)})
			}
		}()
	}
}

func (g *loadGen) halt() {
	close(g.stop)
	g.wg.Wait()
}

// window is the messages sent in [from, to).
func (g *loadGen) window(from, to time.Time) []loadMsg {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []loadMsg
	for _, m := range g.msgs {
		if !m.sent.Before(from) && m.sent.Before(to) {
			out = append(out, *m)
		}
	}
	return out
}

// wait waits (at most d) until every message sent so far is delivered.
func (g *loadGen) wait(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		g.mu.Lock()
		left := 0
		for _, m := range g.msgs {
			if m.delivered.IsZero() {
				left++
			}
		}
		g.mu.Unlock()
		if left == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(q*float64(len(ds))))]
}

// cpuTicks is the CPU time (user + system, clock ticks) of pid and, when
// children, of its children (PostgreSQL's backends).
func cpuTicks(pid int, children bool) int64 {
	read := func(pid int) (ticks int64, ppid int) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, 0
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ppid, _ = strconv.Atoi(f[1])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return u + st, ppid
	}
	total, _ := read(pid)
	if !children {
		return total
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if t, pp := read(p); pp == pid {
			total += t
		}
	}
	return total
}

// cpuGroups is the CPU ticks of the deployment's processes by role.
func cpuGroups(c *clustertest.Cluster) map[string]int64 {
	out := map[string]int64{}
	for _, s := range c.Services() {
		if s.Running() {
			out["service"] += cpuTicks(s.Pid(), false)
		}
	}
	for _, g := range c.Gateways() {
		if g.Running() {
			out["gateway"] += cpuTicks(g.Pid(), false)
		}
	}
	for _, n := range c.NATS.Nodes {
		if n.Running() {
			out["nats"] += cpuTicks(n.Pid(), false)
		}
	}
	out["postgres"] = cpuTicks(c.PG.Primary.Pid(), true)
	return out
}

const clkTck = 100 // Linux USER_HZ

// loadPoint is one offered load's outcome.
type loadPoint struct {
	offered int
	// delivered is the deliveries per second inside the measured window
	// (of any message): what the deployment sustained.
	delivered        float64
	p50, p99, ackP99 time.Duration      // of the messages sent in the window, send → delivery (ack)
	lost             int                // sent in the window, never delivered
	cpu              map[string]float64 // CPU seconds per second, by process kind
}

// sustained: 95% of the offered load delivered inside the window, nothing
// lost, and a p99 under a second (a queue that grows is not sustained).
func (p loadPoint) sustained() bool {
	return p.lost == 0 && p.delivered >= 0.95*float64(p.offered) && p.p99 <= time.Second
}

func (p loadPoint) meets(p99 time.Duration) bool { return p.sustained() && p.p99 <= p99 }

// measure offers rate for warmup+dur and returns the window's figures.
func measure(b *testing.B, c *clustertest.Cluster, g *loadGen, rate int, warmup, dur time.Duration) loadPoint {
	g.run(rate)
	time.Sleep(warmup)
	cpu0 := cpuGroups(c)
	from := time.Now()
	time.Sleep(dur)
	to := time.Now()
	cpu1 := cpuGroups(c)
	g.halt()
	g.wait(15 * time.Second)
	pt := loadPoint{offered: rate, cpu: map[string]float64{}}
	var lats, acks []time.Duration
	g.mu.Lock()
	inWin := 0
	for _, m := range g.msgs {
		if !m.delivered.IsZero() && !m.delivered.Before(from) && m.delivered.Before(to) {
			inWin++
		}
		if m.sent.Before(from) || !m.sent.Before(to) {
			continue
		}
		if m.delivered.IsZero() {
			pt.lost++
			lats = append(lats, time.Hour) // counts against the p99
			continue
		}
		lats = append(lats, m.delivered.Sub(m.sent))
		acks = append(acks, m.acked.Sub(m.sent))
	}
	g.mu.Unlock()
	secs := to.Sub(from).Seconds()
	pt.delivered = float64(inWin) / secs
	pt.p50, pt.p99, pt.ackP99 = quantile(lats, 0.5), quantile(lats, 0.99), quantile(acks, 0.99)
	for k, v := range cpu1 {
		pt.cpu[k] = float64(v-cpu0[k]) / clkTck / secs
		pt.cpu["total"] += pt.cpu[k]
	}
	if pt.lost > 0 && os.Getenv("LONGLINK_BENCH_DEBUG") != "" {
		for _, p := range c.Env.Procs() {
			b.Logf("--- %s\n%s", p.Name, p.Tail(15))
		}
	}
	b.Logf("offered %d msg/s: delivered %.0f/s, p50 %v p99 %v (ack p99 %v), lost %d, CPU cores %s",
		rate, pt.delivered, pt.p50.Round(10*time.Microsecond), pt.p99.Round(10*time.Microsecond), pt.ackP99.Round(10*time.Microsecond), pt.lost, fmtCPU(pt.cpu))
	return pt
}

var cpuKinds = []string{"total", "service", "gateway", "nats", "postgres"}

func fmtCPU(m map[string]float64) string {
	var parts []string
	for _, k := range cpuKinds {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%.2f", k, v))
		}
	}
	return strings.Join(parts, " ")
}

// sweep measures the offered loads in order until the deployment no
// longer sustains what is offered.
func sweep(b *testing.B, c *clustertest.Cluster, g *loadGen, rates []int) []loadPoint {
	var pts []loadPoint
	for _, r := range rates {
		pt := measure(b, c, g, r, 3*time.Second, 10*time.Second)
		pts = append(pts, pt)
		if !pt.sustained() {
			break
		}
	}
	return pts
}

// maxRate is the highest offered load whose p99 was at most p99.
func maxRate(pts []loadPoint, p99 time.Duration) int {
	out := 0
	for _, p := range pts {
		if p.meets(p99) {
			out = max(out, p.offered)
		}
	}
	return out
}

// busiest is the sustained point of the highest load (zero when none):
// where the fixed per-second costs (pings, heartbeats, idle sessions)
// weigh least in the CPU time per message.
func busiest(pts []loadPoint) (loadPoint, bool) {
	var out loadPoint
	for _, p := range pts {
		if p.sustained() && p.offered > out.offered {
			out = p
		}
	}
	return out, out.offered > 0
}

// sweepRates are the offered loads (LONGLINK_BENCH_RATES overrides them,
// comma-separated).
func sweepRates() []int {
	if v := os.Getenv("LONGLINK_BENCH_RATES"); v != "" {
		var out []int
		for _, f := range strings.Split(v, ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
				out = append(out, n)
			}
		}
		return out
	}
	return []int{250, 500, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000}
}

// BenchmarkClusterSend: durable 1:1 messages through a gateway process, on
// 1, 2 and 3 service processes on PostgreSQL, and on one service process
// on SQLite as the same run's baseline; the offered load is swept and the
// highest meeting p99 ≤ 20 ms (send → delivery) is the figure (and, for a
// loaded machine, the highest at p99 ≤ 200 ms and ≤ 1 s), with the CPU
// time per message of each kind of process at the highest sustained load.
// The curves are drawn to docs/bench/cluster-send.svg.
func BenchmarkClusterSend(b *testing.B) {
	benchRequire(b)
	ctx := context.Background()
	series := map[string][]loadPoint{}
	var order []string
	report := func(name string, pts []loadPoint) {
		order = append(order, name)
		series[name] = pts
		fmt.Printf("RESULT cluster_send_%s_max_rate_p99_20ms %d msg/s\n", name, maxRate(pts, 20*time.Millisecond))
		fmt.Printf("RESULT cluster_send_%s_max_rate_p99_200ms %d msg/s\n", name, maxRate(pts, 200*time.Millisecond))
		fmt.Printf("RESULT cluster_send_%s_max_rate_p99_1s %d msg/s\n", name, maxRate(pts, time.Second))
		if p, ok := busiest(pts); ok {
			for _, k := range cpuKinds {
				if v, ok := p.cpu[k]; ok {
					fmt.Printf("RESULT cluster_send_%s_cpu_%s_at_%d %.0f us/msg\n", name, k, p.offered, v/p.delivered*1e6)
				}
			}
		}
	}

	// PostgreSQL, one service process, then two, then three.
	c := clustertest.StartCluster(b, clustertest.ClusterOptions{Gateways: 1, Services: 1})
	for n := 1; n <= 3; n++ {
		if n > 1 {
			c.AddService(clustertest.CoreOptions{})
		}
		g := newLoadGen(b, ctx, c, fmt.Sprintf("p%d", n), 50, c.Gateways()...)
		report(fmt.Sprintf("pg_%dsvc", n), sweep(b, c, g, sweepRates()))
	}
	// The baseline: one service process on SQLite (fsync per commit),
	// same gateway and bus.
	for _, s := range c.Services() {
		if err := s.Kill(); err != nil {
			b.Fatal(err)
		}
	}
	c.AddService(clustertest.CoreOptions{Config: map[string]any{"store": map[string]any{"driver": "sqlite", "synchronous": "full"}}})
	g := newLoadGen(b, ctx, c, "s", 50, c.Gateways()...)
	report("sqlite_1svc", sweep(b, c, g, sweepRates()))
	if err := drawSweep(filepath.Join(repoRoot(b), "docs", "bench", "cluster-send.svg"), order, series); err != nil {
		b.Fatal(err)
	}
}

func repoRoot(b *testing.B) string {
	wd, err := os.Getwd()
	if err != nil {
		b.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

// BenchmarkClusterFailover: a steady durable 1:1 load through 2 gateway
// processes onto 3 service processes on PostgreSQL and 3 NATS servers, and
// one fault after the other — SIGKILL a service node, SIGSTOP one for 10 s,
// SIGKILL a NATS server, SIGKILL a gateway — each followed by the repair.
// Per fault: the p99 added latency (send → ack, over the steady median) of
// the sends in flight at the fault and of those sent in the 5 s after it,
// the longest time without any ack, the time until the ack rate is back
// to 95% of the steady one, and the acknowledged messages never delivered.
func BenchmarkClusterFailover(b *testing.B) {
	benchRequire(b)
	ctx := context.Background()
	rate := 500
	if v, err := strconv.Atoi(os.Getenv("LONGLINK_BENCH_FAILOVER_RATE")); err == nil && v > 0 {
		rate = v
	}
	c := clustertest.StartCluster(b, clustertest.ClusterOptions{Gateways: 2, Services: 3})
	gws := c.Gateways()
	// Half the clients prefer each gateway.
	g := newLoadGen(b, ctx, c, "f", 25, gws[0], gws[1])
	g.add(b, ctx, c, "h", 25, gws[1], gws[0])
	svcs, nats := c.Services(), c.NATS.Nodes
	type fault struct {
		name          string
		inject, after func() error
		hold          time.Duration // how long the fault lasts before after runs
	}
	faults := []fault{
		{"svc_kill", svcs[0].Kill, func() error { return restart(svcs[0]) }, 5 * time.Second},
		{"svc_stop", svcs[1].Pause, svcs[1].Resume, 10 * time.Second},
		{"nats_kill", nats[1].Kill, func() error {
			if err := nats[1].Start(); err != nil {
				return err
			}
			return nats[1].WaitHealthy(60 * time.Second)
		}, 5 * time.Second},
		{"gw_kill", gws[0].Kill, func() error { return restart(gws[0]) }, 5 * time.Second},
	}
	// LONGLINK_BENCH_FAILOVER_FAULTS picks faults by name (comma list).
	if only := os.Getenv("LONGLINK_BENCH_FAILOVER_FAULTS"); only != "" {
		names := strings.Split(only, ",")
		faults = slices.DeleteFunc(faults, func(f fault) bool { return !slices.Contains(names, f.name) })
	}
	type window struct {
		name                string
		steadyFrom, at, end time.Time
		repairTook          time.Duration
	}
	var windows []window
	g.run(rate)
	time.Sleep(5 * time.Second) // warm up
	for _, f := range faults {
		steadyFrom := time.Now()
		time.Sleep(5 * time.Second)
		at := time.Now()
		if err := f.inject(); err != nil {
			b.Fatalf("%s: %v", f.name, err)
		}
		time.Sleep(f.hold)
		repairAt := time.Now()
		if err := f.after(); err != nil {
			b.Fatalf("%s repair: %v", f.name, err)
		}
		repairTook := time.Since(repairAt)
		time.Sleep(15*time.Second - f.hold - repairTook)
		windows = append(windows, window{f.name, steadyFrom, at, time.Now(), repairTook})
	}
	g.halt()
	g.wait(30 * time.Second) // every acked message delivered, or lost
	for _, w := range windows {
		r := failoverFigures(g, w.steadyFrom, w.at, w.end)
		f := w
		b.Logf("%s: in flight %d, added p99 %v; after %v; longest ack gap %v; back to 95%% in %v; lost %d",
			f.name, r.inflight, r.inflightP99, r.afterP99, r.gap, r.recovery, r.lost)
		fmt.Printf("RESULT cluster_failover_%s_inflight_added_p99 %.0f ms\n", f.name, ms(r.inflightP99))
		fmt.Printf("RESULT cluster_failover_%s_next5s_added_p99 %.0f ms\n", f.name, ms(r.afterP99))
		fmt.Printf("RESULT cluster_failover_%s_longest_ack_gap %.0f ms\n", f.name, ms(r.gap))
		fmt.Printf("RESULT cluster_failover_%s_recovery_95pct %.2f s\n", f.name, r.recovery.Seconds())
		fmt.Printf("RESULT cluster_failover_%s_acked_lost %d messages\n", f.name, r.lost)
		b.Logf("%s: the repair took %v (from %v after the fault)", f.name, f.repairTook.Round(time.Millisecond), 5*time.Second)
		b.Logf("%s: %s", f.name, g.moved(f.steadyFrom, f.at, f.end))
	}
}

// moved tells the sends around a fault at at apart by their senders:
// those that reconnected after it (a killed gateway's clients) and the
// others. For the moved ones: how long after the fault they were back,
// and how long after that their sends in flight (sent before they were
// back) were acknowledged. The slowest sends are listed with their times.
func (g *loadGen) moved(steadyFrom, at, end time.Time) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var base []time.Duration
	for _, m := range g.msgs {
		if !m.sent.Before(steadyFrom) && m.acked.Before(at) && !m.acked.IsZero() {
			base = append(base, m.acked.Sub(m.sent))
		}
	}
	median := quantile(base, 0.5)
	upAfter := func(cl *sdk.Client) time.Time {
		for _, t := range g.ups[cl] {
			if t.After(at) && t.Before(end) {
				return t
			}
		}
		return time.Time{}
	}
	type slow struct {
		lat, sentAt, upAt, ackAt time.Duration
		moved                    bool
	}
	var back, afterBack, movedLat, stayLat []time.Duration
	var slows []slow
	seen := map[*sdk.Client]bool{}
	for _, m := range g.msgs {
		if m.sent.Before(steadyFrom) || !m.sent.Before(at.Add(5*time.Second)) || m.acked.IsZero() || m.acked.Before(at) {
			continue
		}
		up := upAfter(m.from)
		lat := m.acked.Sub(m.sent) - median
		s := slow{lat: lat, sentAt: m.sent.Sub(at), ackAt: m.acked.Sub(at), moved: !up.IsZero()}
		if up.IsZero() {
			stayLat = append(stayLat, lat)
		} else {
			s.upAt = up.Sub(at)
			movedLat = append(movedLat, lat)
			if !seen[m.from] {
				seen[m.from] = true
				back = append(back, up.Sub(at))
			}
			if m.sent.Before(up) {
				afterBack = append(afterBack, m.acked.Sub(up))
			}
		}
		slows = append(slows, s)
	}
	slices.SortFunc(slows, func(a, b slow) int { return int(b.lat - a.lat) })
	var out strings.Builder
	fmt.Fprintf(&out, "moved senders %d, back after p50 %v p99 %v; their sends (in flight or next 5 s) %d, added p99 %v; sent before they were back: acked p50 %v p99 %v after it; other senders' sends %d, added p99 %v; slowest (ms after the fault: sent, back, acked):",
		len(back), quantile(back, 0.5).Round(time.Millisecond), quantile(back, 0.99).Round(time.Millisecond),
		len(movedLat), quantile(movedLat, 0.99).Round(time.Millisecond),
		quantile(afterBack, 0.5).Round(time.Millisecond), quantile(afterBack, 0.99).Round(time.Millisecond),
		len(stayLat), quantile(stayLat, 0.99).Round(time.Millisecond))
	for _, s := range slows[:min(len(slows), 12)] {
		fmt.Fprintf(&out, " [%v moved=%v %.0f/%.0f/%.0f]", s.lat.Round(time.Millisecond), s.moved, ms(s.sentAt), ms(s.upAt), ms(s.ackAt))
	}
	return out.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func restart(c *clustertest.Core) error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.WaitReady(60 * time.Second)
}

type failover struct {
	inflight              int
	inflightP99, afterP99 time.Duration
	gap, recovery         time.Duration
	lost                  int
}

// failoverFigures reads the ledger around a fault at at: steady from
// steadyFrom to at, the fault's effects from at to end.
func failoverFigures(g *loadGen, steadyFrom, at, end time.Time) failover {
	g.mu.Lock()
	defer g.mu.Unlock()
	var steady, inflight, after []time.Duration
	var ackTimes []time.Time
	r := failover{recovery: -1} // -1: not back within the window
	for _, m := range g.msgs {
		if m.sent.Before(steadyFrom) || !m.sent.Before(end) {
			continue
		}
		if m.acked.IsZero() {
			continue // still out at the end: counted below if never delivered
		}
		lat := m.acked.Sub(m.sent)
		switch {
		case m.sent.Before(at) && m.acked.Before(at):
			steady = append(steady, lat)
		case m.sent.Before(at):
			inflight = append(inflight, lat)
		case m.sent.Before(at.Add(5 * time.Second)):
			after = append(after, lat)
		}
		if !m.acked.Before(at) && m.acked.Before(end) {
			ackTimes = append(ackTimes, m.acked)
		}
		if m.delivered.IsZero() {
			r.lost++
		}
	}
	base := quantile(steady, 0.5)
	added := func(ds []time.Duration) time.Duration { return max(quantile(ds, 0.99)-base, 0) }
	r.inflight, r.inflightP99, r.afterP99 = len(inflight), added(inflight), added(after)
	steadyRate := float64(len(steady)) / at.Sub(steadyFrom).Seconds()
	slices.SortFunc(ackTimes, func(a, b time.Time) int { return a.Compare(b) })
	prev := at
	for _, t := range ackTimes {
		r.gap = max(r.gap, t.Sub(prev))
		prev = t
	}
	// Back to 95%: the first second-long window after the fault holding
	// 95% of a steady second's acks, from the fault to its start.
	for i := range ackTimes {
		j, _ := slices.BinarySearchFunc(ackTimes, ackTimes[i].Add(time.Second), func(a, t time.Time) int { return a.Compare(t) })
		if float64(j-i) >= 0.95*steadyRate {
			r.recovery = ackTimes[i].Sub(at)
			break
		}
	}
	return r
}
