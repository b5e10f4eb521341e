package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/sdk"
)

// runStorm measures a reconnect storm: N Go SDK clients (spread over worker
// processes, a process holds at most 20,000 files) are logged in to one
// core; the core is killed with SIGKILL and started again on the same data,
// and the time until 99% (and all) of them are logged in again is taken
// from the gateway's session count, with the server's CPU time over the
// storm. Baseline in the same run: Noise handshakes per second of one core
// (both sides in this process, the server's half counted), the ceiling of
// logins per second on that core before any login work.
func runStorm(args []string) error {
	fs := flag.NewFlagSet("storm", flag.ContinueOnError)
	bin := fs.String("bin", "longlink", "longlink binary")
	clients := fs.Int("clients", 19000, "SDK clients")
	workers := fs.Int("workers", 4, "worker processes")
	serverCPU := fs.String("server-cpu", "0", "CPU list for the server (taskset)")
	clientCPU := fs.String("client-cpu", "1", "CPU list for the workers (taskset)")
	limit := fs.Duration("limit", 120*time.Second, "give up waiting for the clients after this long")
	backoffMax := fs.Duration("backoff-max", 0, "the clients' BackoffMax (0: the SDK's default)")
	profile := fs.String("profile", "", "write the restarted server's CPU profile of the storm (pprof) to this file")
	profileFor := fs.Duration("profile-for", 10*time.Second, "length of the storm's CPU profile")
	if err := fs.Parse(args); err != nil {
		return err
	}
	hsCPU, hsRate := handshakeCost(2 * time.Second)
	result("storm_baseline_noise_handshake_cpu", float64(hsCPU.Microseconds()), "us")
	result("storm_baseline_noise_handshakes_per_core", hsRate, "handshakes/s")

	ctx := context.Background()
	srv, err := startServer(ctx, serverOpts{bin: *bin, cpu: *serverCPU, users: *clients})
	if err != nil {
		return err
	}
	defer srv.stop()
	ws, stopWorkers, err := startWorkers(*workers, *clientCPU, func(i int) []string {
		return []string{"storm-worker", "-addr", srv.linkAddr, "-key-id", srv.key.ID, "-public-key", link.EncodeKey(srv.key.Public),
			"-index", strconv.Itoa(i), "-stride", strconv.Itoa(*workers), "-n", strconv.Itoa(share(*clients, *workers, i)),
			"-backoff-max", backoffMax.String()}
	})
	if err != nil {
		return err
	}
	defer stopWorkers()
	start := time.Now()
	for i, w := range ws {
		if _, err := w.expect("started"); err != nil {
			return fmt.Errorf("worker %d: %w", i, err)
		}
	}
	fill, err := waitSessions(srv.debugAddr, *clients, *clients, 10*time.Minute, nil)
	if err != nil {
		return fmt.Errorf("first logins: %w", err)
	}
	progress("%d clients logged in after %s (first logins, not a storm)", *clients, time.Since(start).Round(time.Millisecond))
	_ = fill
	time.Sleep(3 * time.Second)

	workerStats := func() []string {
		var out []string
		for _, w := range ws {
			if w.send("stats") != nil {
				continue
			}
			if l, err := w.expect("stats "); err == nil {
				out = append(out, strings.TrimPrefix(l, "stats "))
			}
		}
		return out
	}
	for i, l := range workerStats() {
		progress("worker %d before the kill: %s", i, l)
	}
	kern0 := kernelTCP()
	killed := time.Now()
	srv.kill9()
	progress("server killed (SIGKILL); starting it again")
	if err := srv.launch(); err != nil {
		return err
	}
	listening := time.Now()
	progress("server pid %d listening again after %s", srv.cmd.Process.Pid, listening.Sub(killed).Round(time.Millisecond))
	cpu0, _ := srv.cpuTime()
	profiled := make(chan struct{})
	if *profile != "" {
		go func() {
			defer close(profiled)
			if err := fetchProfile(srv.debugAddr, *profile, *profileFor+time.Second); err != nil {
				progress("profile: %v", err)
			}
		}()
	} else {
		close(profiled)
	}
	defer func() { <-profiled }()
	var at99 time.Duration
	var cpu99 time.Duration
	total, err := waitSessions(srv.debugAddr, *clients*99/100, *clients, *limit, func(n int, at time.Duration) {
		if at99 == 0 && n >= *clients*99/100 {
			at99 = at
			cpu99, _ = srv.cpuTime()
		}
	}, killed)
	cpuAll, _ := srv.cpuTime()
	if err != nil {
		progress("storm: %v", err)
	}
	kern1 := kernelTCP()
	var kern []string
	for _, k := range slices.Sorted(maps.Keys(kern1)) {
		kern = append(kern, fmt.Sprintf("%s +%d", k, kern1[k]-kern0[k]))
	}
	progress("kernel TCP counters over the storm (whole machine): %s", strings.Join(kern, ", "))
	result("storm_listen_overflows", float64(kern1["ListenOverflows"]-kern0["ListenOverflows"]), "drops")
	for i, l := range workerStats() {
		progress("worker %d since the kill (a client's first login not counted): %s", i, l)
	}
	logins := metricSum(srv.debugAddr, "longlink_gateway_logins_total")
	refused := metricSum(srv.debugAddr, "longlink_gateway_refused_total")
	accepted := metricSum(srv.debugAddr, "longlink_gateway_accepted_total")
	perr := metricSum(srv.debugAddr, "longlink_gateway_protocol_errors_total")
	progress("after the restart: logins by result %v; refusals %v; accepted connections %v; protocol errors %v", logins, refused, accepted, perr)
	dumpMetrics(srv.debugAddr, []string{"longlink_gateway_handshake_drops_total", "longlink_gateway_handshake_wait_seconds_sum",
		"longlink_gateway_handshake_wait_seconds_count", "longlink_service_stalls_total", "longlink_service_login_"})
	result("storm_accepted_connections", accepted[""], "conns")
	result("storm_clients", float64(*clients), "clients")
	result("storm_restart_to_listening", listening.Sub(killed).Seconds(), "s")
	if at99 > 0 {
		result("storm_99pct_logged_in_after_kill", at99.Seconds(), "s")
		up := at99 - listening.Sub(killed)
		result("storm_logins_per_s_per_core", float64(*clients*99/100)/up.Seconds(), "logins/s")
		result("storm_server_cpu_per_login", float64((cpu99-cpu0).Microseconds())/float64(*clients*99/100), "us")
	}
	if total > 0 {
		result("storm_all_logged_in_after_kill", total.Seconds(), "s")
		result("storm_server_cpu_all", (cpuAll - cpu0).Seconds(), "s")
	}
	ok := logins["ok"]
	var failed float64
	for k, v := range logins {
		if k != "ok" {
			failed += v
		}
	}
	result("storm_logins_ok", ok, "logins")
	result("storm_logins_failed", failed, "logins")
	<-profiled // the profile is of the storm's server, not of the next one
	restartBreakdown(srv)
	return err
}

// restartBreakdown kills the server once more, on the state the storm
// left, and starts it with debug logs to time its start-up by component
// (the lifecycle's "started" lines): where the seconds between a SIGKILL
// and a listening gateway go. It is done after the storm, so the debug
// logs cost the storm nothing.
func restartBreakdown(srv *server) {
	srv.kill9()
	logPath := filepath.Join(srv.dir, "restart-debug.log")
	f, err := os.Create(logPath)
	if err != nil {
		progress("restart breakdown: %v", err)
		return
	}
	defer f.Close()
	argv := slices.Clone(srv.argv)
	if i := slices.Index(argv, "-log-level"); i >= 0 && i+1 < len(argv) {
		argv[i+1] = "debug"
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), srv.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		progress("restart breakdown: %v", err)
		return
	}
	srv.cmd = cmd
	if err := srv.waitListening(); err != nil {
		progress("restart breakdown: %v", err)
		return
	}
	listening := time.Since(start)
	b, err := os.ReadFile(logPath)
	if err != nil {
		return
	}
	var parts []string
	prev := start
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, "msg=started") {
			continue
		}
		at, comp := logField(l, "time="), ""
		for _, fld := range strings.Fields(l) {
			if c, ok := strings.CutPrefix(fld, "component="); ok {
				comp = c
			}
		}
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil || comp == "" {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.2fs", comp, t.Sub(prev).Seconds()))
		prev = t
	}
	progress("second SIGKILL and restart on the storm's state: listening after %s; start-up by component (time since the previous one): %s",
		listening.Round(time.Millisecond), strings.Join(parts, ", "))
	result("storm_restart2_to_listening", listening.Seconds(), "s")
}

// logField is the value of a key=value field of a text log line.
func logField(line, key string) string {
	_, rest, ok := strings.Cut(line, key)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, " ")
	return v
}

func share(n, parts, i int) int {
	per := n / parts
	if i < n%parts {
		per++
	}
	return per
}

// waitSessions polls the gateway's session count every 200 ms until it
// reaches want (from, the time zero of the durations), calling on with each
// reading; it returns when all is reached or limit passes.
func waitSessions(debugAddr string, want, all int, limit time.Duration, on func(n int, at time.Duration), from ...time.Time) (time.Duration, error) {
	t0 := time.Now()
	if len(from) > 0 {
		t0 = from[0]
	}
	deadline := time.Now().Add(limit)
	last, lastAt := -1, time.Now()
	for time.Now().Before(deadline) {
		n, err := gatewaySessions(debugAddr)
		if err == nil {
			at := time.Since(t0)
			if on != nil {
				on(n, at)
			}
			if n >= all {
				return at, nil
			}
			if n != last && time.Since(lastAt) > time.Second {
				progress("%6.1fs: %d sessions", at.Seconds(), n)
				last, lastAt = n, time.Now()
			}
		}
		// Each reading costs the server a /metrics page (at every 50 ms
		// it was ~10% of the storm's server CPU in the profile).
		time.Sleep(200 * time.Millisecond)
	}
	return 0, fmt.Errorf("not all %d logged in within %s (last reading %d)", all, limit, last)
}

// metricSum reads a counter's values by its first label's value.
func metricSum(debugAddr, name string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + debugAddr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name) {
			continue
		}
		rest := strings.TrimPrefix(l, name)
		label := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				continue
			}
			if q := strings.IndexByte(rest[:end], '"'); q >= 0 {
				label = strings.Trim(rest[q:end], `"`)
			}
			rest = rest[end+1:]
		} else if rest != "" && rest[0] != ' ' {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err == nil {
			out[label] += v
		}
	}
	return out
}

// handshakeCost runs Noise NK handshakes over in-memory pipes for d and
// returns the CPU per handshake of one side (half of both) and the
// handshakes per second one core would do for the server side alone.
func handshakeCost(d time.Duration) (time.Duration, float64) {
	kp, err := link.GenerateKey("hs")
	if err != nil {
		return 0, 0
	}
	ring := link.NewKeyRing()
	ring.Add(kp)
	cpu0, _ := procCPUTime(os.Getpid())
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		a, b := net.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := link.Server(context.Background(), b, ring, link.Limits{})
			done <- err
		}()
		_, err := link.Client(context.Background(), a, kp.ID, kp.Public, link.Limits{})
		if err == nil {
			err = <-done
		}
		a.Close()
		b.Close()
		if err != nil {
			return 0, 0
		}
		n++
	}
	cpu1, _ := procCPUTime(os.Getpid())
	per := (cpu1 - cpu0) / time.Duration(2*n)
	if per <= 0 {
		return 0, 0
	}
	return per, float64(time.Second) / float64(per)
}

// runStormWorker runs N SDK clients of accounts index, index+stride, …
// until killed; it prints "started" once every client is started.
func runStormWorker(args []string) error {
	fs := flag.NewFlagSet("storm-worker", flag.ContinueOnError)
	addr := fs.String("addr", "", "gateway address")
	keyID := fs.String("key-id", "", "server key id")
	pubB64 := fs.String("public-key", "", "server public key")
	index := fs.Int("index", 0, "this worker's index")
	stride := fs.Int("stride", 1, "number of workers")
	n := fs.Int("n", 0, "clients")
	backoffMax := fs.Duration("backoff-max", 0, "BackoffMax (0: default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pub, err := link.DecodeKey(*pubB64)
	if err != nil {
		return err
	}
	// Fewer, later collections: a worker's heap is small next to the
	// stacks of its ~30,000 goroutines, which every cycle scans, and on a
	// CPU shared by four workers the GC's idle-time marking takes the
	// others' turns. At 19,000 clients (04:46 run) the GC was 4.6-15.2 s
	// of 14.6-16.4 s of a worker's CPU during the first logins. The limit
	// bounds what the larger percentage lets the heap grow to.
	debug.SetGCPercent(400)
	debug.SetMemoryLimit(2 << 30)
	slots := make(chan struct{}, 32)
	var st stormStats
	go st.watchLag(100 * time.Millisecond)
	go func() {
		// "stats" on stdin: one line of this worker's counts since start.
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "stats" {
				fmt.Println("stats " + st.line())
			}
		}
	}()
	for i := 0; i < *n; i++ {
		u := *index + i*(*stride)
		c, err := sdk.New(sdk.Config{
			Addresses: []string{*addr}, ServerKeys: map[string][]byte{*keyID: pub},
			AppKey: benchAppKey, Account: account(u), Token: token(u), DeviceType: "phone",
			BackoffMax: *backoffMax, ConnectTimeout: 20 * time.Second,
			// These clients read state events only. The default 1,024
			// (~180 KB of pointerful channel buffer per client) made each
			// worker of 4,750 clients a 1.5 GB heap for the GC to scan on
			// the CPU the storm's clients share.
			EventBuffer: 32,
		})
		if err != nil {
			return err
		}
		// The first logins are not the storm: at most 32 per worker are
		// in progress at once.
		slots <- struct{}{}
		go func() {
			first := true
			for ev := range c.Events() {
				if ev.Kind != sdk.EventState {
					continue
				}
				if first {
					if ev.State == sdk.StateConnected {
						first = false
						<-slots
					}
					continue
				}
				st.count(ev)
			}
		}()
		c.Start()
	}
	fmt.Println("started")
	select {}
}

// stormStats counts, in a worker, what its clients went through after
// their first login (connection attempts and why they failed), and how
// late the worker's goroutines ran: the client side of a storm, to tell a
// slow server from a starved load generator.
type stormStats struct {
	attempts, connected, hinted, refused, timeout, closed, other atomic.Int64
	lagMax                                                       atomic.Int64 // ns
}

func (s *stormStats) count(ev sdk.Event) {
	switch ev.State {
	case sdk.StateConnecting:
		s.attempts.Add(1)
	case sdk.StateConnected:
		s.connected.Add(1)
	case sdk.StateDisconnected:
		var ie *imapi.Error
		msg := ""
		if ev.Err != nil {
			msg = ev.Err.Error()
		}
		switch {
		case errors.As(ev.Err, &ie) && ie.RetryAfterMs > 0:
			s.hinted.Add(1)
		case strings.Contains(msg, "connection refused"):
			s.refused.Add(1)
		case errors.Is(ev.Err, context.DeadlineExceeded), errors.Is(ev.Err, os.ErrDeadlineExceeded), strings.Contains(msg, "timeout"):
			s.timeout.Add(1)
		case errors.Is(ev.Err, io.EOF), errors.Is(ev.Err, syscall.ECONNRESET), errors.Is(ev.Err, syscall.EPIPE):
			s.closed.Add(1)
		default:
			s.other.Add(1)
		}
	}
}

// watchLag records the largest delay of a ticker of period every past its
// due time: how long a runnable goroutine of this worker waited for a CPU.
func (s *stormStats) watchLag(every time.Duration) {
	next := time.Now().Add(every)
	for {
		time.Sleep(time.Until(next))
		if lag := time.Since(next); lag > time.Duration(s.lagMax.Load()) {
			s.lagMax.Store(int64(lag))
		}
		next = time.Now().Add(every)
	}
}

func (s *stormStats) line() string {
	// The GC's share is the runtime's estimate; the process's CPU is the kernel's.
	sample := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(sample)
	cpu, _ := procCPUTime(os.Getpid())
	var rss int64
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				rss, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			}
		}
	}
	return fmt.Sprintf("attempts=%d connected=%d failed_hint=%d failed_refused=%d failed_timeout=%d failed_closed=%d failed_other=%d lag_max_ms=%d rss_mb=%d cpu_s=%.1f cpu_gc_s=%.1f",
		s.attempts.Load(), s.connected.Load(), s.hinted.Load(), s.refused.Load(), s.timeout.Load(), s.closed.Load(), s.other.Load(),
		time.Duration(s.lagMax.Load()).Milliseconds(), rss>>10, cpu.Seconds(), sample[0].Value.Float64())
}

// kernelTCP reads the machine's TCP counters that tell what the listen
// queue and the network lost: TcpExt ListenOverflows (a connection whose
// handshake completed but the accept queue was full: its ACK, and the
// client's first data with it, are dropped and must be resent) and
// ListenDrops, Tcp RetransSegs, TcpExt TCPTimeouts. They count the whole
// machine (other engineers' work too), so a storm's share is their change
// over it.
func kernelTCP() map[string]int64 {
	out := map[string]int64{}
	for _, f := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			h, v := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			if len(h) != len(v) || len(h) == 0 || (h[0] != "TcpExt:" && h[0] != "Tcp:") {
				continue
			}
			for j := 1; j < len(h); j++ {
				switch h[j] {
				case "ListenOverflows", "ListenDrops", "RetransSegs", "TCPTimeouts", "TCPSynRetrans":
					n, _ := strconv.ParseInt(v[j], 10, 64)
					out[h[j]] = n
				}
			}
		}
	}
	return out
}
