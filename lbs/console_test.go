package lbs

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/config"
)

// The console's files are served on the admin listener without a token
// (they hold no data) and with a policy that runs only its own scripts.
func TestConsoleServed(t *testing.T) {
	l := startSingle(t)
	a := newAdmin(t, l, "")
	code, b := a.do("GET", "/console/", nil)
	if code != 200 || !strings.Contains(string(b), `<script src="console.js"`) {
		t.Fatalf("console page: %d %s", code, b)
	}
	for _, f := range []string{"console.js", "console.css"} {
		if code, _ := a.do("GET", "/console/"+f, nil); code != 200 {
			t.Fatalf("%s: %d", f, code)
		}
	}
	// no external script, style or font
	for _, f := range []string{"index.html", "console.js", "console.css"} {
		b, _ := console.ReadFile("console/" + f)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "://") {
				t.Errorf("%s refers outside the LBS: %s", f, line)
			}
		}
	}
	req, _ := a.hc.Get(a.base + "/console/")
	if csp := req.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Fatalf("CSP %q", csp)
	}
}

// The console in headless Chromium (playwright-core, pinned by
// testdata/console/package-lock.json): log in, read the map, change a rule,
// see the diff, apply, see the new version in explain, drain a node and a
// site (testdata/console/console.test.mjs). LONGLINK_CONSOLE_SCREENSHOTS
// names a directory for the docs' pictures.
func TestConsoleChromium(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	dir, _ := filepath.Abs("testdata/console")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("node modules missing in %s: run tools/testdeps/install.sh (%v)", dir, err)
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("chromium is not installed (tools/testdeps/install.sh installs it)")
	}
	l := startSingle(t, func(c *Config) { c.ReaderToken = config.NewSecret(testReaderToken) })

	// nodes report: an edge with its load, version and paths, a gateway
	// with the service nodes it hears; the others come up by beating
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newAdmin(t, l, testNodeToken)
	go func() {
		beats := []lbsapi.Heartbeat{
			{Node: "edge-sg", Connections: 37, Version: "v9.8.7", Labels: map[string]string{"zone": "sg-1a"},
				Paths: []lbsapi.Path{{To: "relay-1", Up: true, RTTMs: 12.5, Loss: 0.002, Jitter: 0.8}, {To: "core", Up: true, RTTMs: 48.1}}},
			{Node: "edge-fra", Connections: 12, Version: "v9.8.7"},
			{Node: "core-gw", Connections: 3, Version: "v9.8.7", ServiceNodes: []lbsapi.ServiceNode{
				{ID: "svc-a-1", Cluster: "shared", Version: "v9.8.7"}, {ID: "svc-b-1", Cluster: "shared", Version: "v9.9.0", Canary: true}}},
		}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, hb := range beats {
				b, _ := json.Marshal(hb)
				n.do("POST", lbsapi.PathHeartbeat, b)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	cmd := exec.Command("node", "--test", "--test-reporter=spec", "--test-concurrency=1", "console.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CONSOLE_URL=https://"+l.AdminAddr().String()+"/console/",
		"OPERATOR_TOKEN="+testAdminToken, "READER_TOKEN="+testReaderToken)
	if shots := os.Getenv("LONGLINK_CONSOLE_SCREENSHOTS"); shots != "" {
		cmd.Env = append(cmd.Env, "SCREENSHOTS="+shots)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("console test in Chromium: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
