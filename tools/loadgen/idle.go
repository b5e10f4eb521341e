package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
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
	heapProfile := fs.String("heapprofile", "", "save the server's heap profile at the last level to this file")
	if err := fs.Parse(args); err != nil {
		return err
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
		env: []string{"GODEBUG=madvdontneed=1"}})
	if err != nil {
		return err
	}
	defer srv.stop()

	self, err := os.Executable()
	if err != nil {
		return err
	}
	type worker struct {
		cmd *exec.Cmd
		in  io.WriteCloser
		out *bufio.Scanner
	}
	var ws []*worker
	for i := 0; i < *workers; i++ {
		argv := []string{self, "idle-worker", "-addr", srv.linkAddr, "-src", fmt.Sprintf("127.0.0.%d", 2+i),
			"-key-id", srv.key.ID, "-public-key", link.EncodeKey(srv.key.Public),
			"-index", strconv.Itoa(i), "-stride", strconv.Itoa(*workers)}
		if *clientCPU != "" {
			if _, err := exec.LookPath("taskset"); err == nil {
				argv = append([]string{"taskset", "-c", *clientCPU}, argv...)
			}
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { in.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		ws = append(ws, &worker{cmd: cmd, in: in, out: bufio.NewScanner(out)})
	}

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
			fmt.Fprintf(w.in, "target %d\n", per)
		}
		for i, w := range ws {
			for {
				if !w.out.Scan() {
					return fmt.Errorf("worker %d exited", i)
				}
				line := w.out.Text()
				if strings.HasPrefix(line, "at ") {
					break
				}
				if strings.HasPrefix(line, "error") {
					return fmt.Errorf("worker %d: %s", i, line)
				}
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
	}
	if *heapProfile != "" {
		if err := saveURL("http://"+srv.debugAddr+"/debug/pprof/heap", *heapProfile); err != nil {
			progress("heap profile: %v", err)
		}
		if err := saveURL("http://"+srv.debugAddr+"/metrics", *heapProfile+".metrics"); err != nil {
			progress("metrics: %v", err)
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
	src := fs.String("src", "127.0.0.2", "source address")
	keyID := fs.String("key-id", "", "server key id")
	pubB64 := fs.String("public-key", "", "server public key")
	index := fs.Int("index", 0, "this worker's index")
	stride := fs.Int("stride", 1, "number of workers (users are index, index+stride, …)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pub, err := link.DecodeKey(*pubB64)
	if err != nil {
		return err
	}
	var (
		mu    sync.Mutex
		conns []*link.Conn
	)
	// Heartbeats keep the sessions alive (the server closes silent ones).
	go func() {
		t := time.NewTicker(30 * time.Second)
		for range t.C {
			mu.Lock()
			cs := append([]*link.Conn(nil), conns...)
			mu.Unlock()
			for _, c := range cs {
				_ = c.WriteFrame(link.Frame{Op: imapi.OpHeartbeat, Seq: 2})
			}
		}
	}()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(*src)}, Timeout: 10 * time.Second}
	open := func(i int) (*link.Conn, error) {
		nc, err := dialer.Dial("tcp", *addr)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := link.Client(ctx, nc, *keyID, pub, link.Limits{})
		if err != nil {
			nc.Close()
			return nil, err
		}
		u := *index + i*(*stride)
		body, _ := json.Marshal(imapi.LoginReq{AppKey: benchAppKey, Account: account(u), Token: token(u), DeviceID: "d" + strconv.Itoa(u), DeviceType: "phone", SDKVersion: "loadgen"})
		if err := c.WriteFrame(link.Frame{Op: imapi.OpLogin, Seq: 1, Body: body}); err != nil {
			c.Close()
			return nil, err
		}
		_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		f, err := c.ReadFrame()
		if err != nil {
			c.Close()
			return nil, err
		}
		if f.Code != imapi.OK {
			c.Close()
			return nil, fmt.Errorf("login %s: code %d %s", account(u), f.Code, f.Body)
		}
		_ = nc.SetReadDeadline(time.Time{})
		go func() {
			for {
				if _, err := c.ReadFrame(); err != nil {
					return
				}
			}
		}()
		return c, nil
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var target int
		if _, err := fmt.Sscanf(sc.Text(), "target %d", &target); err != nil {
			continue
		}
		mu.Lock()
		have := len(conns)
		mu.Unlock()
		var next atomic.Int64
		next.Store(int64(have))
		var wg sync.WaitGroup
		var firstErr atomic.Value
		for p := 0; p < 32; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= target || firstErr.Load() != nil {
						return
					}
					c, err := open(i)
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if err := firstErr.Load(); err != nil {
			fmt.Printf("error %v\n", err)
			continue
		}
		mu.Lock()
		n := len(conns)
		mu.Unlock()
		fmt.Printf("at %d\n", n)
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
