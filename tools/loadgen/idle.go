package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// runIdle measures the server's RSS per idle authenticated Link connection,
// then per idle logged-in WebLink session (a second server): connections
// are opened by worker processes (several 127.0.0.x source addresses, since
// one process may hold at most 20,000 files), and the server's RSS is read
// at each level after a GC. With -baseline the same
// levels are then held by two bare echo servers: one that parks every
// socket on its own epoll set (no goroutine, no Go object per connection:
// the floor of the method) and a plain Go server with a goroutine per
// connection.
func runIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	bin := fs.String("bin", "longlink", "longlink binary")
	levelsFlag := fs.String("levels", "5000,10000,19000", "connection counts to measure at")
	workers := fs.Int("workers", 4, "worker processes (each with its own source address 127.0.0.<2+i>)")
	serverCPU := fs.String("server-cpu", "0", "CPU list for the server (taskset); empty: not pinned")
	clientCPU := fs.String("client-cpu", "1", "CPU list for the workers (taskset); empty: not pinned")
	settle := fs.Duration("settle", 10*time.Second, "wait after each level before the GC and the RSS reading (caches of the login burst expire)")
	heapProfile := fs.String("heapprofile", "", "save the server's heap profile and metrics at each level to this file name plus .<link|weblink>.<level> (compare two with pprof -base)")
	memRate := fs.Int("memprofilerate", 0, "the server's heap profile samples every N bytes (GODEBUG memprofilerate; 0: Go's default, 512 KiB)")
	baseline := fs.Bool("baseline", false, "also hold the same connections on bare epoll and Go echo servers")
	weblink := fs.Bool("weblink", true, "also measure idle logged-in WebLink (Socket.IO over WebSocket) sessions, on a server of their own")
	if err := fs.Parse(args); err != nil {
		return err
	}
	godebug := "GODEBUG=madvdontneed=1"
	if *memRate > 0 {
		godebug += ",memprofilerate=" + strconv.Itoa(*memRate)
	}
	var levels []int
	for _, s := range strings.Split(*levelsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("-levels: %q", s)
		}
		levels = append(levels, n)
	}
	sort.Ints(levels)
	maxN := levels[len(levels)-1]
	ctx := context.Background()
	prof := func(srv *server, figure string) func(n int) {
		if *heapProfile == "" {
			return nil
		}
		return func(n int) {
			name := fmt.Sprintf("%s.%s.%d", *heapProfile, figure, n)
			if err := saveURL("http://"+srv.debugAddr+"/debug/pprof/heap", name); err != nil {
				progress("heap profile: %v", err)
			}
			if err := saveURL("http://"+srv.debugAddr+"/metrics", name+".metrics"); err != nil {
				progress("metrics: %v", err)
			}
		}
	}
	// Each protocol gets a server of its own, measured from its own base.
	for _, proto := range []string{"link", "weblink"} {
		if proto == "weblink" && !*weblink {
			continue
		}
		srv, err := startServer(ctx, serverOpts{bin: *bin, cpu: *serverCPU, users: maxN,
			env: []string{godebug}, weblink: proto == "weblink"})
		if err != nil {
			return err
		}
		t := idleTarget{
			figure: proto + "_idle", pid: srv.cmd.Process.Pid,
			gc: func() error { return forceGC(srv.debugAddr) },
			workerArgs: func(i int) []string {
				args := append([]string{"idle-worker", "-addr", srv.linkAddr}, workerArgs(i, srv.key)...)
				if proto == "weblink" {
					args = append(args, "-weblink", srv.webAddr)
				}
				return args
			},
			check: func(n int) error {
				if sessions, err := gatewaySessions(srv.debugAddr); err == nil && sessions != n {
					return fmt.Errorf("server holds %d sessions, want %d", sessions, n)
				}
				return nil
			},
			atLevel:   prof(srv, proto),
			breakdown: func() (map[string]float64, error) { return memBreakdown(srv.cmd.Process.Pid, srv.debugAddr) },
		}
		err = measureIdle(t, levels, *workers, *clientCPU, *settle)
		srv.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", proto, err)
		}
	}
	if !*baseline {
		return nil
	}
	for _, mode := range []string{"epoll", "go"} {
		if err := measureEcho(mode, levels, *workers, *serverCPU, *clientCPU, *settle); err != nil {
			return fmt.Errorf("baseline %s: %w", mode, err)
		}
	}
	return nil
}

// idleTarget is a server whose RSS is measured with idle connections.
type idleTarget struct {
	figure     string // prefix of the RESULT lines
	pid        int
	gc         func() error
	workerArgs func(i int) []string // without -index and -stride
	check      func(n int) error    // the server holds n connections
	atLevel    func(n int)          // optional, after the reading
	// breakdown, optional, splits the server's memory after the reading
	// (memBreakdown); each part's growth per connection between the
	// first and the last level is printed beside the slope.
	breakdown func() (map[string]float64, error)
}

// measureIdle grows the connections held by workers through levels and
// prints the target's RSS at each and the slope between the first and the
// last.
func measureIdle(t idleTarget, levels []int, workers int, clientCPU string, settle time.Duration) error {
	ws, stopWorkers, err := startWorkers(workers, clientCPU, func(i int) []string {
		return append(t.workerArgs(i), "-index", strconv.Itoa(i), "-stride", strconv.Itoa(workers))
	})
	if err != nil {
		return err
	}
	defer stopWorkers()
	measure := func(wait time.Duration) (int64, error) {
		// Wait first, then collect: what the server keeps once the
		// connections are idle, not the garbage of their logins.
		time.Sleep(wait)
		for i := 0; i < 2; i++ {
			if err := t.gc(); err != nil {
				return 0, err
			}
		}
		time.Sleep(time.Second)
		var samples []int64
		for i := 0; i < 3; i++ {
			r, err := procRSS(t.pid)
			if err != nil {
				return 0, err
			}
			samples = append(samples, r)
			time.Sleep(500 * time.Millisecond)
		}
		sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
		return samples[1], nil
	}
	base, err := measure(time.Second)
	if err != nil {
		return err
	}
	progress("%s: server RSS with no connections: %.1f MiB", t.figure, float64(base)/(1<<20))
	result(t.figure+"_rss_base", float64(base)/(1<<20), "MiB")
	rss := map[int]int64{}
	parts := map[int]map[string]float64{}
	prev := 0
	for _, n := range levels {
		start := time.Now()
		for i, w := range ws {
			per := n / len(ws)
			if i < n%len(ws) {
				per++
			}
			if err := w.send(fmt.Sprintf("target %d", per)); err != nil {
				return err
			}
		}
		for i, w := range ws {
			if _, err := w.expect("at "); err != nil {
				return fmt.Errorf("worker %d: %w", i, err)
			}
		}
		took := time.Since(start)
		progress("%s: %d connections up after %s (%.0f/s)", t.figure, n, took.Round(time.Millisecond), float64(n-prev)/took.Seconds())
		prev = n
		r, err := measure(settle)
		if err != nil {
			return err
		}
		rss[n] = r
		per := float64(r-base) / float64(n)
		progress("%s: at %d connections: RSS %.1f MiB, %.2f KiB per connection above the base", t.figure, n, float64(r)/(1<<20), per/1024)
		result(fmt.Sprintf("%s_rss_at_%d", t.figure, n), float64(r)/(1<<20), "MiB")
		if t.check != nil {
			if err := t.check(n); err != nil {
				return err
			}
		}
		if t.breakdown != nil {
			p, err := t.breakdown()
			if err != nil {
				return fmt.Errorf("memory breakdown: %w", err)
			}
			parts[n] = p
			progress("%s: at %d connections: %s", t.figure, n, formatParts(p))
		}
		if t.atLevel != nil {
			t.atLevel(n)
		}
	}
	lo, hi := levels[0], levels[len(levels)-1]
	if hi > lo {
		slope := float64(rss[hi]-rss[lo]) / float64(hi-lo)
		result(t.figure+"_bytes_per_conn_slope", slope/1024, "KiB/conn")
		if parts[hi] != nil {
			for _, k := range breakdownParts {
				result(fmt.Sprintf("%s_slope_%s", t.figure, k), (parts[hi][k]-parts[lo][k])/float64(hi-lo), "B/conn")
			}
		}
	}
	result(fmt.Sprintf("%s_kib_per_conn_at_%d", t.figure, hi), float64(rss[hi]-base)/float64(hi)/1024, "KiB/conn")
	return nil
}

// breakdownParts are the parts of a Go server's resident memory that
// memBreakdown tells apart, in the order they are printed.
var breakdownParts = []string{"live_heap", "heap_fragmentation", "runtime_outside_heap", "anon_outside_go", "file"}

// memBreakdown splits a Go server's resident memory (bytes) by what the
// runtime reports (go_memstats on its /metrics) and what the kernel does
// (/proc/PID/status): the live heap; the heap's spans in use beyond it
// (fragmentation); the runtime's own memory outside the heap (stacks,
// span and GC metadata, other_sys: netpoll descriptors, finalizer
// records); anonymous memory the Go runtime does not account for (C-like
// allocators inside the process: the pure-Go SQLite's page cache); and
// file pages (the binary).
func memBreakdown(pid int, debugAddr string) (map[string]float64, error) {
	m, err := metricValues(debugAddr, "go_memstats_heap_alloc_bytes", "go_memstats_heap_inuse_bytes",
		"go_memstats_sys_bytes", "go_memstats_heap_sys_bytes", "go_memstats_heap_released_bytes")
	if err != nil {
		return nil, err
	}
	st, err := procStatus(pid, "RssAnon", "RssFile")
	if err != nil {
		return nil, err
	}
	goResident := m["go_memstats_sys_bytes"] - m["go_memstats_heap_released_bytes"]
	return map[string]float64{
		"live_heap":            m["go_memstats_heap_alloc_bytes"],
		"heap_fragmentation":   m["go_memstats_heap_inuse_bytes"] - m["go_memstats_heap_alloc_bytes"],
		"runtime_outside_heap": m["go_memstats_sys_bytes"] - m["go_memstats_heap_sys_bytes"],
		"anon_outside_go":      float64(st["RssAnon"]) - goResident,
		"file":                 float64(st["RssFile"]),
	}, nil
}

func formatParts(p map[string]float64) string {
	var b strings.Builder
	for i, k := range breakdownParts {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.1f MiB", k, p[k]/(1<<20))
	}
	return b.String()
}

// metricValues reads the named unlabelled metrics from a /metrics page.
func metricValues(debugAddr string, names ...string) (map[string]float64, error) {
	resp, err := plainHTTP.Get("http://" + debugAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if ok && slices.Contains(names, name) {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			out[name] = f
		}
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("no %s metric", n)
		}
	}
	return out, sc.Err()
}

// procStatus reads the named kB fields of /proc/PID/status, in bytes.
func procStatus(pid int, fields ...string) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || !slices.Contains(fields, k) {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = kb * 1024
	}
	for _, f := range fields {
		if _, ok := out[f]; !ok {
			return nil, fmt.Errorf("no %s in /proc/%d/status", f, pid)
		}
	}
	return out, nil
}

// procRSS is a process's resident set size in bytes.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}

// forceGC collects the server's garbage and returns its free memory to the
// OS at once, as the echo baselines do (debug.FreeOSMemory): the RSS then
// holds what is in use, not what the scavenger has yet to return.
func forceGC(debugAddr string) error {
	resp, err := http.Post("http://"+debugAddr+"/debug/freeosmemory", "", nil)
	if err != nil {
		return fmt.Errorf("free OS memory: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("free OS memory: %s", resp.Status)
	}
	return nil
}

// plainHTTP asks for uncompressed answers: the server under measurement
// would otherwise gzip every /metrics page it is polled for.
var plainHTTP = &http.Client{Transport: &http.Transport{DisableCompression: true}}

// gatewaySessions reads longlink_gateway_sessions from the server's metrics.
func gatewaySessions(debugAddr string) (int, error) {
	m, err := metricValues(debugAddr, "longlink_gateway_sessions")
	if err != nil {
		return 0, err
	}
	return int(m["longlink_gateway_sessions"]), nil
}

// runIdleWorker holds idle logged-in connections. It reads "target N" lines
// on stdin, grows to N connections and answers "at N".
func runIdleWorker(args []string) error {
	fs := flag.NewFlagSet("idle-worker", flag.ContinueOnError)
	addr := fs.String("addr", "", "gateway address")
	wf := addWorkerFlags(fs)
	plain := fs.Bool("plain", false, "plain TCP connections to an echo server (baseline): no handshake, no login")
	webURL := fs.String("weblink", "", "WebLink base URL: hold logged-in Socket.IO sessions there instead of Link connections")
	index := fs.Int("index", 0, "this worker's index")
	stride := fs.Int("stride", 1, "number of workers (users are index, index+stride, …)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var d memberDialer
	if !*plain {
		var err error
		if d, err = wf.dialer(20 * time.Second); err != nil {
			return err
		}
	}
	var conns memberConns
	go conns.heartbeats()
	var held []net.Conn  // -plain
	var webs webSessions // -weblink
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var target int
		if _, err := fmt.Sscanf(sc.Text(), "target %d", &target); err != nil {
			continue
		}
		if *plain {
			if err := openPlain(&held, *addr, *wf.src, target); err != nil {
				fmt.Printf("error %v\n", err)
				continue
			}
			fmt.Printf("at %d\n", len(held))
			continue
		}
		if *webURL != "" {
			if err := webs.open(*webURL, *wf.src, target, *index, *stride); err != nil {
				fmt.Printf("error %v\n", err)
				continue
			}
			fmt.Printf("at %d\n", webs.len())
			continue
		}
		err := openAll(conns.len(), target, 32, func(i int) error {
			c, err := d.open(*addr, *index+i*(*stride))
			if err != nil {
				return err
			}
			conns.add(c)
			go readAll(c, nil)
			return nil
		})
		if err != nil {
			fmt.Printf("error %v\n", err)
			continue
		}
		fmt.Printf("at %d\n", conns.len())
	}
	return nil
}

func saveURL(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
