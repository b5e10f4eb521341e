// Command turnbench measures Longlink's TURN server side by side with
// coturn's turnserver on this machine, under the same load from coturn's
// turnutils_uclient (run by tools/bench as turn-relay and turn-allocations).
//
//	turnbench relay        relayed packets/s, Mbit/s, CPU and loss, 160 B and 1000 B
//	turnbench allocations  allocations held at once and memory per allocation
//	turnbench overload     a sweep of offered rates through saturation: relayed
//	                       packets per CPU-second, loss, fairness (overload.go)
//
// Servers are pinned to CPU 0 and the load (uclient processes and the UDP
// echo peer) to CPU 1 with taskset. Every figure is printed as
// "RESULT <figure> <value> <unit>"; coturn's figures carry the coturn_ prefix.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: turnbench relay|allocations|overload [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "relay":
		err = relayBench(os.Args[2:])
	case "allocations":
		err = allocBench(os.Args[2:])
	case "peer":
		err = peer(os.Args[2])
	case "hold":
		err = hold(os.Args[2:])
	case "overload":
		err = overloadBench(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "turnbench:", err)
		os.Exit(1)
	}
}

// peer is the UDP echo peer; it prints its running count once a second.
func peer(addr string) error {
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return err
	}
	if uc, ok := pc.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(8 << 20)
		_ = uc.SetWriteBuffer(8 << 20)
	}
	var n atomic.Int64
	go func() {
		for range time.Tick(200 * time.Millisecond) {
			fmt.Println(n.Load())
		}
	}()
	buf := make([]byte, 2048)
	for {
		k, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		_, _ = pc.WriteTo(buf[:k], from)
		n.Add(1)
	}
}

type env struct {
	dir    string
	bin    string // longlink binary
	secret string
	self   string
}

func setup() (*env, error) {
	for _, b := range []string{"turnserver", "turnutils_uclient", "taskset"} {
		if _, err := exec.LookPath(b); err != nil {
			return nil, fmt.Errorf("%s not found (tools/testdeps/install.sh installs coturn): %w", b, err)
		}
	}
	dir, err := os.MkdirTemp("", "turnbench")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, bin: filepath.Join(dir, "longlink")}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	e.secret = hex.EncodeToString(b)
	if e.self, err = os.Executable(); err != nil {
		return nil, err
	}
	build := exec.Command("go", "build", "-o", e.bin, "./cmd/longlink")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build longlink: %w", err)
	}
	return e, nil
}

// proc is a started child process, killed with its group at the end.
type proc struct {
	cmd *exec.Cmd
}

func start(stdout *os.File, name string, args ...string) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = stdout, stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &proc{cmd: cmd}, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) stop() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// server starts one of the two servers pinned to CPU 0 and returns it once
// its UDP port answers.
func (e *env) server(kind string, port int, extra string) (*proc, error) {
	devnull, _ := os.Open(os.DevNull)
	var p *proc
	var err error
	switch kind {
	case "coturn":
		p, err = start(devnull, "taskset", "-c", "0", "turnserver", "-n", "--listening-ip=127.0.0.1",
			"--listening-port="+strconv.Itoa(port), "--relay-ip=127.0.0.1", "--use-auth-secret",
			"--static-auth-secret="+e.secret, "--realm=longlink", "--allow-loopback-peers", "--no-cli",
			"--no-tls", "--no-dtls", "--no-tcp", "--log-file=/dev/null", "--simple-log",
			// The same relay port range as the kernel's ephemeral range our
			// server binds from (coturn's default is 49152-65535).
			"--min-port=32768", "--max-port=60999",
			"--pidfile="+filepath.Join(e.dir, "turnserver.pid"), "--userdb="+filepath.Join(e.dir, "turndb"))
	case "longlink":
		cfg := filepath.Join(e.dir, "turn.yaml")
		y := fmt.Sprintf(`udp: ["127.0.0.1:%d"]
tcp: []
tls: []
relay: {ipv4: 127.0.0.1}
secrets: [{id: bench, secret: %s}]
peers: {allow: ["127.0.0.0/8"]}
quotas: {per_user: 0, per_app: 0, total: 0}
%s`, port, e.secret, extra)
		if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
			return nil, err
		}
		p, err = start(devnull, "taskset", "-c", "0", e.bin, "turn", "-config", cfg, "-debug-addr", "", "-log-level", "warn", "-shutdown-timeout", "1s")
	}
	if err != nil {
		return nil, err
	}
	time.Sleep(700 * time.Millisecond)
	if p.cmd.ProcessState != nil {
		return nil, fmt.Errorf("%s exited", kind)
	}
	return p, nil
}

// serverPID is the pid of the server itself (taskset execs it, so the same).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	s = s[strings.LastIndexByte(s, ')')+2:]
	f := strings.Fields(s)
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func rssKiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			v, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return v
		}
	}
	return 0
}

func openFiles(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

func freePort() int {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

var reLost = regexp.MustCompile(`Total lost packets (\d+) `)
var reSent = regexp.MustCompile(`start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)

func relayBench(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	procs := fs.Int("procs", 2, "uclient processes")
	clients := fs.Int("m", 25, "clients (allocations) per uclient process")
	interval := fs.Int("z", 2, "milliseconds between packets of one client")
	window := fs.Duration("window", 5*time.Second, "measurement window in steady state")
	sizes := fs.String("sizes", "160,1000", "payload sizes")
	servers := fs.String("servers", "coturn,longlink", "servers to measure, in order")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := setup()
	if err != nil {
		return err
	}
	defer os.RemoveAll(e.dir)
	offered := float64(*procs**clients) * 1000 / float64(*interval)
	fmt.Printf("# load: %d uclient processes x %d clients, one packet per %d ms each: %.0f packets/s to the peer and %.0f back (CPU 1); servers on CPU 0\n",
		*procs, *clients, *interval, offered, offered)
	for _, sz := range strings.Split(*sizes, ",") {
		size, err := strconv.Atoi(strings.TrimSpace(sz))
		if err != nil {
			return err
		}
		for _, kind := range strings.Split(*servers, ",") {
			if kind != "coturn" && kind != "longlink" {
				return fmt.Errorf("unknown server %q", kind)
			}
			r, err := e.relayRun(kind, size, *procs, *clients, *interval, *window)
			if err != nil {
				return fmt.Errorf("%s %dB: %w", kind, size, err)
			}
			prefix := "turn"
			if kind == "coturn" {
				prefix = "coturn"
			}
			fmt.Printf("# %s %d B: %.0f relayed packets/s, %.1f Mbit/s payload, %.2f cores, %.0f packets/s per core, loss %.3f%% (%d of %d)\n",
				kind, size, r.pps, r.mbps, r.cores, r.pps/max(r.cores, 0.01), r.lossPct, r.lost, r.sent)
			fmt.Printf("RESULT %s_relay_pps_%db %.0f packets/s\n", prefix, size, r.pps)
			fmt.Printf("RESULT %s_relay_mbps_%db %.1f Mbit/s\n", prefix, size, r.mbps)
			fmt.Printf("RESULT %s_relay_cpu_%db %.2f cores\n", prefix, size, r.cores)
			fmt.Printf("RESULT %s_relay_pps_per_core_%db %.0f packets/s\n", prefix, size, r.pps/max(r.cores, 0.01))
			fmt.Printf("RESULT %s_relay_loss_%db %.3f percent\n", prefix, size, r.lossPct)
		}
	}
	return nil
}

type relayResult struct {
	pps, mbps, cores, lossPct float64
	lost, sent                int
}

func (e *env) relayRun(kind string, size, procs, clients, interval int, window time.Duration) (relayResult, error) {
	var r relayResult
	port := freePort()
	srv, err := e.server(kind, port, "")
	if err != nil {
		return r, err
	}
	defer srv.stop()
	peerPort := freePort()
	pr, pw, err := os.Pipe()
	if err != nil {
		return r, err
	}
	pp, err := start(pw, "taskset", "-c", "1", e.self, "peer", fmt.Sprintf("127.0.0.1:%d", peerPort))
	pw.Close()
	if err != nil {
		return r, err
	}
	defer pp.stop()
	var count atomic.Int64
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if v, err := strconv.ParseInt(sc.Text(), 10, 64); err == nil {
				count.Store(v)
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	// Each client runs for the warm-up plus the window plus a margin.
	run := 6*time.Second + window
	n := int(run / (time.Duration(interval) * time.Millisecond))
	var wg sync.WaitGroup
	outs := make([]string, procs)
	ctx, cancel := context.WithTimeout(context.Background(), run+60*time.Second)
	defer cancel()
	for i := 0; i < procs; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, "taskset", "-c", "1", "turnutils_uclient", "-W", e.secret,
				"-u", fmt.Sprintf("bench:load%d", i), "-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
				"-p", strconv.Itoa(port), "-c", "-m", strconv.Itoa(clients), "-n", strconv.Itoa(n),
				"-l", strconv.Itoa(size), "-z", strconv.Itoa(interval), "127.0.0.1")
			out, _ := cmd.CombinedOutput()
			outs[i] = string(out)
		}(i)
	}
	// Warm up: wait until the peer sees traffic, then 2 more seconds.
	deadline := time.Now().Add(40 * time.Second)
	for count.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	c0, t0, cpu0 := count.Load(), time.Now(), cpuSeconds(srv.pid())
	time.Sleep(window)
	c1, t1, cpu1 := count.Load(), time.Now(), cpuSeconds(srv.pid())
	wg.Wait()
	secs := t1.Sub(t0).Seconds()
	// Every packet the peer echoes was relayed twice: to the peer and back.
	r.pps = 2 * float64(c1-c0) / secs
	r.mbps = r.pps * float64(size) * 8 / 1e6
	r.cores = (cpu1 - cpu0) / secs
	for _, o := range outs {
		if m := reLost.FindStringSubmatch(o); m != nil {
			l, _ := strconv.Atoi(m[1])
			r.lost += l
		} else {
			return r, fmt.Errorf("uclient printed no loss figure:\n%s", tail(o, 20))
		}
		if ms := reSent.FindAllStringSubmatch(o, -1); len(ms) > 0 {
			s, _ := strconv.Atoi(ms[len(ms)-1][1])
			r.sent += s
		}
	}
	if r.sent > 0 {
		r.lossPct = 100 * float64(r.lost) / float64(r.sent)
	}
	return r, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func allocBench(args []string) error {
	fs := flag.NewFlagSet("allocations", flag.ContinueOnError)
	target := fs.Int("target", 19000, "allocations to hold")
	perProc := fs.Int("per-proc", 1900, "allocations per uclient process")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := setup()
	if err != nil {
		return err
	}
	defer os.RemoveAll(e.dir)
	for _, kind := range []string{"coturn", "longlink"} {
		held, perAlloc, err := e.allocRun(kind, *target, *perProc)
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		prefix := "turn"
		if kind == "coturn" {
			prefix = "coturn"
		}
		fmt.Printf("# %s: %d allocations held, %.1f KiB RSS per allocation\n", kind, held, perAlloc)
		fmt.Printf("RESULT %s_allocations_held %d allocations\n", prefix, held)
		fmt.Printf("RESULT %s_memory_per_allocation %.1f KiB\n", prefix, perAlloc)
	}
	return nil
}

// allocRun starts holder processes (pion clients, at most perProc
// allocations each, so that no process nears the open-files limit) and
// counts the allocations they hold; the server's RSS growth divided by that
// count is the memory per allocation.
func (e *env) allocRun(kind string, target, perProc int) (int, float64, error) {
	port := freePort()
	srv, err := e.server(kind, port, "")
	if err != nil {
		return 0, 0, err
	}
	defer srv.stop()
	time.Sleep(300 * time.Millisecond)
	baseRSS := rssKiB(srv.pid())
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	var held atomic.Int64
	var done sync.WaitGroup
	for started := 0; started < target; started += perProc {
		m := min(perProc, target-started)
		pr, pw, err := os.Pipe()
		if err != nil {
			return 0, 0, err
		}
		p, err := start(pw, "taskset", "-c", "1", e.self, "hold", fmt.Sprintf("127.0.0.1:%d", port), e.secret,
			strconv.Itoa(m), fmt.Sprintf("hold%d", started), fmt.Sprintf("127.0.0.%d", 2+len(procs)))
		pw.Close()
		if err != nil {
			return 0, 0, err
		}
		procs = append(procs, p)
		done.Add(1)
		go func() {
			defer done.Done()
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "held "); ok {
					n, _ := strconv.Atoi(v)
					held.Add(int64(n))
					return
				}
			}
		}()
	}
	finished := make(chan struct{})
	go func() { done.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(240 * time.Second):
		fmt.Printf("# %s: holders still allocating after 240 s\n", kind)
	}
	time.Sleep(2 * time.Second) // let the server settle
	n := int(held.Load())
	if n == 0 {
		return 0, 0, errors.New("no allocation held")
	}
	rss := rssKiB(srv.pid())
	fmt.Printf("# %s: %d allocations held, server RSS %.0f MiB (%.0f MiB at start), %d open files\n",
		kind, n, rss/1024, baseRSS/1024, openFiles(srv.pid()))
	return n, (rss - baseRSS) / float64(n), nil
}
