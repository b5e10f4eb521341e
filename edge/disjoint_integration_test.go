package edge

import (
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/metricstest"
	"github.com/longlink/longlink/pkg/waittest"
	"github.com/longlink/longlink/relay"
)

// TestStopRelayDisjoint: with routing.disjoint, SIGSTOP the relay process
// that carries Link, WebSocket and UDP traffic (a relay that goes silent
// without closing anything). The small messages keep coming over the
// other relay: every stream echoes each numbered message once and in
// order, and no echo waits anywhere near routing.resume.after (3 s here:
// the streams' own copies move only then), so they did not wait for the
// move; UDP datagrams are answered once each.
func TestStopRelayDisjoint(t *testing.T) {
	integration(t)
	const tr = "quic"
	p := newPKIFiles(t)
	ctx := context.Background()
	w := &world{relays: map[string]*relay.Node{}, svc: startServices(t)}
	cr := p.creds(t)

	hops, procs := twoRelayChain(t, p, cr, tr, map[string]relay.Service{
		"link":    {Kind: "link", Address: w.svc.link},
		"weblink": {Kind: "http", Address: w.svc.http},
		"media":   {Kind: "udp", Address: w.svc.udp},
	})
	cfg := Default()
	cfg.Cluster = "demo"
	cfg.Link.Listen = "127.0.0.1:0"
	cfg.WebLink.Listen = "127.0.0.1:0"
	cfg.UDP = []UDPListener{{Listen: "127.0.0.1:0", Service: "media", IdleTimeout: config.Duration(time.Minute)}}
	cfg.Routing.Routes = []relay.Route{{Cluster: "demo", NextHops: hops}}
	cfg.Routing.Disjoint.Enabled = true
	// The streams' own copies leave a silent relay only after 3 s, so an
	// echo that comes sooner came over the other relay.
	cfg.Routing.Resume.After = config.Duration(3 * time.Second)
	cfg.Routing.Probe.Hysteresis = 0.95 // every flow takes the first primary
	reg := prometheus.NewRegistry()
	d := cr.deps("edge")
	e, err := New(cfg, Deps{Logger: testLogger(t), Registerer: reg, TLS: d.TLS, ClusterKey: d.ClusterKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(ctx) })
	w.edge = e
	waittest.Until(t, 10*time.Second, "both paths up", func() bool { return allUp(e.Router()) && len(e.Router().Paths()) == 2 })
	primary := e.Router().Primary("demo")
	waitThrough(t, e.Addr("link").String(), 10*time.Second)
	// The other relay's own hop to the egress may come up a moment later:
	// streams open a disjoint copy only while it answers the edge, and the
	// copy joins at the egress, so wait for a stream whose copy did.
	waittest.Until(t, 10*time.Second, "a disjoint copy that carried an echo", func() bool {
		waitThrough(t, e.Addr("link").String(), 5*time.Second)
		return metricstest.Value(t, reg, "longlink_relay_disjoint_duplicates_total", "flow", "stream") > 0
	})

	var streams []*numberedStream
	for range 3 {
		streams = append(streams, newNumberedStream(linkRoundTrip(t, w)))
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := range 2 {
		ws, _, err := websocket.Dial(wctx, "ws://"+e.Addr("weblink").String()+"/ws?EIO=4&transport=websocket&sid=stop-"+fmt.Sprint(i), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		streams = append(streams, newNumberedStream(websocket.NetConn(wctx, ws, websocket.MessageText)))
	}
	udp, err := net.Dial("udp", e.Addr(cfg.UDP[0].Listen).String())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	echoes := udpEchoes(udp)
	exchangeUDP(t, udp, echoes, "before", 20)
	for _, s := range e.Sessions() {
		if s.Path != primary {
			t.Fatalf("%s session on %s, primary is %s", s.Listener, s.Path, primary)
		}
	}
	defer startStreams(t, streams)()

	stopped := time.Now()
	if err := procs[primary].Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = procs[primary].Process.Signal(syscall.SIGCONT) })
	for i, st := range streams {
		from := st.echoed()
		waittest.Until(t, 10*time.Second, fmt.Sprintf("stream %d's echoes after the stop", i), func() bool { return st.echoed() > from+50 })
	}
	exchangeUDP(t, udp, echoes, "stopped", 20)
	within := time.Since(stopped)
	for i, st := range streams {
		if err := st.failure(); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		t.Logf("stream %d: longest wait for an echo %s (50 echoes and 20 datagrams within %s of the stop)", i, st.longestGap(), within)
		if g := st.longestGap(); g > 1500*time.Millisecond {
			t.Errorf("stream %d waited %s for an echo: the disjoint copy did not carry it", i, g)
		}
	}
	if n := metricstest.Value(t, reg, "longlink_relay_disjoint_wins_total", "flow", "stream", "copy", "disjoint"); n < 250 {
		t.Errorf("%v echoes came first over the disjoint copies, want at least the 250 after the stop", n)
	}
}

// udpEchoes reads the echo service's answers on c.
func udpEchoes(c net.Conn) <-chan string {
	ch := make(chan string, 256)
	go func() {
		defer close(ch)
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

// exchangeUDP sends n numbered datagrams, one at a time (again after a
// second without its answer: a tunnel datagram may be dropped), and checks
// that no datagram is answered more often than it was sent.
func exchangeUDP(t *testing.T, c net.Conn, echoes <-chan string, prefix string, n int) {
	t.Helper()
	sent, got := map[string]int{}, map[string]int{}
	for i := range n {
		msg := fmt.Sprintf("%s-%d", prefix, i)
		for try := 0; got["echo:"+msg] == 0; try++ {
			if try == 5 {
				t.Fatalf("udp %s: no answer to 5 tries", msg)
			}
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			sent["echo:"+msg]++
			timeout := time.After(time.Second)
		wait:
			for got["echo:"+msg] == 0 {
				select {
				case a := <-echoes:
					got[a]++
				case <-timeout:
					break wait
				}
			}
		}
	}
	for a, k := range got {
		if !strings.HasPrefix(a, "echo:"+prefix+"-") || k > sent[a] {
			t.Fatalf("udp answer %q arrived %d times for %d sends", a, k, sent[a])
		}
	}
}
