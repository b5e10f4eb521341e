package weblink

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/longlink/longlink/core/weblink/internal/server"
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
