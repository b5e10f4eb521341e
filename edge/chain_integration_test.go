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
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/pki"
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

func TestKillRelayQUIC(t *testing.T) { killRelayTest(t, "quic") }
func TestKillRelayKCP(t *testing.T)  { killRelayTest(t, "kcp") }

// killRelayTest: SIGKILL the relay carrying traffic. Flows on it are closed
// (clients see their connection end and reconnect), and new connections use
// the other relay within 3 s, with the default probe settings.
func killRelayTest(t *testing.T, tr string) {
	integration(t)
	p := newPKIFiles(t)
	ctx := context.Background()
	w := &world{relays: map[string]*relay.Node{}, svc: startServices(t)}
	cr := p.creds(t)

	ecfg := relay.DefaultEgress()
	ecfg.Listen = map[string]string{tr: "127.0.0.1:0"}
	ecfg.Cluster = "demo"
	ecfg.Services = map[string]relay.Service{"link": {Kind: "link", Address: w.svc.link}}
	eg, err := relay.NewEgress(ecfg, cr.deps("egress"))
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
	cfg := Default()
	cfg.Cluster = "demo"
	cfg.Link.Listen = "127.0.0.1:0"
	cfg.WebLink.Listen = ""
	cfg.Routing.Routes = []relay.Route{{Cluster: "demo", NextHops: hops}}
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
	deadline := time.Now().Add(10 * time.Second)
	for !allUp(e.Router()) || len(e.Router().Paths()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("paths never came up: %+v", e.Router().Paths())
		}
		time.Sleep(20 * time.Millisecond)
	}
	primary := e.Router().Primary("demo")
	// The relays' own next hop (the egress) comes up a moment after they
	// answer the edge's probes: wait until a flow gets through.
	waitThrough(t, e.Addr("link").String(), 10*time.Second)

	// Traffic on the primary path.
	var clients []net.Conn
	for i := 0; i < 4; i++ {
		clients = append(clients, linkRoundTrip(t, w))
	}
	for _, s := range e.Sessions() {
		if s.Path != primary {
			t.Fatalf("session on %s, primary is %s", s.Path, primary)
		}
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // keep one client busy mid-kill
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := io.WriteString(clients[0], "tick\n"); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

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

	// Every flow on the dead path is closed, so its client reconnects.
	for i, cl := range clients {
		_ = cl.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		for {
			if _, err := cl.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("client %d on the dead path was not disconnected", i)
				}
				break
			}
		}
	}
	t.Logf("%s: clients on the dead path disconnected after %s", tr, time.Since(killed))
	if p := e.Router().Primary("demo"); p == primary || p == "" {
		t.Fatalf("primary is %q after the kill", p)
	}
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
