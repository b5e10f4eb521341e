package weblink

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/core/weblink/internal/server"
	"github.com/longlink/longlink/deployments/nginx"
	"github.com/longlink/longlink/pkg/waittest"
)

func needIntegration(t *testing.T) {
	t.Helper()
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
}

// nodeDir is the Node.js test package; tools/testdeps/install.sh runs npm ci there.
func nodeDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("testdata/node")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io-client")); err != nil {
		t.Fatalf("node modules missing in %s: run tools/testdeps/install.sh (%v)", dir, err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed")
	}
	return dir
}

// TestNodeClient runs client.test.mjs (the official socket.io-client v4)
// against the protocol server with an echo handler and against WebLink in
// front of a real IM core.
func TestNodeClient(t *testing.T) {
	needIntegration(t)
	dir := nodeDir(t)
	echo := server.New(server.Config{Namespaces: []string{"/admin"}}, &server.EchoHandler{Token: "secret"}, nil, nil)
	hs := httptest.NewServer(echo)
	defer func() {
		hs.CloseClientConnections()
		echo.Close()
		hs.Close()
	}()
	c := startCore(t, nil)
	tokens, _ := json.Marshal(c.tokens)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", "client.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ECHO_URL="+hs.URL, "IM_URL="+c.url, "TOKENS="+string(tokens))
	out, err := cmd.CombinedOutput()
	t.Logf("node output:\n%s", out)
	if err != nil {
		t.Fatalf("node tests failed: %v", err)
	}
}

// TestThroughNginx runs the example nginx configuration in front of WebLink
// and chats through it with the official client over TLS.
func TestThroughNginx(t *testing.T) {
	needIntegration(t)
	dir := nodeDir(t)
	bin := nginx.Binary()
	if bin == "" {
		t.Fatal("nginx is not installed (tools/testdeps/install.sh installs it)")
	}
	c := startCore(t, func(cfg *Config) { cfg.TrustedProxies = []string{"127.0.0.1/32"} })
	tmp := t.TempDir()
	httpAddr, httpsAddr := freeAddr(t), freeAddr(t)
	conf, err := nginx.Prepare("../../deployments/nginx/longlink.conf", tmp, httpAddr, httpsAddr, c.wl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ngx := exec.CommandContext(ctx, bin, "-p", tmp, "-c", conf)
	var ngxOut bytes.Buffer
	ngx.Stdout, ngx.Stderr = &ngxOut, &ngxOut
	if err := ngx.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = ngx.Process.Signal(syscall.SIGQUIT)
		_ = ngx.Wait()
	}()
	waitListening(t, httpsAddr)
	tokens, _ := json.Marshal(c.tokens)
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", "nginx.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NGINX_URL=https://"+httpsAddr, "TOKENS="+string(tokens))
	out, err := cmd.CombinedOutput()
	t.Logf("node output:\n%s", out)
	if err != nil {
		t.Fatalf("node tests through nginx failed: %v\nnginx:\n%s", err, ngxOut.String())
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	waittest.Until(t, 10*time.Second, "a listener on "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// TestDemoPageChromium has two users chat on the demo page in headless
// Chromium, against WebLink in front of a real IM core.
func TestDemoPageChromium(t *testing.T) {
	needIntegration(t)
	dir := nodeDir(t)
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("chromium is not installed (tools/testdeps/install.sh installs it)")
	}
	c := startCore(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", "demo.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEMO_URL="+c.url+"/", "SCREENSHOT="+os.Getenv("WEBLINK_SCREENSHOT"))
	out, err := cmd.CombinedOutput()
	t.Logf("node output:\n%s", out)
	if err != nil {
		t.Fatalf("demo page test failed: %v", err)
	}
}
