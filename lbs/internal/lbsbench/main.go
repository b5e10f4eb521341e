// Command lbsbench measures the LBS front ends on this machine and prints
// RESULT lines for tools/bench:
//
//	go run ./lbs/internal/lbsbench dns    # the DNS front end under queries with ECS from many subnets (Go generator, dnsload.go) and under dnsperf (+ bare UDP echo baselines)
//	go run ./lbs/internal/lbsbench http   # its own HTTP load generator against /v1/lbs (+ a bare net/http baseline)
//
// The server runs as a child process pinned to CPU 0 (taskset, GOMAXPROCS=1)
// and the load (a generator of its own, or dnsperf) runs pinned to CPU 1. Every
// run is bounded in time and binds only to 127.0.0.1.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/geo/mmdbbuild"
	"github.com/longlink/longlink/lbs"
	"github.com/longlink/longlink/pkg/config"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lbsbench dns|http|serve|echo|echo-batch|bare-http [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "echo":
		err = echo()
	case "echo-batch":
		err = echoBatch()
	case "bare-http":
		err = bareHTTP(os.Args[2:])
	case "dns":
		err = benchDNS(os.Args[2:])
	case "http":
		err = benchHTTP(os.Args[2:])
	case "load":
		err = httpLoad(os.Args[2:])
	case "dnsload":
		err = runDNSLoad(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lbsbench:", err)
		os.Exit(1)
	}
}

// repoRoot finds the module root (for testdata) from the working directory.
func repoRoot() string {
	d, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		p := filepath.Dir(d)
		if p == d {
			return "."
		}
		d = p
	}
}

// serve runs a single-member LBS on free ports with the test policy and
// geo database (or the one -world names), prints "READY <client addr> <dns
// addr>" and runs until stdin closes; then it prints the geo lookups made
// meanwhile by where their answer came from, "GEO cache=N db=N none=N
// override=N". -cpuprofile writes the server's CPU profile over that time.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the server to this file")
	world := fs.String("world", "", "geo database CSV (default: tools/geodb/testdata/world.csv)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root := repoRoot()
	dir, err := os.MkdirTemp("", "lbsbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *world == "" {
		*world = filepath.Join(root, "tools/geodb/testdata/world.csv")
	}
	city, asn := filepath.Join(dir, "city.mmdb"), filepath.Join(dir, "asn.mmdb")
	if err := mmdbbuild.BuildFile(*world, city, asn); err != nil {
		return err
	}
	cfg := lbs.Default()
	cfg.NodeID = "bench"
	cfg.DataDir = dir
	cfg.ClientListen, cfg.AdminListen, cfg.RaftListen, cfg.DNS.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.DNS.Zone = "lbs.test."
	cfg.DNS.Sockets = 1
	cfg.DNS.Workers = 2
	cfg.DNS.RateLimit = -1 // one client address: RRL would measure itself
	cfg.TLS.CADir = filepath.Join(dir, "ca")
	cfg.AdminToken = config.NewSecret("bench-admin-token-0123456789")
	cfg.TrustedProxies = []string{"127.0.0.0/8"}
	cfg.Geo.CityDB, cfg.Geo.ASNDB = city, asn
	cfg.Cluster.Bootstrap = true
	cfg.InitialPolicy = filepath.Join(root, "lbs/testdata/policy.yaml")
	reg := prometheus.NewRegistry()
	l, err := lbs.New(cfg, lbs.Deps{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registerer: reg})
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := l.Start(ctx); err != nil {
		return err
	}
	defer l.Shutdown(ctx)
	// wait until the policy is in
	for range 500 {
		resp, err := http.Get("http://" + l.ClientAddr().String() + "/v1/lbs?appkey=demo")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	before := geoLookups(reg)
	fmt.Printf("READY %s %s\n", l.ClientAddr(), l.DNSAddr())
	io.Copy(io.Discard, os.Stdin)
	after := geoLookups(reg)
	fmt.Print("GEO")
	for _, src := range []string{"cache", "db", "none", "override"} {
		fmt.Printf(" %s=%.0f", src, after[src]-before[src])
	}
	fmt.Println()
	return nil
}

// geoLookups reads longlink_geo_lookups_total by source from reg.
func geoLookups(reg *prometheus.Registry) map[string]float64 {
	out := map[string]float64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "longlink_geo_lookups_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "source" {
					out[lp.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// echo is the baseline: a bare UDP responder that flips the QR bit of each
// query and sends it back (no parsing, no selection).
func echo() error {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("READY - %s\n", pc.LocalAddr())
	go func() { io.Copy(io.Discard, os.Stdin); pc.Close() }()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if n >= 12 {
					buf[2] |= 0x80
					pc.WriteTo(buf[:n], from)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// echoBatch is the baseline for a server that moves datagrams in batches
// (the LBS's UDP loop): the same responder as echo, with recvmmsg and
// sendmmsg of up to 32 datagrams per system call.
func echoBatch() error {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("READY - %s\n", pc.LocalAddr())
	go func() { io.Copy(io.Discard, os.Stdin); pc.Close() }()
	bc := ipv4.NewPacketConn(pc)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms := make([]ipv4.Message, 32)
			for i := range ms {
				ms[i].Buffers = [][]byte{make([]byte, 1500)}
			}
			out := make([]ipv4.Message, len(ms))
			for i := range out {
				out[i].Buffers = make([][]byte, 1)
			}
			for {
				n, err := bc.ReadBatch(ms, 0)
				if err != nil {
					return
				}
				k := 0
				for _, m := range ms[:n] {
					if m.N >= 12 {
						b := m.Buffers[0][:m.N]
						b[2] |= 0x80
						out[k].Buffers[0], out[k].Addr = b, m.Addr
						k++
					}
				}
				for sent := 0; sent < k; {
					w, err := bc.WriteBatch(out[sent:k], 0)
					if err != nil || w <= 0 {
						w = 1
					}
					sent += w
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addrs []string
	// after are the lines it prints after READY, complete once it exits.
	after     []string
	afterDone chan struct{}
}

// startPinned runs this program with args on one CPU and waits for READY.
func startPinned(cpu string, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("taskset", append([]string{"-c", cpu, exe}, args...)...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "READY" {
			c := &child{cmd: cmd, stdin: in, addrs: f[1:], afterDone: make(chan struct{})}
			go func() {
				defer close(c.afterDone)
				for sc.Scan() {
					c.after = append(c.after, sc.Text())
				}
			}()
			return c, nil
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, fmt.Errorf("%v: did not become ready", args)
}

// stop closes the child's stdin, waits for it to exit (killing it after
// 5 s) and returns what it printed after READY.
func (c *child) stop() []string {
	c.stdin.Close()
	done := make(chan struct{})
	go func() { <-c.afterDone; c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
	return c.after
}

var qpsRE = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
var lostRE = regexp.MustCompile(`Queries lost:\s+(\d+)`)

// dnsperf runs dnsperf on CPU 1 and returns its rate, the queries it lost
// and the share of a core it used.
func dnsperf(addr, queryFile string, seconds int, ecsHex string) (float64, int, float64, error) {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-c", "1", "dnsperf", "-s", host, "-p", port, "-d", queryFile, "-l", strconv.Itoa(seconds), "-c", "8", "-q", "200", "-t", "2", "-S", "0"}
	if ecsHex != "" {
		args = append(args, "-E", "8:"+ecsHex)
	}
	t0 := time.Now()
	cmd := exec.Command("taskset", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("dnsperf: %v\n%s", err, out)
	}
	cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds() / time.Since(t0).Seconds()
	fmt.Fprint(os.Stderr, string(out))
	m := qpsRE.FindSubmatch(out)
	if m == nil {
		return 0, 0, 0, fmt.Errorf("dnsperf output without a rate:\n%s", out)
	}
	qps, _ := strconv.ParseFloat(string(m[1]), 64)
	lost := 0
	if l := lostRE.FindSubmatch(out); l != nil {
		lost, _ = strconv.Atoi(string(l[1]))
	}
	return qps, lost, cpu, nil
}

func benchDNS(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	seconds := fs.Int("seconds", 15, "length of each run")
	networks := fs.Int("networks", 16384, "networks (/18s) of the synthetic geo database of the many-subnet runs")
	subnets := fs.Int("subnets", 100000, "distinct /24 client subnets the Go generator draws from that database")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := exec.LookPath("dnsperf"); err != nil {
		return fmt.Errorf("dnsperf not installed (tools/testdeps/install.sh installs it)")
	}
	dir, err := os.MkdirTemp("", "lbsbench-dns-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	qf := filepath.Join(dir, "queries.txt")
	var q strings.Builder
	for _, dq := range dnsLoadQueries {
		fmt.Fprintf(&q, "%s %s\n", dq.name, dns.TypeToString[dq.qtype])
	}
	if err := os.WriteFile(qf, []byte(q.String()), 0o644); err != nil {
		return err
	}
	world := filepath.Join(dir, "world.csv")
	if err := writeWorldCSV(world, syntheticWorld(*networks, 1)); err != nil {
		return err
	}
	fmt.Printf("# geo database: %d synthetic /18 networks over %d places; the Go generator draws %d distinct /24 client subnets from it, one at random per query\n",
		*networks, len(worldCities), *subnets)

	// The LBS with client subnets from many places (Go generator), then
	// with the one subnet dnsperf can send (ECS 9.9.9.0/24, Frankfurt in
	// the test world: family 1, source 24, scope 0, 3 address bytes), then
	// the bare echo baselines: under the Go generator (its ceiling) and
	// under dnsperf.
	runs := []struct{ mode, figure, load, ecs string }{
		{"serve", "lbs_dns_many_subnets", "go", ""},
		{"serve", "lbs_dns", "dnsperf", "00011800090909"},
		{"echo-batch", "go_udp_echo_batched_go_load", "go", ""},
		{"echo", "go_udp_echo", "dnsperf", ""},
		{"echo-batch", "go_udp_echo_batched", "dnsperf", ""},
	}
	for _, r := range runs {
		srvArgs := []string{r.mode}
		if r.mode == "serve" && r.load == "go" {
			srvArgs = append(srvArgs, "-world", world)
		}
		c, err := startPinned("0", srvArgs...)
		if err != nil {
			return err
		}
		cpu0 := cpuSeconds(c.cmd.Process.Pid)
		t0 := time.Now()
		var qps, loadCPU float64
		var lost int
		if r.load == "go" {
			qps, lost, loadCPU, err = goDNSLoad(c.addrs[1], world, r.figure, *seconds, *subnets, r.mode == "serve")
		} else {
			qps, lost, loadCPU, err = dnsperf(c.addrs[1], qf, *seconds, r.ecs)
		}
		share := (cpuSeconds(c.cmd.Process.Pid) - cpu0) / time.Since(t0).Seconds()
		after := c.stop()
		if err != nil {
			return err
		}
		fmt.Printf("RESULT %s_answers_per_core %.0f answers/s\n", r.figure, qps)
		if r.mode == "serve" {
			fmt.Printf("RESULT %s_queries_lost %d queries\n", r.figure, lost)
			for _, line := range after {
				if strings.HasPrefix(line, "GEO ") {
					g := parseKV(line)
					hit, _ := strconv.ParseFloat(g["cache"], 64)
					db, _ := strconv.ParseFloat(g["db"], 64)
					none, _ := strconv.ParseFloat(g["none"], 64)
					fmt.Printf("# geo lookups of the LBS in this run: %s\n", strings.TrimPrefix(line, "GEO "))
					if hit+db+none > 0 {
						fmt.Printf("RESULT %s_geo_cache_hit_ratio %.4f ratio\n", r.figure, hit/(hit+db+none))
					}
				}
			}
		}
		// when the server's core is not saturated, the load generator (or
		// the other processes on its core) bounds the rate: the answers per
		// second of server CPU then say what one core would do
		fmt.Printf("RESULT %s_server_cpu %.2f cores\n", r.figure, share)
		fmt.Printf("RESULT %s_%s_cpu %.2f cores\n", r.figure, map[string]string{"go": "loadgen", "dnsperf": "dnsperf"}[r.load], loadCPU)
		if share > 0 {
			fmt.Printf("RESULT %s_answers_per_cpu_second %.0f answers/s\n", r.figure, qps/share)
		}
	}
	return nil
}

// goDNSLoad runs the Go generator (dnsload) on CPU 1 against addr and
// returns the answers per second, the queries lost and the share of a core
// it used; it prints its latency as RESULT lines under figure, and with
// answers the share of responses that held an answer.
func goDNSLoad(addr, world, figure string, seconds, subnets int, answers bool) (float64, int, float64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, 0, 0, err
	}
	t0 := time.Now()
	cmd := exec.Command("taskset", "-c", "1", exe, "dnsload", "-addr", addr, "-world", world,
		"-seconds", strconv.Itoa(seconds), "-subnets", strconv.Itoa(subnets))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("dnsload: %v\n%s", err, out)
	}
	cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds() / time.Since(t0).Seconds()
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "DNSLOAD ") {
			continue
		}
		fmt.Printf("# %s\n", line)
		m := parseKV(line)
		responses, _ := strconv.ParseFloat(m["responses"], 64)
		el, _ := strconv.ParseFloat(m["seconds"], 64)
		lost, _ := strconv.Atoi(m["lost"])
		if el <= 0 {
			break
		}
		if answers {
			answered, _ := strconv.ParseFloat(m["answered"], 64)
			fmt.Printf("RESULT %s_answered_ratio %.4f ratio\n", figure, answered/max(responses, 1))
		}
		fmt.Printf("RESULT %s_latency_p50 %s ms\n", figure, m["p50_ms"])
		fmt.Printf("RESULT %s_latency_p99 %s ms\n", figure, m["p99_ms"])
		return responses / el, lost, cpu, nil
	}
	return 0, 0, 0, fmt.Errorf("dnsload printed no DNSLOAD line:\n%s", out)
}

// cpuSeconds is the user and system CPU time of a process so far (0 if it
// cannot be read).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// fields after the command name, which is in parentheses and may hold spaces
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}

func benchHTTP(args []string) error {
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	seconds := fs.Int("seconds", 15, "load duration")
	conns := fs.Int("conns", 64, "keep-alive connections")
	pipeline := fs.Int("pipeline", 1, "requests in flight per connection (HTTP/1.1 pipelining)")
	cpuProfile := fs.String("cpuprofile", "", "write the LBS server's CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "lbsbench-http-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	body := filepath.Join(dir, "answer.json")
	// the LBS first; the baseline serves the LBS's own answer to the same
	// request, so both put the same bytes on the wire
	runs := []struct{ figure, mode string }{{"lbs_http", "serve"}, {"bare_http", "bare-http"}}
	for _, r := range runs {
		srvArgs := []string{r.mode}
		if r.mode == "bare-http" {
			srvArgs = append(srvArgs, "-body", body)
		} else if *cpuProfile != "" {
			srvArgs = append(srvArgs, "-cpuprofile", *cpuProfile)
		}
		srv, err := startPinned("0", srvArgs...)
		if err != nil {
			return err
		}
		if r.mode == "serve" {
			if err := saveAnswer("http://"+srv.addrs[0]+"/v1/lbs?appkey=demo&sdk=5.1.0", body); err != nil {
				srv.stop()
				return err
			}
		}
		err = runLoad(srv, r.figure, *seconds, *conns, *pipeline)
		srv.stop()
		if err != nil {
			return err
		}
	}
	return nil
}

// runLoad runs the load generator on CPU 1 against srv and prints its
// RESULT lines under figure, with the CPU share of the server and of the
// generator: a generator near a whole core would mean it, not the server,
// sets the rate.
func runLoad(srv *child, figure string, seconds, conns, pipeline int) error {
	exe, _ := os.Executable()
	cmd := exec.Command("taskset", "-c", "1", exe, "load", "-addr", srv.addrs[0], "-figure", figure,
		"-seconds", strconv.Itoa(seconds), "-conns", strconv.Itoa(conns), "-pipeline", strconv.Itoa(pipeline))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cpu0 := cpuSeconds(srv.cmd.Process.Pid)
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return err
	}
	el := time.Since(t0).Seconds()
	fmt.Printf("RESULT %s_server_cpu %.2f cores\n", figure, (cpuSeconds(srv.cmd.Process.Pid)-cpu0)/el)
	fmt.Printf("RESULT %s_loadgen_cpu %.2f cores\n", figure, (cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime()).Seconds()/el)
	return nil
}

// saveAnswer stores the body of one 200 answer from url in file.
func saveAnswer(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return os.WriteFile(file, b, 0o644)
}

// bareHTTP is the baseline: a net/http server that answers every request
// with a fixed JSON body (the LBS's answer, read once from -body) and the
// LBS's headers, with no parsing, selection or encoding: what net/http, the
// loopback and the load generator allow on this machine at all.
func bareHTTP(args []string) error {
	fs := flag.NewFlagSet("bare-http", flag.ContinueOnError)
	bodyFile := fs.String("body", "", "file with the body to answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	length := []string{strconv.Itoa(len(body))}
	ctype, noStore := []string{"application/json"}, []string{"no-store"}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"], h["Cache-Control"], h["Content-Length"] = ctype, noStore, length
		w.Write(body)
	})}
	fmt.Printf("READY %s -\n", ln.Addr())
	go func() { io.Copy(io.Discard, os.Stdin); srv.Close() }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// httpLoad is the HTTP load generator: keep-alive clients asking for the
// demo app from varied client addresses (X-Forwarded-For, trusted from
// loopback), counting answers and latency. With -pipeline N a connection
// writes N requests at once and then reads the N responses (HTTP/1.1
// pipelining), which costs the generator fewer system calls per answer.
func httpLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	addr := fs.String("addr", "", "server address")
	figure := fs.String("figure", "lbs_http", "prefix of the RESULT lines")
	seconds := fs.Int("seconds", 15, "duration")
	conns := fs.Int("conns", 64, "connections")
	pipeline := fs.Int("pipeline", 1, "requests written at once per connection")
	if err := fs.Parse(args); err != nil {
		return err
	}
	depth := max(*pipeline, 1)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, time.Duration(*seconds)*time.Second)
	defer cancel2()
	ips := []string{"9.9.9.9", "8.8.8.8", "101.0.3.4", "1.1.1.1", "110.1.2.3", "177.1.2.3", "196.1.2.3", "81.2.69.1"}
	var ok, bad atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	// a minimal HTTP/1.1 keep-alive client: the generator must stay lighter
	// than the server it measures. batches[k] is depth requests starting
	// at client address k.
	batches := make([][]byte, len(ips))
	for k := range ips {
		for j := range depth {
			batches[k] = append(batches[k], "GET /v1/lbs?appkey=demo&sdk=5.1.0 HTTP/1.1\r\nHost: lbs\r\nX-Forwarded-For: "+ips[(k+j)%len(ips)]+"\r\n\r\n"...)
		}
	}
	start := time.Now()
	for i := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<16)
			defer func() {
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			}()
			for ctx.Err() == nil {
				c, err := net.Dial("tcp", *addr)
				if err != nil {
					bad.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				br := bufio.NewReaderSize(c, 16<<10)
			conn:
				for n := 0; ctx.Err() == nil; n++ {
					c.SetDeadline(time.Now().Add(5 * time.Second))
					t0 := time.Now()
					if _, err := c.Write(batches[(i+n)%len(batches)]); err != nil {
						break
					}
					for j := range depth {
						status, err := readResponse(br)
						if err != nil {
							if ctx.Err() == nil {
								bad.Add(1)
							}
							break conn
						}
						if status != 200 {
							bad.Add(1)
							continue
						}
						ok.Add(1)
						if (n+j)%8 == 0 {
							local = append(local, time.Since(t0))
						}
					}
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	slices.Sort(lat)
	p := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(float64(len(lat)-1)*q)].Microseconds()) / 1000
	}
	fmt.Fprintf(os.Stderr, "load %s: %d ok, %d failed in %.1fs over %d connections, %d in flight each (GOMAXPROCS %d)\n",
		*figure, ok.Load(), bad.Load(), el, *conns, depth, runtime.GOMAXPROCS(0))
	fmt.Printf("RESULT %s_answers_per_second %.0f answers/s\n", *figure, float64(ok.Load())/el)
	fmt.Printf("RESULT %s_latency_p50 %.2f ms\n", *figure, p(0.5))
	fmt.Printf("RESULT %s_latency_p99 %.2f ms\n", *figure, p(0.99))
	fmt.Printf("RESULT %s_failed %d requests\n", *figure, bad.Load())
	return nil
}

// readResponse reads one HTTP/1.1 response with a Content-Length body.
func readResponse(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 {
		return 0, fmt.Errorf("short status line")
	}
	status, _ := strconv.Atoi(string(line[9:12]))
	length := -1
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(h) <= 2 {
			break
		}
		if len(h) > 16 && strings.EqualFold(string(h[:15]), "Content-Length:") {
			length, _ = strconv.Atoi(strings.TrimSpace(string(h[15:])))
		}
	}
	if length < 0 {
		return 0, fmt.Errorf("no Content-Length")
	}
	_, err = br.Discard(length)
	return status, err
}
