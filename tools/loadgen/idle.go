package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// runIdle measures the server's RSS per idle authenticated Link connection:
// connections are opened by worker processes (several 127.0.0.x source
// addresses, since one process may hold at most 20,000 files), and the
// server's RSS is read at each level after a GC.
func runIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	bin := fs.String("bin", "longlink", "longlink binary")
	levelsFlag := fs.String("levels", "5000,10000,19000", "connection counts to measure at")
	workers := fs.Int("workers", 4, "worker processes (each with its own source address 127.0.0.<2+i>)")
	serverCPU := fs.String("server-cpu", "0", "CPU list for the server (taskset); empty: not pinned")
	clientCPU := fs.String("client-cpu", "1", "CPU list for the workers (taskset); empty: not pinned")
	settle := fs.Duration("settle", 5*time.Second, "wait after each level (after a GC) before reading RSS")
	heapProfile := fs.String("heapprofile", "", "save the server's heap profile and metrics at each level to this file name plus .<level> (compare two with pprof -base)")
	memRate := fs.Int("memprofilerate", 0, "the server's heap profile samples every N bytes (GODEBUG memprofilerate; 0: Go's default, 512 KiB)")
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
	srv, err := startServer(ctx, serverOpts{bin: *bin, cpu: *serverCPU, users: maxN,
		env: []string{godebug}})
	if err != nil {
		return err
	}
	defer srv.stop()

	ws, stopWorkers, err := startWorkers(*workers, *clientCPU, func(i int) []string {
		return append([]string{"idle-worker", "-addr", srv.linkAddr, "-index", strconv.Itoa(i), "-stride", strconv.Itoa(*workers)},
			workerArgs(i, srv.key)...)
	})
	if err != nil {
		return err
	}
	defer stopWorkers()

	measure := func() (int64, error) {
		for i := 0; i < 2; i++ {
			if err := forceGC(srv.debugAddr); err != nil {
				return 0, err
			}
		}
		time.Sleep(*settle)
		var samples []int64
		for i := 0; i < 3; i++ {
			r, err := srv.rss()
			if err != nil {
				return 0, err
			}
			samples = append(samples, r)
			time.Sleep(500 * time.Millisecond)
		}
		sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
		return samples[1], nil
	}
	base, err := measure()
	if err != nil {
		return err
	}
	progress("server RSS with no connections: %.1f MiB", float64(base)/(1<<20))
	result("link_idle_rss_base", float64(base)/(1<<20), "MiB")

	rss := map[int]int64{}
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
		progress("%d connections logged in after %s", n, time.Since(start).Round(time.Millisecond))
		r, err := measure()
		if err != nil {
			return err
		}
		rss[n] = r
		per := float64(r-base) / float64(n)
		progress("at %d connections: RSS %.1f MiB, %.2f KiB per connection above the base", n, float64(r)/(1<<20), per/1024)
		result(fmt.Sprintf("link_idle_rss_at_%d", n), float64(r)/(1<<20), "MiB")
		if sessions, err := gatewaySessions(srv.debugAddr); err == nil && sessions != n {
			return fmt.Errorf("server holds %d sessions, want %d", sessions, n)
		}
		if *heapProfile != "" {
			name := fmt.Sprintf("%s.%d", *heapProfile, n)
			if err := saveURL("http://"+srv.debugAddr+"/debug/pprof/heap", name); err != nil {
				progress("heap profile: %v", err)
			}
			if err := saveURL("http://"+srv.debugAddr+"/metrics", name+".metrics"); err != nil {
				progress("metrics: %v", err)
			}
		}
	}
	lo, hi := levels[0], levels[len(levels)-1]
	if hi > lo {
		slope := float64(rss[hi]-rss[lo]) / float64(hi-lo)
		result("link_idle_bytes_per_conn_slope", slope/1024, "KiB/conn")
	}
	return nil
}

func forceGC(debugAddr string) error {
	resp, err := http.Get("http://" + debugAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return fmt.Errorf("trigger GC: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

// gatewaySessions reads longlink_gateway_sessions from the server's metrics.
func gatewaySessions(debugAddr string) (int, error) {
	resp, err := http.Get("http://" + debugAddr + "/metrics")
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
	index := fs.Int("index", 0, "this worker's index")
	stride := fs.Int("stride", 1, "number of workers (users are index, index+stride, …)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := wf.dialer(20 * time.Second)
	if err != nil {
		return err
	}
	var conns memberConns
	go conns.heartbeats()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var target int
		if _, err := fmt.Sscanf(sc.Text(), "target %d", &target); err != nil {
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
