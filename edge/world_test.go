package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	proxyproto "github.com/pires/go-proxyproto"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/pki"
	"github.com/longlink/longlink/relay"
	"github.com/longlink/longlink/relay/transport"
)

// services are the core-side targets the egress hands flows to.
type services struct {
	link, http, udp string
	sources         chan string // PROXY v2 source address of each Link connection
}

func requireProxy(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
	return proxyproto.REQUIRE, nil
}

func startServices(t *testing.T) *services {
	t.Helper()
	s := &services{sources: make(chan string, 64)}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl := &proxyproto.Listener{Listener: ln, ConnPolicy: requireProxy}
	t.Cleanup(func() { pl.Close() })
	s.link = ln.Addr().String()
	go func() {
		for {
			c, err := pl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				// Reading triggers PROXY parsing; RemoteAddr is then the client's.
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				s.sources <- c.RemoteAddr().String()
				_, _ = io.WriteString(c, "from "+c.RemoteAddr().String()+": "+line)
				_, _ = io.Copy(c, br)
			}()
		}
	}()

	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hpl := &proxyproto.Listener{Listener: hl, ConnPolicy: requireProxy}
	s.http = hl.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s sid=%s", r.RemoteAddr, r.URL.Query().Get("sid"))
	})
	// An Engine.IO handshake's answer: the open packet with a new sid.
	var sids atomic.Int64
	mux.HandleFunc("/socket.io/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("sid") {
			fmt.Fprintf(w, "%s sid=%s", r.RemoteAddr, r.URL.Query().Get("sid"))
			return
		}
		fmt.Fprintf(w, `0{"sid":"sid-%d","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`, sids.Add(1))
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(r.RemoteAddr+" "), b...)); err != nil {
				return
			}
		}
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(hpl) }()
	t.Cleanup(func() { _ = hs.Close() })

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	s.udp = pc.LocalAddr().String()
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
	return s
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("LONGLINK_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func fastProbe(r *relay.RoutingConfig) {
	// Fast enough for quick tests, loose enough for a loaded CI machine.
	r.Probe.Interval = config.Duration(100 * time.Millisecond)
	r.Probe.Timeout = config.Duration(time.Second)
	r.Probe.DownAfter = 3
}

// world is edge → {relay-1 | relay-2} → relay-3 → egress over one transport.
type world struct {
	edge   *Edge
	relays map[string]*relay.Node
	egress *relay.Node
	svc    *services
}

type creds struct {
	trFor func(name string) map[string]transport.Transport // mem only
	deps  func(name string) relay.Deps
}

func memCreds() creds {
	mn := transport.NewMemNetwork()
	return creds{deps: func(name string) relay.Deps {
		return relay.Deps{Transports: map[string]transport.Transport{"mem": mn.Transport(name)}}
	}}
}

func pkiCreds(t *testing.T) creds {
	ca, err := pki.NewCA("test-cluster")
	if err != nil {
		t.Fatal(err)
	}
	return creds{deps: func(name string) relay.Deps {
		cert, err := ca.Issue(name, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		return relay.Deps{TLS: pki.MutualTLS(cert, ca.Pool()), ClusterKey: []byte("test-cluster-key-0123456789abcdef")}
	}}
}

func listenAddr(tr, name string) string {
	if tr == "mem" {
		return name
	}
	return "127.0.0.1:0"
}

func newWorld(t *testing.T, tr string, cr creds, mutate func(*Config)) *world {
	t.Helper()
	return newWorldLink(t, tr, cr, mutate, "", "")
}

// newWorldLink is newWorld with the egress's link service at linkAddr (a
// real gateway) instead of the test service.
// newWorldLink is newWorld with the egress's "link" service at linkAddr and,
// when plainAddr is set, a "link-frames" service at plainAddr (a gateway's
// pre-terminated listener).
func newWorldLink(t *testing.T, tr string, cr creds, mutate func(*Config), linkAddr, plainAddr string) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{relays: map[string]*relay.Node{}, svc: startServices(t)}
	log := testLogger(t)

	ecfg := relay.DefaultEgress()
	ecfg.Listen = map[string]string{tr: listenAddr(tr, "egress")}
	ecfg.Cluster = "demo"
	ecfg.Services = map[string]relay.Service{
		"link":    {Kind: "link", Address: w.svc.link},
		"weblink": {Kind: "http", Address: w.svc.http},
		"media":   {Kind: "udp", Address: w.svc.udp},
	}
	if linkAddr != "" {
		ecfg.Services["link"] = relay.Service{Kind: "link", Address: linkAddr}
	}
	if plainAddr != "" {
		ecfg.Services["link-frames"] = relay.Service{Kind: "link-frames", Address: plainAddr}
	}
	d := cr.deps("egress")
	d.Logger = log.With("node", "egress")
	eg, err := relay.NewEgress(ecfg, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := eg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eg.Shutdown(ctx) })
	w.egress = eg
	hop := func(name string, n *relay.Node) relay.Hop {
		return relay.Hop{Name: name, Transport: tr, Address: n.Addr(tr).String()}
	}
	startRelay := func(name string, next relay.Hop) *relay.Node {
		cfg := relay.Default()
		cfg.Name = name
		cfg.Listen = map[string]string{tr: listenAddr(tr, name)}
		cfg.Routing.Routes = []relay.Route{{Cluster: "demo", NextHops: []relay.Hop{next}}}
		fastProbe(&cfg.Routing)
		d := cr.deps(name)
		d.Logger = log.With("node", name)
		n, err := relay.New(cfg, d)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Shutdown(ctx) })
		w.relays[name] = n
		return n
	}
	r3 := startRelay("relay-3", hop("egress", eg))
	r1 := startRelay("relay-1", hop("relay-3", r3))
	r2 := startRelay("relay-2", hop("relay-3", r3))

	cfg := Default()
	cfg.Name = "edge"
	cfg.Cluster = "demo"
	cfg.Link.Listen = "127.0.0.1:0"
	cfg.WebLink.Listen = "127.0.0.1:0"
	cfg.UDP = []UDPListener{{Listen: "127.0.0.1:0", Service: "media", IdleTimeout: config.Duration(2 * time.Second)}}
	cfg.DrainPeriod = config.Duration(200 * time.Millisecond)
	cfg.Routing.Routes = []relay.Route{{Cluster: "demo", NextHops: []relay.Hop{hop("relay-1", r1), hop("relay-2", r2)}}}
	fastProbe(&cfg.Routing)
	if mutate != nil {
		mutate(&cfg)
	}
	rd := cr.deps("edge")
	e, err := New(cfg, Deps{Logger: log.With("node", "edge"), TLS: rd.TLS, ClusterKey: rd.ClusterKey, Transports: rd.Transports})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(ctx) })
	w.edge = e
	deadline := time.Now().Add(20 * time.Second)
	for e.Router().Primary("demo") == "" || !allUp(e.Router()) {
		if time.Now().After(deadline) {
			t.Fatalf("paths never came up: %+v", e.Router().Paths())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The relays' own next hops come up a moment after they answer the
	// edge's probes: wait until a request gets all the way through.
	var readyTLS *tls.Config
	if cfg.WebLink.TLS != nil {
		readyTLS = &tls.Config{InsecureSkipVerify: true}
	}
	for {
		if ok := tryHTTP(w.edge.Addr("weblink").String(), readyTLS); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no request through the chain")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return w
}

func tryHTTP(addr string, tlsConf *tls.Config) bool {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return false
	}
	if tlsConf != nil {
		c = tls.Client(c, tlsConf)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "GET /whoami HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func allUp(r *relay.Router) bool {
	for _, p := range r.Paths() {
		if !p.Up {
			return false
		}
	}
	return true
}

// linkRoundTrip connects to the edge's Link port, sends a line and checks
// the service saw the client's real address in the PROXY v2 header.
func linkRoundTrip(t *testing.T, w *world) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", w.edge.Addr("link").String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read through tunnel: %v", err)
	}
	want := "from " + c.LocalAddr().String() + ": hello\n"
	if line != want {
		t.Fatalf("got %q, want %q (PROXY v2 must carry the client's address)", line, want)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

func httpGet(t *testing.T, w *world, path string) (string, string) {
	t.Helper()
	c, err := net.Dial("tcp", w.edge.Addr("weblink").String())
	if err != nil {
		t.Fatal(err)
	}
	return getOn(t, c, "edge", path)
}

// getOn sends one GET on c, reads the answer and closes c; it returns the
// body and c's local address.
func getOn(t *testing.T, c net.Conn, host, path string) (body, local string) {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), c.LocalAddr().String()
}

func checkHTTP(t *testing.T, w *world) {
	body, local := httpGet(t, w, "/whoami?EIO=4&transport=polling&sid=s1")
	if body != local+" sid=s1" {
		t.Fatalf("HTTP through the edge: %q, want client address %s", body, local)
	}
	wsEcho(t, "ws://"+w.edge.Addr("weblink").String()+"/ws?EIO=4&transport=websocket&sid=s1", nil)
}

// wsEcho opens a WebSocket to the test service's echo through the edge and
// checks that the answer names a loopback client address.
func wsEcho(t *testing.T, url string, opts *websocket.DialOptions) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wc, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.CloseNow()
	if err := wc.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_, b, err := wc.Read(ctx)
	if err != nil || !strings.HasSuffix(string(b), " hi") || !strings.HasPrefix(string(b), "127.0.0.1:") {
		t.Fatalf("websocket echo %q %v", b, err)
	}
}

func checkUDP(t *testing.T, w *world) {
	c, err := net.Dial("udp", w.edge.Addr(w.edge.cfg.UDP[0].Listen).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for i := 0; i < 3; i++ {
		msg := fmt.Sprintf("pkt-%d", i)
		var got string
		for try := 0; try < 20 && got == ""; try++ {
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, err := c.Read(buf)
			if err == nil {
				got = string(buf[:n])
			}
		}
		if got != "echo:"+msg {
			t.Fatalf("udp echo: %q", got)
		}
	}
	// One mapping for this client 5-tuple.
	n := 0
	for _, s := range w.edge.Sessions() {
		if s.Listener == "udp:media" && s.Client.String() == c.LocalAddr().String() {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d UDP mappings for one client, want 1", n)
	}
}
