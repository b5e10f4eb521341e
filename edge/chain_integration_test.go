package edge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/pki"
	"github.com/longlink/longlink/pkg/waittest"
	"github.com/longlink/longlink/relay"
)

// TestMain doubles as a relay process for the kill tests: with
// LONGLINK_EDGE_TEST_RELAY set to a config file it runs that relay until
// killed.
func TestMain(m *testing.M) {
	if path := os.Getenv("LONGLINK_EDGE_TEST_RELAY"); path != "" {
		runChildRelay(path)
		return
	}
	os.Exit(m.Run())
}

func runChildRelay(path string) {
	cfg := relay.Default()
	if err := config.Load(path, &cfg); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	n, err := relay.New(cfg, relay.Deps{})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	if err := n.Start(context.Background()); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	for name := range cfg.Listen {
		fmt.Println("READY", name, n.Addr(name).String())
	}
	select {}
}

func integration(t *testing.T) {
	t.Helper()
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
}

// TestChainQUIC and TestChainKCP: edge → relay → relay → egress over real
// UDP sockets on loopback: Link TCP with PROXY v2, HTTP, WebSocket, UDP echo.
func TestChainQUIC(t *testing.T) { chainTest(t, "quic") }
func TestChainKCP(t *testing.T)  { chainTest(t, "kcp") }

func chainTest(t *testing.T, tr string) {
	integration(t)
	w := newWorld(t, tr, pkiCreds(t), nil)
	t.Run("link", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			linkRoundTrip(t, w).Close()
		}
	})
	t.Run("http and websocket", func(t *testing.T) { checkHTTP(t, w) })
	t.Run("udp", func(t *testing.T) { checkUDP(t, w) })
	t.Run("sticky sid", func(t *testing.T) {
		// Every request of one Socket.IO session takes one path.
		var first string
		for i := 0; i < 6; i++ {
			body, _ := httpGet(t, w, "/whoami?EIO=4&transport=polling&sid=sticky-1")
			if !strings.HasSuffix(body, "sid=sticky-1") {
				t.Fatalf("body %q", body)
			}
			p := w.edge.Router().StickyPath("sticky-1")
			if p == "" || (first != "" && p != first) {
				t.Fatalf("request %d of the session took path %q, first took %q", i, p, first)
			}
			first = p
		}
	})
	t.Run("bulk", func(t *testing.T) {
		c := linkRoundTrip(t, w)
		defer c.Close()
		const size = 4 << 20
		go func() {
			buf := make([]byte, 64<<10)
			for sent := 0; sent < size; sent += len(buf) {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		start := time.Now()
		if _, err := io.CopyN(io.Discard, c, size); err != nil {
			t.Fatalf("bulk echo: %v", err)
		}
		t.Logf("%s: 4 MiB echoed through 3 hops in %s", tr, time.Since(start))
	})
}

// pkiFiles writes a cluster CA and per-node certificates as PEM files, for
// relays started as separate processes.
type pkiFiles struct {
	dir string
	ca  *pki.CA
	key string
}

func newPKIFiles(t *testing.T) *pkiFiles {
	ca, err := pki.NewCA("test-cluster")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	return &pkiFiles{dir: dir, ca: ca, key: "test-cluster-key-0123456789abcdef"}
}

func (p *pkiFiles) issue(t *testing.T, name string) (certFile, keyFile string) {
	certFile = filepath.Join(p.dir, name+".pem")
	keyFile = filepath.Join(p.dir, name+"-key.pem")
	if err := p.ca.IssueFiles(certFile, keyFile, name, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func (p *pkiFiles) creds(t *testing.T) creds {
	return creds{deps: func(name string) relay.Deps {
		cert, err := p.ca.Issue(name, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		return relay.Deps{TLS: pki.MutualTLS(cert, p.ca.Pool()), ClusterKey: []byte(p.key)}
	}}
}

// childRelay starts a relay process forwarding to next; it returns its
// tunnel address and the process.
func childRelay(t *testing.T, p *pkiFiles, name, tr string, next relay.Hop) (string, *exec.Cmd) {
	certFile, keyFile := p.issue(t, name)
	cfgText := fmt.Sprintf(`name: %s
listen: {%s: 127.0.0.1:0}
security: {ca_file: %s, cert_file: %s, key_file: %s, cluster_key: %s}
routing:
  routes:
    - cluster: demo
      next_hops: [{name: %s, transport: %s, address: %s}]
`, name, tr, filepath.Join(p.dir, "ca.pem"), certFile, keyFile, p.key, next.Name, next.Transport, next.Address)
	path := filepath.Join(p.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LONGLINK_EDGE_TEST_RELAY="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY ") {
		t.Fatalf("relay %s: %q %v", name, line, err)
	}
	f := strings.Fields(line)
	return f[2], cmd
}

func TestKillRelayQUIC(t *testing.T) { killRelayTest(t, "quic", true) }
func TestKillRelayKCP(t *testing.T)  { killRelayTest(t, "kcp", true) }

// TestKillRelayReconnect is the behaviour without routing.resume: the
// flows on the dead path end, so their clients reconnect.
func TestKillRelayReconnect(t *testing.T) { killRelayTest(t, "quic", false) }

// killRelayTest: SIGKILL the relay carrying traffic (a separate process)
// while Link and WebLink (WebSocket) clients stream numbered messages
// through it. With resume every stream goes on over the other relay: the
// same connections, every message echoed once and in order, the longest
// wait for an echo logged and bounded; without it the flows on the dead
// path end. Either way new connections use the other relay within 3 s,
// with the default probe settings.
func killRelayTest(t *testing.T, tr string, resume bool) {
	integration(t)
	p := newPKIFiles(t)
	ctx := context.Background()
	w := &world{relays: map[string]*relay.Node{}, svc: startServices(t)}
	cr := p.creds(t)

	hops, procs := twoRelayChain(t, p, cr, tr, map[string]relay.Service{
		"link":    {Kind: "link", Address: w.svc.link},
		"weblink": {Kind: "http", Address: w.svc.http},
	})
	cfg := Default()
	cfg.Cluster = "demo"
	cfg.Link.Listen = "127.0.0.1:0"
	cfg.WebLink.Listen = "127.0.0.1:0"
	cfg.Routing.Routes = []relay.Route{{Cluster: "demo", NextHops: hops}}
	cfg.Routing.Resume.Enabled = resume
	// The first hop up stays primary (no "better" switch between two
	// loopback relays while the sessions open): they all take it.
	cfg.Routing.Probe.Hysteresis = 0.95
	d := cr.deps("edge")
	e, err := New(cfg, Deps{Logger: testLogger(t), TLS: d.TLS, ClusterKey: d.ClusterKey})
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
	// The relays' own next hop (the egress) comes up a moment after they
	// answer the edge's probes: wait until a flow gets through.
	waitThrough(t, e.Addr("link").String(), 10*time.Second)

	// Traffic on the primary path: Link connections and WebSockets, each
	// sending numbered messages every few milliseconds.
	var streams []*numberedStream
	for i := 0; i < 3; i++ {
		streams = append(streams, newNumberedStream(linkRoundTrip(t, w)))
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := 0; i < 2; i++ {
		ws, _, err := websocket.Dial(wctx, "ws://"+e.Addr("weblink").String()+"/ws?EIO=4&transport=websocket&sid=kill-"+fmt.Sprint(i), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		streams = append(streams, newNumberedStream(websocket.NetConn(wctx, ws, websocket.MessageText)))
	}
	for _, s := range e.Sessions() {
		if s.Path != primary {
			t.Fatalf("session on %s, primary is %s", s.Path, primary)
		}
	}
	defer startStreams(t, streams)()

	killed := time.Now()
	if err := procs[primary].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	// New connections go through the other relay within 3 s.
	var c net.Conn
	for c == nil {
		if time.Since(killed) > 3*time.Second {
			t.Fatalf("no new connection through the backup within 3 s; paths %+v", e.Router().Paths())
		}
		conn, err := net.Dial("tcp", e.Addr("link").String())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := io.WriteString(conn, "again\n"); err == nil {
			if line, err := bufio.NewReader(conn).ReadString('\n'); err == nil && strings.HasSuffix(line, ": again\n") {
				c = conn
				break
			}
		}
		conn.Close()
	}
	defer c.Close()
	t.Logf("%s: new connection through the backup %s after the kill", tr, time.Since(killed))

	if !resume {
		// Every flow on the dead path is closed, so its client reconnects.
		for i, st := range streams {
			select {
			case <-st.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("stream %d on the dead path was not closed", i)
			}
		}
		t.Logf("%s: clients on the dead path disconnected after %s", tr, time.Since(killed))
		return
	}
	// Every stream goes on: more echoes after the kill, none lost,
	// repeated or out of order (newNumberedStream checks each).
	for i, st := range streams {
		from := st.echoed()
		waittest.Until(t, 10*time.Second, fmt.Sprintf("stream %d's echoes after the kill", i), func() bool { return st.echoed() > from+50 })
		if err := st.failure(); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		t.Logf("%s: stream %d: longest wait for an echo %s", tr, i, st.longestGap())
		if g := st.longestGap(); g > 5*time.Second {
			t.Errorf("stream %d waited %s for an echo", i, g)
		}
	}
	for _, s := range e.Sessions() {
		if s.Path == primary {
			t.Fatalf("a session is still on the dead relay %s", primary)
		}
	}
	if p := e.Router().Primary("demo"); p == primary || p == "" {
		t.Fatalf("primary is %q after the kill", p)
	}
}

// numberedStream writes "N\n" lines (N = 0, 1, …) to an echoing connection
// every 5 ms and checks that the echoes come back as written: each once,
// in order. It records the longest wait between two echoes.
type numberedStream struct {
	c    net.Conn
	br   *bufio.Reader
	quit chan struct{}
	done chan struct{} // closed when the reader stops (error or stop)

	mu   sync.Mutex
	got  int
	last time.Time
	gap  time.Duration
	err  error
}

func newNumberedStream(c net.Conn) *numberedStream {
	return &numberedStream{c: c, br: bufio.NewReader(c), quit: make(chan struct{}), done: make(chan struct{})}
}

func (s *numberedStream) start() {
	s.last = time.Now()
	go func() {
		for n := 0; ; n++ {
			select {
			case <-s.quit:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(s.c, "%d\n", n); err != nil {
				return
			}
		}
	}()
	go func() {
		defer close(s.done)
		for {
			line, err := s.br.ReadString('\n')
			if err != nil {
				s.fail(err)
				return
			}
			// The WebSocket echo prefixes the client's address.
			num := line[strings.LastIndexByte(line[:len(line)-1], ' ')+1:]
			s.mu.Lock()
			if want := fmt.Sprintf("%d\n", s.got); num != want && s.err == nil {
				s.err = fmt.Errorf("echo %q after %d echoes: lost, repeated or out of order", line, s.got)
			}
			s.got++
			now := time.Now()
			s.gap = max(s.gap, now.Sub(s.last))
			s.last = now
			s.mu.Unlock()
		}
	}()
}

func (s *numberedStream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.quit:
	default:
		if s.err == nil {
			s.err = fmt.Errorf("the connection ended after %d echoes: %w", s.got, err)
		}
	}
}

func (s *numberedStream) stop() {
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	_ = s.c.Close()
}

func (s *numberedStream) echoed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

func (s *numberedStream) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *numberedStream) longestGap() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gap
}

// waitThrough retries a Link round trip through the edge until one succeeds.
func waitThrough(t *testing.T, addr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, err = io.WriteString(c, "ping\n")
			if err == nil {
				_, err = bufio.NewReader(c).ReadString('\n')
			}
			c.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no flow through %s within %s: %v", addr, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// twoRelayChain starts an egress in this process serving services and two
// relay processes (relay-1, relay-2) in front of it on transport tr; it
// returns the relays as next hops and their processes by name.
func twoRelayChain(t *testing.T, p *pkiFiles, cr creds, tr string, services map[string]relay.Service) ([]relay.Hop, map[string]*exec.Cmd) {
	t.Helper()
	ctx := context.Background()
	ecfg := relay.DefaultEgress()
	ecfg.Listen = map[string]string{tr: "127.0.0.1:0"}
	ecfg.Cluster = "demo"
	ecfg.Services = services
	egDeps := cr.deps("egress")
	egDeps.Logger = testLogger(t).With("node", "egress")
	eg, err := relay.NewEgress(ecfg, egDeps)
	if err != nil {
		t.Fatal(err)
	}
	if err := eg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eg.Shutdown(ctx) })
	egHop := relay.Hop{Name: "egress", Transport: tr, Address: eg.Addr(tr).String()}
	procs := map[string]*exec.Cmd{}
	var hops []relay.Hop
	for _, name := range []string{"relay-1", "relay-2"} {
		addr, cmd := childRelay(t, p, name, tr, egHop)
		procs[name] = cmd
		hops = append(hops, relay.Hop{Name: name, Transport: tr, Address: addr})
	}
	return hops, procs
}

// startStreams starts every stream's numbered messages and waits until each
// has 10 echoes; the function it returns stops them.
func startStreams(t *testing.T, streams []*numberedStream) (stop func()) {
	t.Helper()
	for _, st := range streams {
		st.start()
	}
	stop = func() {
		for _, st := range streams {
			st.stop()
		}
	}
	started := false
	defer func() {
		if !started { // the wait failed the test: stop them here
			stop()
		}
	}()
	waittest.Until(t, 5*time.Second, "echoes on every stream", func() bool {
		for _, st := range streams {
			if st.echoed() < 10 {
				return false
			}
		}
		return true
	})
	started = true
	return stop
}
