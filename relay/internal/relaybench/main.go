// Command relaybench measures the tunnel overhead on a clean loopback and
// prints RESULT lines (run it with `go run ./tools/bench relay`):
//
//   - round-trip latency p50 of a small message: direct TCP (baseline), through
//     edge → egress (one tunnel hop) and edge → relay → egress (two), per
//     transport; the added latency per hop is the difference;
//   - one stream's throughput through edge → egress against raw loopback TCP;
//   - CPU seconds per GB moved (whole process: client, edge, egress, sink).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/longlink/longlink/edge"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/pki"
	"github.com/longlink/longlink/relay"
)

var (
	samples  = flag.Int("samples", 3000, "round trips per latency measurement")
	duration = flag.Duration("duration", 3*time.Second, "length of each throughput measurement")
	only     = flag.String("transport", "", "measure only this transport (quic or kcp)")
	profile  = flag.String("cpuprofile", "", "write CPU profiles of the tunnel throughput measurements to this path + .quic / .kcp")
)

func main() {
	flag.Parse()
	fmt.Printf("# load average at start: %s\n", loadAvg())
	err := run()
	fmt.Printf("# load average at end: %s\n", loadAvg())
	if err != nil {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		os.Exit(1)
	}
}

// loadAvg reports the machine's load: the figures swing with it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func run() error {
	echo, err := startEcho()
	if err != nil {
		return err
	}
	sink, err := startSink()
	if err != nil {
		return err
	}
	direct, err := rtt([]string{echo}, *samples)
	if err != nil {
		return err
	}
	fmt.Printf("RESULT tcp_direct_rtt_p50 %.1f us\n", us(direct[0].p50))
	fmt.Printf("RESULT tcp_direct_rtt_p99 %.1f us\n", us(direct[0].p99))
	bps, cpu, err := throughput(sink, *duration, "")
	if err != nil {
		return err
	}
	fmt.Printf("RESULT tcp_loopback_stream_throughput %.2f Gbit/s\n", bps/1e9)
	fmt.Printf("RESULT tcp_loopback_cpu_seconds_per_gb %.2f s/GB\n", cpu)

	ca, err := pki.NewCA("bench")
	if err != nil {
		return err
	}
	for _, tr := range []string{"quic", "kcp"} {
		if *only != "" && *only != tr {
			continue
		}
		if err := measure(tr, ca, echo, sink); err != nil {
			return fmt.Errorf("%s: %w", tr, err)
		}
	}
	return nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func measure(tr string, ca *pki.CA, echo, sink string) error {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	deps := func(name string) relay.Deps {
		cert, err := ca.Issue(name, "127.0.0.1")
		if err != nil {
			panic(err)
		}
		return relay.Deps{Registerer: reg, TLS: pki.MutualTLS(cert, ca.Pool()), ClusterKey: []byte("bench-cluster-key-0123456789")}
	}
	ecfg := relay.DefaultEgress()
	ecfg.Cluster = "bench"
	ecfg.Listen = map[string]string{tr: "127.0.0.1:0"}
	ecfg.Services = map[string]relay.Service{
		"echo": {Kind: "link", Address: echo, ProxyProtocol: ptr(false)},
		"sink": {Kind: "http", Address: sink, ProxyProtocol: ptr(false)},
	}
	if tr == "kcp" {
		// One stream's throughput: the backbone profile without FEC.
		ecfg.Transport.KCP.Profile = kcpProfile()
		ecfg.Transport.KCP.DataShards, ecfg.Transport.KCP.ParityShards = 0, 0
	}
	eg, err := relay.NewEgress(ecfg, deps("egress"))
	if err != nil {
		return err
	}
	if err := eg.Start(ctx); err != nil {
		return err
	}
	defer eg.Shutdown(ctx)
	egHop := relay.Hop{Name: "egress", Transport: tr, Address: eg.Addr(tr).String()}

	rcfg := relay.Default()
	rcfg.Name = "relay"
	rcfg.Listen = map[string]string{tr: "127.0.0.1:0"}
	rcfg.Transport = ecfg.Transport
	rcfg.Routing.Routes = []relay.Route{{Cluster: "bench", NextHops: []relay.Hop{egHop}}}
	rn, err := relay.New(rcfg, deps("relay"))
	if err != nil {
		return err
	}
	if err := rn.Start(ctx); err != nil {
		return err
	}
	defer rn.Shutdown(ctx)
	relayHop := relay.Hop{Name: "relay", Transport: tr, Address: rn.Addr(tr).String()}
	if err := waitPath(rn.Router(), "relay"); err != nil {
		return err
	}

	newEdge := func(name string, hop relay.Hop) (*edge.Edge, error) {
		cfg := edge.Default()
		cfg.Name = name
		cfg.Cluster = "bench"
		cfg.Link = edge.TCPListener{Listen: "127.0.0.1:0", Service: "echo"}
		cfg.WebLink = edge.TCPListener{Listen: "127.0.0.1:0", Service: "sink"}
		cfg.Transport = ecfg.Transport
		cfg.DrainPeriod = config.Duration(0)
		cfg.Routing.Routes = []relay.Route{{Cluster: "bench", NextHops: []relay.Hop{hop}}}
		d := deps(name)
		e, err := edge.New(cfg, edge.Deps{Registerer: reg, TLS: d.TLS, ClusterKey: d.ClusterKey})
		if err != nil {
			return nil, err
		}
		if err := e.Start(ctx); err != nil {
			return nil, err
		}
		if err := waitPath(e.Router(), name); err != nil {
			return nil, err
		}
		return e, nil
	}
	one, err := newEdge("edge-1hop", egHop)
	if err != nil {
		return err
	}
	defer one.Shutdown(ctx)
	two, err := newEdge("edge-2hop", relayHop)
	if err != nil {
		return err
	}
	defer two.Shutdown(ctx)

	// The three paths take turns, so that each sees the same machine load.
	r, err := rtt([]string{echo, one.Addr("link").String(), two.Addr("link").String()}, *samples)
	if err != nil {
		return err
	}
	d, p1, p2 := r[0], r[1], r[2]
	fmt.Printf("RESULT %s_edge_egress_rtt_p50 %.1f us\n", tr, us(p1.p50))
	fmt.Printf("RESULT %s_edge_egress_rtt_p99 %.1f us\n", tr, us(p1.p99))
	fmt.Printf("RESULT %s_edge_relay_egress_rtt_p50 %.1f us\n", tr, us(p2.p50))
	fmt.Printf("RESULT %s_edge_relay_egress_rtt_p99 %.1f us\n", tr, us(p2.p99))
	fmt.Printf("RESULT %s_edge_added_latency_p50 %.1f us\n", tr, us(p1.p50-d.p50))
	fmt.Printf("RESULT %s_relay_added_latency_per_hop_p50 %.1f us\n", tr, us(p2.p50-p1.p50))
	// p99 of the paired differences: each two-hop round trip against the
	// one-hop round trip taken just before it.
	fmt.Printf("RESULT %s_relay_added_latency_per_hop_p99 %.1f us\n", tr, us(percentile(pairDiff(p2.all, p1.all), 99)))

	bps, cpu, err := throughput(one.Addr("weblink").String(), *duration, tr)
	if err != nil {
		return err
	}
	fmt.Printf("RESULT %s_one_hop_stream_throughput %.2f Gbit/s\n", tr, bps/1e9)
	fmt.Printf("RESULT %s_one_hop_cpu_seconds_per_gb %.2f s/GB\n", tr, cpu)
	if tr == "kcp" {
		snmp := kcp.DefaultSnmp.Copy()
		rejected := 0.0
		if mfs, err := reg.Gather(); err == nil {
			for _, mf := range mfs {
				if mf.GetName() == "longlink_relay_kcp_rejected_packets_total" {
					for _, m := range mf.GetMetric() {
						rejected += m.GetCounter().GetValue()
					}
				}
			}
		}
		fmt.Printf("# kcp: packets rejected by the sealed layer: %.0f\n", rejected)
		fmt.Printf("# kcp: out segments %d, retransmitted %d (fast %d, early %d, lost %d), in errors %d\n",
			snmp.OutSegs, snmp.RetransSegs, snmp.FastRetransSegs, snmp.EarlyRetransSegs, snmp.LostSegs, snmp.InErrs)
	}
	return nil
}

// waitPath waits until r has a path to the bench cluster.
func waitPath(r *relay.Router, name string) error {
	deadline := time.Now().Add(5 * time.Second)
	for r.Primary("bench") == "" {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: path never came up", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func kcpProfile() string {
	if p := os.Getenv("RELAYBENCH_KCP_PROFILE"); p != "" {
		return p
	}
	return "backbone"
}

func ptr[T any](v T) *T { return &v }

type rtts struct {
	p50, p99 time.Duration
	all      []time.Duration // in the order taken
}

// pairDiff returns a[i]-b[i].
func pairDiff(a, b []time.Duration) []time.Duration {
	d := make([]time.Duration, min(len(a), len(b)))
	for i := range d {
		d[i] = a[i] - b[i]
	}
	return d
}

// percentile returns the p-th percentile of d (sorted in place).
func percentile(d []time.Duration, p int) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)*p/100]
}

// rtt measures the median and 99th percentile round trip of a 64-byte
// message on one connection to each address (echo services); the
// connections take turns.
func rtt(addrs []string, n int) ([]rtts, error) {
	conns := make([]net.Conn, len(addrs))
	for i, a := range addrs {
		c, err := net.Dial("tcp", a)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		_ = c.(*net.TCPConn).SetNoDelay(true)
		conns[i] = c
	}
	msg := make([]byte, 64)
	buf := make([]byte, 64)
	rt := make([][]time.Duration, len(addrs))
	for i := 0; i < n+100; i++ {
		for k, c := range conns {
			start := time.Now()
			if _, err := c.Write(msg); err != nil {
				return nil, err
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				return nil, err
			}
			if i >= 100 { // warm-up
				rt[k] = append(rt[k], time.Since(start))
			}
		}
	}
	out := make([]rtts, len(addrs))
	for k, r := range rt {
		all := append([]time.Duration(nil), r...)
		out[k] = rtts{p50: percentile(r, 50), p99: percentile(r, 99), all: all}
	}
	return out, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// throughput writes into a sink through addr for d and returns bits/s and
// the process's CPU seconds per GB. With -cpuprofile, a tunnel's measurement
// (prof names the transport) is profiled.
func throughput(addr string, d time.Duration, prof string) (float64, float64, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	// Warm up, then measure.
	warm := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(warm) {
		if _, err := c.Write(buf); err != nil {
			return 0, 0, err
		}
	}
	if prof != "" && *profile != "" {
		f, err := os.Create(*profile + "." + prof)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, 0, err
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuTime()
	start := time.Now()
	var n int64
	for time.Since(start) < d {
		k, err := c.Write(buf)
		n += int64(k)
		if err != nil {
			return 0, 0, err
		}
	}
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	return float64(n*8) / el.Seconds(), cpu.Seconds() / (float64(n) / 1e9), nil
}

func startEcho() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*net.TCPConn).SetNoDelay(true)
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String(), nil
}

func startSink() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 256<<10)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), nil
}
