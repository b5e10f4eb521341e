// Command wlbench measures WebLink beside the reference Node.js socket.io v4
// server: server memory per idle Socket.IO WebSocket connection at 19,000
// connections, and the echo round trip (p50, p99, echoes/s) of 100 busy
// connections beside the idle ones. Server and load run in separate
// processes pinned to different cores; the load is split over two processes
// because a process may hold at most 20,000 files.
//
//	go run ./core/weblink/internal/wlbench            # both servers, RESULT lines
//	wlbench serve ADDR                                # WebLink's protocol server with the echo handler
//	wlbench load -addr A -idle N -busy B              # a load process (driven over stdin/stdout)
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/longlink/longlink/core/weblink/internal/server"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "serve":
			serve(os.Args[2])
			return
		case "load":
			load(os.Args[2:])
			return
		}
	}
	if err := orchestrate(); err != nil {
		fmt.Fprintln(os.Stderr, "wlbench:", err)
		os.Exit(1)
	}
}

func serve(addr string) {
	srv := server.New(server.Config{}, &server.EchoHandler{}, nil, nil)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if a := os.Getenv("WLBENCH_PPROF"); a != "" {
		// Profiling while investigating the server's memory.
		go func() { _ = http.ListenAndServe(a, nil) }()
	}
	fmt.Println("READY")
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for sig := range usr1 {
			if sig == syscall.SIGUSR2 {
				debug.FreeOSMemory()
			}
			// On demand: where the server's memory goes (stderr).
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			fmt.Fprintf(os.Stderr, "memstats: sys %d KiB, heap in use %d KiB, heap objects %d, stack in use %d KiB, goroutines %d, sessions %d\n",
				m.Sys>>10, m.HeapInuse>>10, m.HeapObjects, m.StackInuse>>10, runtime.NumGoroutine(), srv.Sessions())
		}
	}()
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { <-ctx.Done(); hs.Close(); srv.Close() }()
	_ = hs.Serve(ln)
}

const (
	totalConns = 19000
	busyConns  = 100
	echoFor    = 10 * time.Second
)

type target struct {
	name string // figure prefix
	argv []string
	addr string
}

func orchestrate() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	nodeDir := filepath.Join(root, "core/weblink/testdata/node")
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules/socket.io")); err != nil && os.Getenv("WLBENCH_ONLY") != "weblink" {
		return fmt.Errorf("reference server missing: run tools/testdeps/install.sh (%w)", err)
	}
	targets := []target{
		{"weblink", []string{"taskset", "-c", "0", self, "serve", "127.0.0.1:7792"}, "127.0.0.1:7792"},
		{"socketio_node", []string{"taskset", "-c", "0", "node", filepath.Join(nodeDir, "ref_server.mjs"), "7791"}, "127.0.0.1:7791"},
	}
	if only := os.Getenv("WLBENCH_ONLY"); only != "" {
		// One server only, e.g. WLBENCH_ONLY=weblink where Node.js is
		// missing (the protocol server alone: no login, no session).
		var keep []target
		for _, t := range targets {
			if t.name == only {
				keep = append(keep, t)
			}
		}
		targets = keep
	}
	fmt.Printf("# %d connections (%d idle + %d busy echoing for %s); server on CPU 0, load on CPU 1\n",
		totalConns, totalConns-busyConns, busyConns, echoFor)
	for _, t := range targets {
		if err := runTarget(self, nodeDir, t); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	return nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above the working directory")
		}
		dir = parent
	}
}

type proc struct {
	cmd   *exec.Cmd
	in    *os.File
	lines chan string
}

func start(argv []string, dir string) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdin = inR
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	inR.Close()
	p := &proc{cmd: cmd, in: inW, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p, nil
}

func (p *proc) expect(prefix string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return "", fmt.Errorf("process ended before %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
		case <-deadline:
			return "", fmt.Errorf("no %q within %s", prefix, timeout)
		}
	}
}

func (p *proc) stop() {
	p.in.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}

// runTarget measures one server: taskset execs it, so its pid is the one started.
func runTarget(self, nodeDir string, t target) error {
	srv, err := start(t.argv, nodeDir)
	if err != nil {
		return err
	}
	defer srv.stop()
	if _, err := srv.expect("READY", 30*time.Second); err != nil {
		return err
	}
	// Warm up: one session and back, so that lazily loaded code is resident.
	warm, err := start([]string{"taskset", "-c", "1", self, "load", "-addr", t.addr, "-idle", "10", "-busy", "1"}, nodeDir)
	if err != nil {
		return err
	}
	if _, err := warm.expect("READY", 30*time.Second); err != nil {
		return err
	}
	fmt.Fprintln(warm.in, "GO 1")
	if _, err := warm.expect("STATS", 30*time.Second); err != nil {
		return err
	}
	warm.stop()
	time.Sleep(2 * time.Second)
	base, err := rssKiB(srv.cmd.Process.Pid)
	if err != nil {
		return err
	}
	half := (totalConns - busyConns) / 2
	a, err := start([]string{"taskset", "-c", "1", self, "load", "-addr", t.addr, "-idle", strconv.Itoa(half), "-busy", "0"}, nodeDir)
	if err != nil {
		return err
	}
	defer a.stop()
	b, err := start([]string{"taskset", "-c", "1", self, "load", "-addr", t.addr, "-idle", strconv.Itoa(totalConns - busyConns - half), "-busy", strconv.Itoa(busyConns)}, nodeDir)
	if err != nil {
		return err
	}
	defer b.stop()
	for _, p := range []*proc{a, b} {
		if _, err := p.expect("READY", 3*time.Minute); err != nil {
			return err
		}
	}
	time.Sleep(5 * time.Second)
	rss, err := rssKiB(srv.cmd.Process.Pid)
	if err != nil {
		return err
	}
	perConn := float64(rss-base) / totalConns
	fmt.Printf("# %s: server RSS %d KiB before, %d KiB with %d connections\n", t.name, base, rss, totalConns)
	fmt.Printf("RESULT %s_idle_kib_per_conn %.2f KiB\n", t.name, perConn)
	fmt.Printf("RESULT %s_conns_per_gb %.0f conns/GiB\n", t.name, float64(1<<20)/perConn)
	fmt.Fprintf(b.in, "GO %d\n", int(echoFor/time.Millisecond))
	line, err := b.expect("STATS", echoFor+time.Minute)
	if err != nil {
		return err
	}
	var n int64
	var secs, p50, p99 float64
	if _, err := fmt.Sscanf(line, "STATS %d %f %f %f", &n, &secs, &p50, &p99); err != nil {
		return fmt.Errorf("stats %q: %w", line, err)
	}
	fmt.Printf("RESULT %s_echo_per_s %.0f echoes/s\n", t.name, float64(n)/secs)
	fmt.Printf("RESULT %s_echo_p50_ms %.2f ms\n", t.name, p50)
	fmt.Printf("RESULT %s_echo_p99_ms %.2f ms\n", t.name, p99)
	// Every connection must still be there after the echo phase.
	fmt.Fprintln(a.in, "CHECK")
	fmt.Fprintln(b.in, "CHECK")
	for _, p := range []*proc{a, b} {
		l, err := p.expect("ALIVE", 30*time.Second)
		if err != nil {
			return err
		}
		fmt.Printf("# %s load: %s\n", t.name, l)
	}
	return nil
}

func load(args []string) {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	idle := fs.Int("idle", 0, "idle connections")
	busy := fs.Int("busy", 0, "busy connections")
	_ = fs.Parse(args)
	if err := runLoad(*addr, *idle, *busy); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}
