package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

// proxyEcho is a TCP service that requires a PROXY v2 header, reports the
// source address it carried, then echoes.
func proxyEcho(t *testing.T) (addr string, sources <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				h, err := proxyproto.Read(br)
				if err != nil {
					ch <- "error: " + err.Error()
					return
				}
				if h.SourceAddr == nil {
					ch <- "local"
				} else {
					ch <- h.SourceAddr.String()
				}
				_, _ = io.Copy(c, br)
			}()
		}
	}()
	return ln.Addr().String(), ch
}

func udpEcho(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, a, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte("echo:"), buf[:n]...), a)
		}
	}()
	return pc.LocalAddr().String()
}

func fastRouting(routes ...Route) RoutingConfig {
	r := DefaultRouting()
	r.Routes = routes
	r.Probe.Interval = config.Duration(20 * time.Millisecond)
	r.Probe.Timeout = config.Duration(100 * time.Millisecond)
	return r
}

type memChain struct {
	router *Router
	relays []*Node
	egress *Node
	tcp    <-chan string
}

// newMemChain builds router → relay-a | relay-b → egress over Mem
// transports; edits change the router's routing config.
func newMemChain(t *testing.T, edits ...func(*RoutingConfig)) *memChain {
	t.Helper()
	return newMemChainVia(t, nil, edits...)
}

// newMemChainVia is newMemChain with the router's transport wrapped by
// wrap (when not nil), e.g. to stall one relay.
func newMemChainVia(t *testing.T, wrap func(transport.Transport) transport.Transport, edits ...func(*RoutingConfig)) *memChain {
	t.Helper()
	mn := transport.NewMemNetwork()
	tcpAddr, sources := proxyEcho(t)
	udpAddr := udpEcho(t)
	ctx := context.Background()

	ecfg := DefaultEgress()
	ecfg.Name = "egress"
	ecfg.Listen = map[string]string{"mem": "egress"}
	ecfg.Cluster = "demo"
	ecfg.Services = map[string]Service{
		"link":        {Kind: "link", Address: tcpAddr},
		"link-frames": {Kind: "link-frames", Address: tcpAddr},
		"media":       {Kind: "udp", Address: udpAddr},
	}
	eg, err := NewEgress(ecfg, Deps{Transports: map[string]transport.Transport{"mem": mn.Transport("egress")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := eg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eg.Shutdown(ctx) })
	ch := &memChain{egress: eg, tcp: sources}
	for _, name := range []string{"relay-a", "relay-b"} {
		cfg := Default()
		cfg.Name = name
		cfg.Listen = map[string]string{"mem": name}
		cfg.Routing = fastRouting(Route{Cluster: "demo", NextHops: []Hop{{Name: "egress", Transport: "mem", Address: "egress"}}})
		n, err := New(cfg, Deps{Transports: map[string]transport.Transport{"mem": mn.Transport(name)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Shutdown(ctx) })
		ch.relays = append(ch.relays, n)
	}
	rc := fastRouting(Route{Cluster: "demo", NextHops: []Hop{
		{Name: "relay-a", Transport: "mem", Address: "relay-a"},
		{Name: "relay-b", Transport: "mem", Address: "relay-b"},
	}})
	for _, e := range edits {
		e(&rc)
	}
	var edge transport.Transport = mn.Transport("edge")
	if wrap != nil {
		edge = wrap(edge)
	}
	ch.router = NewRouter(rc, map[string]transport.Transport{"mem": edge}, NewMetrics(prometheus.NewRegistry(), nil), discardLog())
	ch.router.Start()
	t.Cleanup(ch.router.Shutdown)
	waittest.Until(t, 2*time.Second, "a primary path", func() bool { return ch.router.Primary("demo") != "" })
	for _, n := range ch.relays {
		waittest.Until(t, 2*time.Second, "the relays' path to the egress", func() bool { return n.router.Primary("demo") != "" })
	}
	return ch
}

// echoHello writes "hello" into tun and reads the echo.
func echoHello(t *testing.T, tun *Tunnel) {
	t.Helper()
	if _, err := tun.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(tun, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo %q %v", buf, err)
	}
}

func TestChainMem(t *testing.T) {
	ch := newMemChain(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := netip.MustParseAddrPort("198.51.100.9:40000")

	t.Run("tcp with PROXY v2", func(t *testing.T) {
		tun, err := ch.router.OpenStream(ctx, wire.Header{Kind: wire.KindLink, Cluster: "demo", Service: "link", Client: client})
		if err != nil {
			t.Fatal(err)
		}
		defer tun.Close()
		echoHello(t, tun)
		if src := <-ch.tcp; src != client.String() {
			t.Fatalf("PROXY source = %s, want %s", src, client)
		}
	})
	t.Run("udp flow", func(t *testing.T) {
		got := make(chan string, 4)
		f, err := ch.router.OpenFlow(ctx, wire.Header{Kind: wire.KindUDP, Cluster: "demo", Service: "media", Client: client},
			func(p []byte) { got <- string(p) })
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Status(); err != nil {
			t.Fatal(err)
		}
		f.Send([]byte("ping"))
		select {
		case g := <-got:
			if g != "echo:ping" {
				t.Fatalf("got %q", g)
			}
		case <-ctx.Done():
			t.Fatal("no echo")
		}
	})
	t.Run("unknown service", func(t *testing.T) {
		tun, err := ch.router.OpenStream(ctx, wire.Header{Kind: wire.KindLink, Cluster: "demo", Service: "nope"})
		if err != nil {
			t.Fatal(err)
		}
		defer tun.Close()
		var se *wire.StatusError
		if err := tun.Status(); !errors.As(err, &se) || se.Status != wire.StatusNoService {
			t.Fatalf("status = %v", err)
		}
	})
	t.Run("unknown cluster", func(t *testing.T) {
		_, err := ch.router.OpenStream(ctx, wire.Header{Kind: wire.KindLink, Cluster: "other", Service: "link"})
		if !errors.Is(err, ErrNoRoute) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("hop budget", func(t *testing.T) {
		// Budget 1 reaches the relay, which has no budget left to forward.
		tun, err := ch.router.OpenStream(ctx, wire.Header{Kind: wire.KindLink, Cluster: "demo", Service: "link", Hops: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer tun.Close()
		var se *wire.StatusError
		if err := tun.Status(); !errors.As(err, &se) || se.Status != wire.StatusHops {
			t.Fatalf("status = %v", err)
		}
	})
}

// Kill the primary relay: flows on it end, new flows take the other path
// within 3 s.
// A relay on the path of a stream stops: the stream resumes on the other
// relay and goes on (resume, the default); a new flow takes the new
// primary at once. Without resume the stream ends with its path.
func TestFailoverMem(t *testing.T) {
	for _, resume := range []bool{true, false} {
		t.Run(fmt.Sprintf("resume %v", resume), func(t *testing.T) {
			ch := newMemChain(t, func(rc *RoutingConfig) { rc.Resume.Enabled = resume })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			primary := ch.router.Primary("demo")
			tun, err := ch.router.OpenStream(ctx, wire.Header{Kind: wire.KindLink, Cluster: "demo", Service: "link"})
			if err != nil {
				t.Fatal(err)
			}
			defer tun.Close()
			if tun.Path() != primary {
				t.Fatalf("stream took %s, primary is %s", tun.Path(), primary)
			}
			_, _ = tun.Write([]byte("x\n"))
			if _, err := io.ReadFull(tun, make([]byte, 2)); err != nil {
				t.Fatal(err)
			}
			var dead *Node
			for _, n := range ch.relays {
				if n.cfg.Name == primary {
					dead = n
				}
			}
			killed := time.Now()
			_ = dead.Shutdown(ctx)
			_, _ = tun.Write([]byte("y\n"))
			got := make([]byte, 2)
			_, err = io.ReadFull(tun, got)
			switch {
			case resume && (err != nil || string(got) != "y\n"):
				t.Fatalf("the stream did not go on over the other relay: %q %v", got, err)
			case !resume && err == nil:
				t.Fatal("flow on the dead relay still open")
			}
			waittest.Until(t, 3*time.Second, "a new primary path", func() bool {
				p := ch.router.Primary("demo")
				return p != "" && p != primary
			})
			tun2, err := ch.router.OpenStream(ctx, wire.Header{Kind: wire.KindLink, Cluster: "demo", Service: "link"})
			if err != nil {
				t.Fatal(err)
			}
			defer tun2.Close()
			_, _ = tun2.Write([]byte("z"))
			if _, err := io.ReadFull(tun2, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			if time.Since(killed) > 3*time.Second {
				t.Fatalf("failover took %s", time.Since(killed))
			}
			if tun2.Path() == primary {
				t.Fatal("new flow used the dead path")
			}
		})
	}
}

func TestRouterHysteresis(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := NewRouter(fastRouting(), nil, NewMetrics(reg, nil), discardLog())
	a := newPeer(r, Hop{Name: "a", Transport: "mem", Address: "a"}, nil)
	b := newPeer(r, Hop{Name: "b", Transport: "mem", Address: "b"}, nil)
	rs := &routeState{route: Route{Cluster: "c"}, hops: []*peer{a, b}}
	r.routes["c"] = rs
	set := func(p *peer, rtt time.Duration) {
		p.mu.Lock()
		p.srtt = rtt.Seconds()
		p.mu.Unlock()
		p.up.Store(true)
	}
	set(a, 50*time.Millisecond)
	set(b, 60*time.Millisecond)
	r.reselect()
	if rs.primary.Load() != a || rs.backup.Load() != b {
		t.Fatal("initial choice wrong")
	}
	set(b, 45*time.Millisecond) // 10% better: not enough
	r.reselect()
	if rs.primary.Load() != a {
		t.Fatal("switched on a small gain")
	}
	set(b, 30*time.Millisecond) // 40% better: switch
	r.reselect()
	if rs.primary.Load() != b || rs.backup.Load() != a {
		t.Fatal("did not switch to a much better path")
	}
	b.up.Store(false)
	r.reselect()
	if rs.primary.Load() != a || rs.backup.Load() != nil {
		t.Fatal("did not fail over")
	}
	if got := testutil.ToFloat64(r.m.PathSwitches.WithLabelValues("c", "down")); got != 1 {
		t.Fatalf("down switches = %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"ok", "routing:\n  routes:\n    - cluster: demo\n      next_hops: [{transport: quic, address: 127.0.0.1:7745}]\n", ""},
		{"unknown key", "listn: {}\n", "field listn not found"},
		{"no routes", "listen: {quic: 127.0.0.1:1}\n", "needs at least one route"},
		{"bad transport", "routing:\n  routes:\n    - cluster: demo\n      next_hops: [{transport: tcp, address: x:1}]\n", "is not quic or kcp"},
		{"bad profile", "transport: {kcp: {profile: turbo}}\nrouting: {routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", "turbo"},
		{"redundancy", "routing: {redundancy: {link_frames: 1, http: 3}, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", ""},
		{"redundancy too high", "routing: {redundancy: {link_frames: 5}, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", "redundancy.link_frames: must be 1..4"},
		{"lanes", "routing: {lanes: 8, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", ""},
		{"lanes too many", "routing: {lanes: 17, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", "lanes: must be 1..16"},
		{"lanes below copies", "routing: {lanes: 2, redundancy: {http: 3}, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", "lanes: 2 is fewer than the 3 copies"},
		{"redundancy unknown kind", "routing: {redundancy: {udp: 2}, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", "field udp not found"},
		{"resume off", "routing: {resume: {enabled: false}, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", ""},
		{"resume after below two probes", "routing: {resume: {after: 300ms}, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", "resume.after: 300ms must be at least two probe intervals"},
		{"resume after past dead", "routing: {resume: {after: 5s}, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", "below probe.dead_after"},
		{"resume buffer", "routing: {resume: {buffer: 1000}, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", "resume.buffer: 1000 must be 64 KiB to 64 MiB"},
		{"resume grace", "routing: {resume: {grace: 10ms}, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", "resume.grace: must be at least 1s"},
		{"disjoint", "routing: {disjoint: {enabled: true, max_frame: 200}, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", ""},
		{"disjoint max_frame", "routing: {disjoint: {max_frame: 0}, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", "disjoint.max_frame: 0 must be 1..32767"},
		{"disjoint and four copies", "routing: {disjoint: {enabled: true}, redundancy: {link: 4}, routes: [{cluster: d, direct: {transport: kcp, address: x:1}}]}\n", "the disjoint copy and the 4 copies"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			err := config.Decode("test.yaml", []byte(tc.yaml), &cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// An affinity key keeps its path even when the primary changes.
func TestStickyAffinity(t *testing.T) {
	ch := newMemChain(t)
	waittest.Until(t, 2*time.Second, "both paths up", func() bool {
		n := 0
		for _, p := range ch.router.Paths() {
			if p.Up {
				n++
			}
		}
		return n == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	open := func(aff string) string {
		tun, err := ch.router.OpenStream(ctx, wire.Header{Kind: wire.KindHTTP, Cluster: "demo", Service: "link", Affinity: aff})
		if err != nil {
			t.Fatal(err)
		}
		tun.Close()
		return tun.Path()
	}
	first := open("sid-1")
	// Make the other path primary, as a better probe result would.
	rs := ch.router.route("demo")
	for _, p := range rs.hops {
		if p.hop.label() != first {
			rs.primary.Store(p)
		}
	}
	if got := open("sid-1"); got != first {
		t.Fatalf("session moved from %s to %s", first, got)
	}
	if got := open(""); got == first {
		t.Fatalf("a flow without affinity did not follow the new primary")
	}
}

// While every relay is down, flows go straight to the cluster's egress; when
// a relay is back, they return to it. SetRoutes swaps hops at run time.
func TestDirectFallbackAndSetRoutes(t *testing.T) {
	ch := newMemChain(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	direct := &Hop{Name: "egress", Transport: "mem", Address: "egress"}
	ch.router.SetRoutes([]Route{{Cluster: "demo", NextHops: []Hop{{Name: "relay-a", Transport: "mem", Address: "relay-a"}}, Direct: direct}})
	waittest.Until(t, 2*time.Second, "relay-a as the primary", func() bool { return ch.router.Primary("demo") == "relay-a" })
	if n := len(ch.router.Paths()); n != 2 {
		t.Fatalf("%d paths after SetRoutes, want relay-a and egress", n)
	}
	_ = ch.relays[0].Shutdown(ctx)
	waittest.Until(t, 3*time.Second, "the egress as the primary", func() bool { return ch.router.Primary("demo") == "egress" })
	tun, err := ch.router.OpenStream(ctx, wire.Header{Kind: wire.KindLink, Cluster: "demo", Service: "link"})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	_, _ = tun.Write([]byte("z"))
	if _, err := io.ReadFull(tun, make([]byte, 1)); err != nil || tun.Path() != "egress" {
		t.Fatalf("direct flow: path %s err %v", tun.Path(), err)
	}
}
