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
			atLevel: prof(srv, proto),
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
		if t.atLevel != nil {
			t.atLevel(n)
		}
	}
	lo, hi := levels[0], levels[len(levels)-1]
	if hi > lo {
		slope := float64(rss[hi]-rss[lo]) / float64(hi-lo)
		result(t.figure+"_bytes_per_conn_slope", slope/1024, "KiB/conn")
	}
	result(fmt.Sprintf("%s_kib_per_conn_at_%d", t.figure, hi), float64(rss[hi]-base)/float64(hi)/1024, "KiB/conn")
	return nil
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
	resp, err := plainHTTP.Get("http://" + debugAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "longlink_gateway_sessions "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("no longlink_gateway_sessions metric")
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
