package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Every server role reloads its config file on SIGHUP: the keys it can
// change running are applied (and logged by name), a file that changes a
// restart-only key is refused naming it, and the process keeps serving.
// (The LBS: TestSystemdNotifyAndReload; each component's Reload has its
// own test: core, edge, relay, turn.)
func TestReloadOnSIGHUP(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	bin := longlinkBinary(t)
	pki := t.TempDir()
	if out, err := exec.Command(bin, "relay", "-pki", pki, "-issue", "relay-a").CombinedOutput(); err != nil {
		t.Fatalf("issue: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		role, ready string
		config      string // %A% and %B% are replaced by the values of each step
		steps       [][2]string
		applied     string // after step 2
		refused     string // after step 3
	}{{
		role: "turn", ready: "serving",
		config: `udp: ["127.0.0.1:0"]
tcp: []
tls: []
udp_sockets: 1
secrets: [{id: k1, secret: turn-reload-secret-0123456789}]
quotas: {per_user: %A%}
realm: %B%
`,
		steps:   [][2]string{{"10", "longlink"}, {"2", "longlink"}, {"2", "other"}},
		applied: "applied=quotas.per_user", refused: "realm: changed, and applies only at start",
	}, {
		role: "relay", ready: "tunnel listener",
		config: `name: relay-a
listen: {quic: "127.0.0.1:0"}
security: {ca_file: ` + filepath.Join(pki, "ca.pem") + `, cert_file: ` + filepath.Join(pki, "relay-a.pem") + `, key_file: ` + filepath.Join(pki, "relay-a-key.pem") + `}
max_streams: %A%
routing:
  routes: [{cluster: default, next_hops: [{name: %B%, transport: quic, address: "127.0.0.1:1"}]}]
`,
		steps:   [][2]string{{"1000", "core"}, {"2000", "core-2"}, {"2000\nheader_timeout: 3s\nsite: moved", "core-2"}},
		applied: "applied=max_streams,routing.routes", refused: "site: changed, and applies only at start",
	}} {
		t.Run(tc.role, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tc.role+".yaml")
			write := func(step [2]string) {
				r := strings.NewReplacer("%A%", step[0], "%B%", step[1])
				if err := os.WriteFile(path, []byte(r.Replace(tc.config)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			write(tc.steps[0])
			p := startProc(t, bin, tc.role, "-config", path, "-debug-addr", "")
			p.waitFor(t, tc.ready, 30*time.Second)
			write(tc.steps[1])
			p.cmd.Process.Signal(syscall.SIGHUP)
			p.waitFor(t, tc.applied, 10*time.Second)
			write(tc.steps[2])
			p.cmd.Process.Signal(syscall.SIGHUP)
			p.waitFor(t, tc.refused, 10*time.Second)
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-p.done:
				if err != nil {
					t.Fatalf("exit after SIGTERM: %v\n%s", err, p.text())
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no exit after SIGTERM")
			}
		})
	}
}
