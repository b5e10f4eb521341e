package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/core/clustertest"
	"github.com/longlink/longlink/core/link"
)

// The two-site figures (tools/bench site-failover, site-sync-cost): the
// deployment of clustertest.StartSites, load from SDK clients in this
// process and from `loadgen sdk-clients` worker processes.

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// siteUsers creates accounts through c's server API front, 16 at a time.
func siteUsers(b *testing.B, ctx context.Context, c *clustertest.Cluster, accounts []string) map[string]string {
	b.Helper()
	out := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed atomic.Value
	chunk := (len(accounts) + 15) / 16
	for i := 0; i < len(accounts); i += chunk {
		part := accounts[i:min(i+chunk, len(accounts))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := c.Users(ctx, part...)
			if err != nil {
				failed.Store(err)
				return
			}
			mu.Lock()
			for k, v := range tok {
				out[k] = v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return out
}

// fleet is SDK clients run by `loadgen sdk-clients` worker processes
// (pinned with taskset to other CPUs than the servers), so that thousands
// of clients do not share the benchmark's process: for each client, when it
// lost its session and when it was logged in again.
type fleet struct {
	cmds []*exec.Cmd
	ins  []io.WriteCloser
	up   chan string // each worker's "up" line

	mu     sync.Mutex
	since  time.Time      // downAt, back and why count from here
	down   []bool         // not logged in now
	downAt []time.Time    // lost its session (first time since since)
	back   []time.Time    // logged in again after having been down
	why    map[string]int // reasons of the state changes to down since since
	downs  []fleetDown    // the state changes to down since since, in order
}

// fleetDown is one client's change to down: when and why.
type fleetDown struct {
	at  time.Time
	why string
}

type fleetClient struct {
	account, token, device string
	addrs                  []string
}

// buildLoadgen builds tools/loadgen into a temporary directory.
func buildLoadgen(b *testing.B) string {
	b.Helper()
	out := filepath.Join(b.TempDir(), "loadgen")
	if msg, err := exec.Command("go", "build", "-o", out, "github.com/longlink/longlink/tools/loadgen").CombinedOutput(); err != nil {
		b.Fatalf("build loadgen: %v\n%s", err, msg)
	}
	return out
}

// startFleet starts workers processes (taskset -c cpus when set) that
// share the clients, and waits until every client logged in once.
func startFleet(b *testing.B, bin, cpus string, workers int, c *clustertest.Cluster, clients []fleetClient) *fleet {
	b.Helper()
	f := &fleet{up: make(chan string, workers), down: make([]bool, len(clients)), downAt: make([]time.Time, len(clients)),
		back: make([]time.Time, len(clients)), why: map[string]int{}}
	b.Cleanup(f.stop)
	per := (len(clients) + workers - 1) / workers
	for w := 0; w*per < len(clients); w++ {
		part := clients[w*per : min((w+1)*per, len(clients))]
		argv := []string{bin, "sdk-clients", "-key-id", c.Key.ID, "-public-key", link.EncodeKey(c.Key.Public), "-app-key", c.Apps[0].AppKey}
		if cpus != "" {
			argv = append([]string{"taskset", "-c", cpus}, argv...)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		in, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		f.cmds, f.ins = append(f.cmds, cmd), append(f.ins, in)
		go f.read(out, w*per)
		bw := bufio.NewWriter(in)
		for _, cl := range part {
			fmt.Fprintf(bw, "c %s %s %s %s\n", cl.account, cl.token, cl.device, strings.Join(cl.addrs, ","))
		}
		fmt.Fprintln(bw, "start")
		if err := bw.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	failed := 0
	for range f.cmds {
		select {
		case line := <-f.up:
			var ok, bad int
			fmt.Sscanf(line, "up %d %d", &ok, &bad)
			failed += bad
		case <-time.After(3 * time.Minute):
			b.Fatal("the client workers did not report their first logins within 3 minutes")
		}
	}
	if failed > 0 {
		b.Fatalf("%d of %d clients did not log in", failed, len(clients))
	}
	return f
}

// read takes a worker's report lines (its clients are from offset on).
func (f *fleet) read(r io.Reader, offset int) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 3 && fields[0] == "up":
			f.up <- sc.Text()
		case len(fields) >= 4 && fields[0] == "s":
			i, _ := strconv.Atoi(fields[1])
			ns, _ := strconv.ParseInt(fields[3], 10, 64)
			at := time.Unix(0, ns)
			i += offset
			f.mu.Lock()
			if fields[2] == "1" {
				if f.down[i] {
					f.back[i], f.down[i] = at, false
				}
			} else {
				f.down[i] = true
				if !f.since.IsZero() && at.After(f.since) {
					if f.downAt[i].IsZero() {
						f.downAt[i] = at
					}
					if len(fields) > 4 {
						f.why[fields[4]]++
						f.downs = append(f.downs, fleetDown{at, fields[4]})
					}
				}
			}
			f.mu.Unlock()
		}
	}
}

// mark starts counting losses and reasons from t.
func (f *fleet) mark(t time.Time) {
	f.mu.Lock()
	f.since = t
	f.mu.Unlock()
}

// backAfter is how long after t each of the clients idx was logged in again
// (those that are not back are left out).
func (f *fleet) backAfter(t time.Time, idx []int) []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for _, i := range idx {
		if !f.down[i] && f.back[i].After(t) {
			out = append(out, f.back[i].Sub(t))
		}
	}
	return out
}

// lost are the clients that lost their session since mark.
func (f *fleet) lost() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for i, t := range f.downAt {
		if !t.IsZero() {
			out = append(out, i)
		}
	}
	return out
}

// downsBetween counts the changes to down in [from, to) by reason.
func (f *fleet) downsBetween(from, to time.Time) map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, d := range f.downs {
		if !d.at.Before(from) && d.at.Before(to) {
			out[d.why]++
		}
	}
	return out
}

func (f *fleet) reasons() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.why)
}

// stop closes the workers' stdin (they close their clients and exit) and
// kills those still running after 20 s.
func (f *fleet) stop() {
	for _, in := range f.ins {
		_ = in.Close()
	}
	done := make(chan struct{})
	go func() {
		for _, c := range f.cmds {
			_ = c.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		for _, c := range f.cmds {
			_ = c.Process.Kill()
		}
		<-done
	}
}

// loginSample is site b's gateway's login counters at a moment, and its
// connections: accepted, dropped before their handshake (waited too long,
// client gone); and b's service nodes' login rate estimate (summed) and
// refusals by the login admission.
type loginSample struct {
	at                 time.Duration // since the kill
	results            map[string]float64
	sessions           float64
	accepted, hsDrops  float64
	svcRate, svcRefuse float64
}

// sampleLogins reads gw's login counters (and svcs' login admission) every
// 250 ms until stop.
func sampleLogins(gw *clustertest.Core, svcs []*clustertest.Core, t0 time.Time, stop <-chan struct{}) <-chan []loginSample {
	out := make(chan []loginSample, 1)
	go func() {
		var samples []loginSample
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			text, err := gw.Metrics(ctx)
			cancel()
			if err == nil {
				s := loginSample{at: time.Since(t0), results: map[string]float64{}, sessions: clustertest.SumMetric(text, "longlink_gateway_sessions")}
				for _, r := range []string{"ok", "service unavailable", "timeout", "internal error"} {
					s.results[r] = clustertest.SumMetric(text, "longlink_gateway_logins_total", `result="`+r+`"`)
				}
				s.accepted = clustertest.SumMetric(text, "longlink_gateway_accepted_total")
				s.hsDrops = clustertest.SumMetric(text, "longlink_gateway_handshake_drops_total")
				for _, c := range svcs {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					text, err := c.Metrics(ctx)
					cancel()
					if err == nil {
						s.svcRate += clustertest.SumMetric(text, "longlink_service_login_rate")
						s.svcRefuse += clustertest.SumMetric(text, "longlink_service_login_refusals_total")
					}
				}
				samples = append(samples, s)
			}
			select {
			case <-stop:
				out <- samples
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// pgEvents are the standby's log lines of its promotion, with their time
// after t0 (log_line_prefix '%m': the server's clock).
func pgEvents(log string, t0 time.Time) []string {
	marks := []string{"received promote request", "redo done at", "selected new timeline", "archive recovery complete",
		"database system is ready to accept connections", "checkpoint starting", "checkpoint complete", "terminating walreceiver",
		"could not receive data from WAL stream", "could not connect to the primary"}
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if len(line) < 27 {
			continue
		}
		at, err := time.Parse("2006-01-02 15:04:05.000 MST", line[:27])
		if err != nil || at.Before(t0) {
			continue
		}
		for _, m := range marks {
			if strings.Contains(line, m) {
				msg := line[27:]
				if i := strings.Index(msg, "LOG:"); i >= 0 {
					msg = strings.TrimSpace(msg[i+4:])
				}
				out = append(out, fmt.Sprintf("%8.3fs  %s", at.Sub(t0).Seconds(), msg))
				break
			}
		}
	}
	return out
}

// BenchmarkSiteFailover: LONGLINK_BENCH_SITE_CLIENTS (default 5000) idle
// SDK clients logged in, half at home in site a, half in b, in
// LONGLINK_BENCH_SITE_WORKERS (4) loadgen processes on
// LONGLINK_BENCH_CLIENT_CPUS (1), the sites' processes on
// LONGLINK_BENCH_SERVER_CPUS (0); and a durable 1:1 load from this process
// (20 pairs at home in a, 100 msg/s). Every process of site a is SIGKILLed
// at once and b's standby promoted at once (the failover tool's detection
// time is not in the figures). Figures: the time from the kill to the
// promotion, to the first send acknowledged (served by site b), to 99% and
// to all of site a's clients (those that lost their session) logged in
// again at b, acked messages lost;
// and the timeline between them (the standby's log, b's gateway's logins).
func BenchmarkSiteFailover(b *testing.B) {
	benchRequire(b)
	n := envInt("LONGLINK_BENCH_SITE_CLIENTS", 5000)
	workers := envInt("LONGLINK_BENCH_SITE_WORKERS", 4)
	serverCPUs, clientCPUs := envStr("LONGLINK_BENCH_SERVER_CPUS", "0"), envStr("LONGLINK_BENCH_CLIENT_CPUS", "1")
	if _, err := exec.LookPath("taskset"); err != nil {
		serverCPUs, clientCPUs = "", ""
	}
	loadgen := buildLoadgen(b)
	start := time.Now()
	// Every client comes from this machine's address; the standby logs its
	// promotion's steps (LOG level) for the timeline.
	s := clustertest.StartSites(b, clustertest.SitesOptions{
		Gateway:    clustertest.CoreOptions{Config: map[string]any{"gateway": map[string]any{"max_connections_per_ip": -1}}},
		CPUs:       serverCPUs,
		PGSettings: []string{"log_min_messages = log"},
	})
	b.Logf("two sites up in %v (servers on CPUs %q, %d client workers on %q)", time.Since(start).Round(time.Millisecond), serverCPUs, workers, clientCPUs)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	gwA, gwB := s.SiteA.Gateways()[0], s.SiteB.Gateways()[0]

	var accounts []string
	for i := range n {
		accounts = append(accounts, fmt.Sprintf("i%d", i))
	}
	t0 := time.Now()
	tokens := siteUsers(b, ctx, s.SiteB, accounts)
	b.Logf("%d accounts created in %v", n, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	clients := make([]fleetClient, n)
	for i, a := range accounts {
		addrs := []string{gwA.LinkAddr, gwB.LinkAddr}
		if i%2 == 1 {
			addrs = []string{gwB.LinkAddr, gwA.LinkAddr}
		}
		clients[i] = fleetClient{account: a, token: tokens[a], device: fmt.Sprintf("%s-d", a), addrs: addrs}
	}
	idle := cpuSnapshot(s.Env.Procs())
	fl := startFleet(b, loadgen, clientCPUs, workers, s.SiteA, clients)
	b.Logf("%d clients logged in in %v", n, time.Since(t0).Round(time.Millisecond))
	for _, l := range cpuUsed(idle, cpuSnapshot(s.Env.Procs()), time.Since(t0), n) {
		b.Logf("first logins: %s", l)
	}

	g := newLoadGen(b, ctx, s.SiteA, "l", 20, gwA, gwB)
	g.run(100)
	time.Sleep(5 * time.Second) // steady load before the fault

	// How far the standby's replay was behind what it had received.
	lag, _ := s.PG.Standby.Scalar("SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text")
	replayLag, _ := s.PG.Primary.Scalar("SELECT COALESCE(max(extract(epoch from replay_lag) * 1000), 0)::text FROM pg_stat_replication")
	b.Logf("before the kill: standby replay %s bytes behind its receipt, replay_lag %s ms", lag, replayLag)

	stopSampling := make(chan struct{})
	before := cpuSnapshot(s.Env.Procs())
	killAt := time.Now()
	fl.mark(killAt)
	samples := sampleLogins(gwB, s.SiteB.Services(), killAt, stopSampling)
	if err := s.Kill(s.A); err != nil {
		b.Fatal(err)
	}
	killed := time.Since(killAt)
	if err := s.PG.Standby.Promote(); err != nil {
		b.Fatal(err)
	}
	usage := siteCPU(b, s, killAt, before, 10*time.Second)
	promoted := time.Since(killAt)
	b.Logf("site a's processes gone %v after the kill, promote issued then, b promoted %v after the kill", killed.Round(time.Millisecond), promoted.Round(time.Millisecond))
	// a's clients are those that lost their session: at home in a, but
	// also those whose first login had raced to b's gateway, which were
	// not (and the other way round). Each notices within moments (a reset
	// connection, the workers' 100 ms poll).
	time.Sleep(2 * time.Second)
	affected := fl.lost()
	deadline := time.Now().Add(3 * time.Minute)
	for len(fl.backAfter(killAt, affected)) < len(affected) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	back := fl.backAfter(killAt, affected)
	time.Sleep(3 * time.Second) // load on site b alone
	close(stopSampling)
	g.halt()
	g.wait(30 * time.Second)

	// The first send acknowledged once a's processes were gone (by b: a
	// send acked in the moment of the kill was a's), and acked sends lost.
	var first time.Duration
	acked := map[string]bool{}
	g.mu.Lock()
	for id, m := range g.msgs {
		if m.acked.IsZero() {
			continue
		}
		acked[id] = true
		if d := m.acked.Sub(killAt); d > killed && (first == 0 || d < first) {
			first = d
		}
	}
	g.mu.Unlock()
	db, err := s.PG.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT client_msg_id FROM messages WHERE sender LIKE 'l%'`)
	if err != nil {
		b.Fatal(err)
	}
	stored := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			b.Fatal(err)
		}
		stored[id] = true
	}
	rows.Close()
	lost := 0
	for id := range acked {
		if !stored[id] {
			lost++
		}
	}
	q := func(p float64) time.Duration {
		if len(back) < int(math.Ceil(float64(len(affected))*p)) {
			return 0
		}
		return quantile(back, p)
	}
	q50, q90, q99, all := q(0.5), q(0.9), q(0.99), time.Duration(0)
	if len(back) == len(affected) {
		all = quantile(back, 1)
	}

	// The timeline.
	b.Logf("timeline (from the SIGKILL of site a):")
	b.Logf("%8.3fs  site a's processes gone; pg_promote issued", killed.Seconds())
	for _, l := range pgEvents(s.PG.Standby.Log(), killAt) {
		b.Logf("%s", l)
	}
	b.Logf("%8.3fs  standby out of recovery (pg_is_in_recovery false)", promoted.Seconds())
	b.Logf("%8.3fs  first send acknowledged (served by b)", first.Seconds())
	for _, x := range []struct {
		name string
		d    time.Duration
	}{{"50%", q50}, {"90%", q90}, {"99%", q99}, {"all", all}} {
		if x.d > 0 {
			b.Logf("%8.3fs  %s of a's clients logged in again", x.d.Seconds(), x.name)
		}
	}
	b.Logf("why a's clients were down (state changes after the kill): %v", fl.reasons())
	for _, l := range <-usage {
		b.Logf("%s", l)
	}
	for _, svc := range s.SiteB.Services() {
		for _, l := range strings.Split(svc.Log(), "\n") {
			if strings.Contains(l, "node stalled") || strings.Contains(l, "node serving again") {
				b.Logf("%s: %s", svc.Name, l)
			}
		}
	}
	b.Logf("b's gateway, logins by result (cumulative since the kill) and sessions, per second:")
	ss := <-samples
	var base map[string]float64
	var base0 loginSample
	next, last := time.Duration(0), time.Duration(0)
	for _, x := range ss {
		if base == nil {
			base, base0 = x.results, x
		}
		if x.at < next {
			continue
		}
		next = x.at.Truncate(time.Second) + time.Second
		var parts []string
		for _, r := range []string{"ok", "service unavailable", "timeout", "internal error"} {
			parts = append(parts, fmt.Sprintf("%s %.0f", r, x.results[r]-base[r]))
		}
		b.Logf("%8.3fs  %s; sessions %.0f; accepted %.0f, dropped before the handshake %.0f; service: rate %.0f/s, refused %.0f; clients down since the last line %v",
			x.at.Seconds(), strings.Join(parts, ", "), x.sessions, x.accepted-base0.accepted, x.hsDrops-base0.hsDrops, x.svcRate, x.svcRefuse-base0.svcRefuse,
			fl.downsBetween(killAt.Add(last), killAt.Add(x.at)))
		last = x.at
		if all > 0 && x.at > all+2*time.Second {
			break
		}
	}
	b.Logf("%d clients (%d served by site a); kill → promoted %v, first ack %v, %d/%d of a's clients back (99%% %v, all %v); %d acked, %d lost",
		n, len(affected), promoted.Round(time.Millisecond), first.Round(time.Millisecond), len(back), len(affected), q99.Round(time.Millisecond), all.Round(time.Millisecond), len(acked), lost)
	fmt.Printf("RESULT site_failover_clients %d clients (%d were served by the lost site)\n", n, len(affected))
	fmt.Printf("RESULT site_failover_processes_gone %.0f ms\n", ms(killed))
	fmt.Printf("RESULT site_failover_promoted %.0f ms (pg_promote issued once a's processes were gone)\n", ms(promoted))
	fmt.Printf("RESULT site_failover_first_request_served_by_b %.0f ms\n", ms(first))
	if q99 > 0 {
		fmt.Printf("RESULT site_failover_50pct_clients_back %.2f s\n", q50.Seconds())
		fmt.Printf("RESULT site_failover_99pct_clients_back %.2f s\n", q99.Seconds())
	} else {
		fmt.Printf("RESULT site_failover_99pct_clients_back none (%d of %d back within 3 min)\n", len(back), len(affected))
	}
	if all > 0 {
		fmt.Printf("RESULT site_failover_all_clients_back %.2f s\n", all.Seconds())
	}
	fmt.Printf("RESULT site_failover_acked_lost %d messages (of %d acked)\n", lost, len(acked))
}

// cpuUse is the CPU time used so far by each process, and by each CPU
// (/proc/stat: busy, all).
type cpuUse struct {
	procs     map[*clustertest.Proc]time.Duration
	busy, all []float64
}

func cpuSnapshot(procs []*clustertest.Proc) cpuUse {
	u := cpuUse{procs: map[*clustertest.Proc]time.Duration{}}
	for _, p := range procs {
		if p.Running() {
			u.procs[p] = p.CPUTime()
		}
	}
	b, _ := os.ReadFile("/proc/stat")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var busy, all float64
		for i, x := range f[1:] {
			v, _ := strconv.ParseFloat(x, 64)
			all += v
			if i != 3 && i != 4 { // idle, iowait
				busy += v
			}
		}
		u.busy, u.all = append(u.busy, busy), append(u.all, all)
	}
	return u
}

// siteCPU reports, once window after t0 has passed, where the CPU went in
// it: each CPU's busy share and each surviving process's CPU time (site
// b's and the witness's). When LONGLINK_BENCH_PROFILE_DIR is set it also
// saves CPU profiles of b's gateways and service nodes over the window
// (their debug listener's /debug/pprof/profile).
func siteCPU(b *testing.B, s *clustertest.Sites, t0 time.Time, before cpuUse, window time.Duration) <-chan []string {
	out := make(chan []string, 1)
	dir := os.Getenv("LONGLINK_BENCH_PROFILE_DIR")
	var profiles sync.WaitGroup
	if dir != "" {
		for _, c := range append(s.SiteB.Gateways(), s.SiteB.Services()...) {
			profiles.Add(1)
			go func() {
				defer profiles.Done()
				secs := int((window - time.Since(t0)).Seconds())
				resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", c.DebugAddr, max(secs, 1)))
				if err != nil {
					b.Logf("profile %s: %v", c.Name, err)
					return
				}
				defer resp.Body.Close()
				f, err := os.Create(filepath.Join(dir, c.Name+".cpu.pprof"))
				if err != nil {
					b.Logf("profile %s: %v", c.Name, err)
					return
				}
				defer f.Close()
				_, _ = io.Copy(f, resp.Body)
			}()
		}
	}
	svcs := s.SiteB.Services()
	loginTime := func() []float64 {
		var out []float64
		for _, c := range svcs {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			text, err := c.Metrics(ctx)
			cancel()
			if err != nil {
				return nil
			}
			out = append(out, clustertest.SumMetric(text, "longlink_service_request_seconds_sum", `op="login"`),
				clustertest.SumMetric(text, "longlink_service_request_seconds_count", `op="login"`))
		}
		return out
	}
	served := loginTime()
	go func() {
		time.Sleep(time.Until(t0.Add(window)))
		after := cpuSnapshot(s.Env.Procs())
		el := time.Since(t0)
		if now := loginTime(); len(now) == len(served) {
			for i, c := range svcs {
				n := now[2*i+1] - served[2*i+1]
				b.Logf("%s: %.0f logins handled in the window, %.1f ms each on average (handler time, admitted ones)", c.Name, n, 1000*(now[2*i]-served[2*i])/max(n, 1))
			}
		}
		lines := cpuUsed(before, after, el, 0)
		lines[0] = fmt.Sprintf("CPU in the %v after the kill: %s", el.Round(time.Millisecond), lines[0])
		profiles.Wait()
		out <- lines
	}()
	return out
}

// cpuUsed describes the CPU used between two snapshots el apart: each
// CPU's busy share, then each process's CPU time (per one of n logins too
// when n > 0).
func cpuUsed(before, after cpuUse, el time.Duration, n int) []string {
	var cpus []string
	for i := range min(len(after.busy), len(before.busy)) {
		cpus = append(cpus, fmt.Sprintf("cpu%d %.0f%%", i, 100*(after.busy[i]-before.busy[i])/max(after.all[i]-before.all[i], 1)))
	}
	lines := []string{"busy " + strings.Join(cpus, ", ")}
	var total time.Duration
	for p, t := range after.procs {
		d := t - before.procs[p]
		if d <= 0 {
			continue
		}
		total += d
		l := fmt.Sprintf("  %-22s %6.2f s (%.0f%% of a CPU)", p.Name, d.Seconds(), 100*d.Seconds()/el.Seconds())
		if n > 0 {
			l += fmt.Sprintf(", %.2f ms per login", 1000*d.Seconds()/float64(n))
		}
		lines = append(lines, l)
	}
	slices.Sort(lines[1:])
	if n > 0 {
		lines = append(lines, fmt.Sprintf("  all servers            %6.2f s, %.2f ms per login", total.Seconds(), 1000*total.Seconds()/float64(n)))
	}
	return lines
}

func envStr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// BenchmarkSiteSyncCost: the cost of the synchronous standby. One
// two-site deployment (1 ms each way between the sites, the sites'
// processes on LONGLINK_BENCH_SERVER_CPUS, this process on the others)
// with 20 pairs at home in site a, where the primary is, sending durable
// 1:1 messages at 200 msg/s; the standby is switched between synchronous
// and asynchronous (synchronous_standby_names, reloaded) every window, in
// LONGLINK_BENCH_SYNC_ROUNDS (8) rounds of one window each, the order
// alternating (sync-async, async-sync, …) so that the machine's changing
// load falls on both alike. Figures: send → ack (the durable commit) and
// send → delivery p50 and p99 over all windows of each mode, and the
// synchronous windows' p50 minus their round's asynchronous one, mean and
// 95% interval over the rounds: the cost, if it stands out of the noise.
func BenchmarkSiteSyncCost(b *testing.B) {
	benchRequire(b)
	rounds := envInt("LONGLINK_BENCH_SYNC_ROUNDS", 8)
	const window = 8 * time.Second
	serverCPUs := envStr("LONGLINK_BENCH_SERVER_CPUS", "0")
	if _, err := exec.LookPath("taskset"); err != nil {
		serverCPUs = ""
	}
	s := clustertest.StartSites(b, clustertest.SitesOptions{CPUs: serverCPUs})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	g := newLoadGen(b, ctx, s.SiteA, "s", 20, s.SiteA.Gateways()[0])
	g.run(200)
	time.Sleep(3 * time.Second) // warm-up
	setSync := func(sync bool) {
		names, want := "'*'", "sync"
		if !sync {
			names, want = "''", "async"
		}
		if err := s.PG.Primary.Exec("ALTER SYSTEM SET synchronous_standby_names = "+names, "SELECT pg_reload_conf()"); err != nil {
			b.Fatal(err)
		}
		err := waitFor(10*time.Second, func() error {
			st, err := s.PG.Primary.Scalar("SELECT string_agg(sync_state, ',') FROM pg_stat_replication")
			if err == nil && st != want {
				err = fmt.Errorf("standby's sync_state %q, want %q", st, want)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	type span struct {
		round    int
		sync     bool
		from, to time.Time
	}
	var spans []span
	for r := range rounds {
		order := []bool{true, false}
		if r%2 == 1 {
			order = []bool{false, true}
		}
		for _, sync := range order {
			setSync(sync)
			time.Sleep(time.Second) // sends in flight across the switch are left out
			from := time.Now()
			time.Sleep(window)
			spans = append(spans, span{round: r, sync: sync, from: from, to: time.Now()})
		}
	}
	g.halt()
	g.wait(15 * time.Second)
	type stats struct{ acks, dels []time.Duration }
	pooled := map[bool]*stats{true: {}, false: {}}
	undelivered := map[bool]int{}
	p50 := make([]map[bool]float64, rounds)
	for _, sp := range spans {
		var acks []time.Duration
		for _, m := range g.window(sp.from, sp.to) {
			if m.acked.IsZero() || m.delivered.IsZero() {
				undelivered[sp.sync]++
				continue
			}
			acks = append(acks, m.acked.Sub(m.sent))
			pooled[sp.sync].acks = append(pooled[sp.sync].acks, m.acked.Sub(m.sent))
			pooled[sp.sync].dels = append(pooled[sp.sync].dels, m.delivered.Sub(m.sent))
		}
		if p50[sp.round] == nil {
			p50[sp.round] = map[bool]float64{}
		}
		p50[sp.round][sp.sync] = ms(quantile(acks, 0.5))
	}
	var diffs []float64 // per round: sync p50 − async p50, ms
	for r, p := range p50 {
		diffs = append(diffs, p[true]-p[false])
		b.Logf("round %d: ack p50 sync %.2f ms, async %.2f ms", r+1, p[true], p[false])
	}
	mean, half := meanCI95(diffs)
	for _, sync := range []bool{false, true} {
		name := "async"
		if sync {
			name = "sync"
		}
		st := pooled[sync]
		b.Logf("%s standby: %d messages, ack p50 %v p99 %v, delivery p50 %v p99 %v", name, len(st.acks),
			quantile(st.acks, 0.5), quantile(st.acks, 0.99), quantile(st.dels, 0.5), quantile(st.dels, 0.99))
		fmt.Printf("RESULT site_%s_standby_ack_p50 %.2f ms\n", name, ms(quantile(st.acks, 0.5)))
		fmt.Printf("RESULT site_%s_standby_ack_p99 %.2f ms\n", name, ms(quantile(st.acks, 0.99)))
		fmt.Printf("RESULT site_%s_standby_delivery_p50 %.2f ms\n", name, ms(quantile(st.dels, 0.5)))
		fmt.Printf("RESULT site_%s_standby_delivery_p99 %.2f ms\n", name, ms(quantile(st.dels, 0.99)))
		fmt.Printf("RESULT site_%s_standby_undelivered %d messages\n", name, undelivered[sync])
	}
	fmt.Printf("RESULT site_sync_standby_added_ack_p50 %.2f ms (± %.2f, 95%% interval over %d rounds)\n", mean, half, len(diffs))
}

// meanCI95 is the mean of xs and the half-width of its 95% confidence
// interval (Student's t, n−1 degrees of freedom).
func meanCI95(xs []float64) (float64, float64) {
	n := float64(len(xs))
	if n < 2 {
		return 0, 0
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / n
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	sd := math.Sqrt(ss / (n - 1))
	// t(0.975) for 1…15 degrees of freedom; 2.0 beyond.
	t := []float64{12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13}
	q := 2.0
	if int(n)-2 < len(t) {
		q = t[int(n)-2]
	}
	return mean, q * sd / math.Sqrt(n)
}

// waitFor calls f until it returns nil or d passes (its last error then).
func waitFor(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
