package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// longlinkBinary builds the binary once per test run.
func longlinkBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "longlink-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "longlink")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v", buildErr)
	}
	return builtBin
}

const lbsReloadConfig = `node_id: lbs1
data_dir: %DIR%/data
client_listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
raft_listen: %RAFT%
dns: {listen: ""}
tls: {ca_dir: %DIR%/ca}
admin_token: %TOKEN%
cluster: {bootstrap: true}
`

// A server role under systemd's Type=notify: READY=1 once it serves;
// SIGHUP (ExecReload) reloads the config file between RELOADING=1 and
// READY=1, applies what it can and refuses, by name, what needs a restart;
// STOPPING=1 on shutdown.
func TestSystemdNotifyAndReload(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	bin := longlinkBinary(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raft, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftAddr := raft.Addr().String()
	raft.Close()
	cfgPath := filepath.Join(dir, "lbs.yaml")
	write := func(token, raftListen string) {
		r := strings.NewReplacer("%DIR%", dir, "%TOKEN%", token, "%RAFT%", raftListen)
		if err := os.WriteFile(cfgPath, []byte(r.Replace(lbsReloadConfig)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("first-admin-token-0123456789", raftAddr)

	cmd := exec.Command(bin, "lbs", "-config", cfgPath, "-debug-addr", "")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	p := startCmd(t, cmd)

	next := func(want string) {
		t.Helper()
		buf := make([]byte, 512)
		ln.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := ln.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %q: %v\n%s", want, err, p.text())
		}
		if !strings.HasPrefix(string(buf[:n]), want) {
			t.Fatalf("got %q, want %q", buf[:n], want)
		}
	}
	next("READY=1")

	write("second-admin-token-0123456789", raftAddr)
	p.cmd.Process.Signal(syscall.SIGHUP)
	next("RELOADING=1\nMONOTONIC_USEC=")
	next("READY=1")
	p.waitFor(t, "applied=admin_token", 10*time.Second)

	write("second-admin-token-0123456789", "127.0.0.1:1")
	p.cmd.Process.Signal(syscall.SIGHUP)
	next("RELOADING=1")
	next("READY=1")
	p.waitFor(t, "raft_listen: changed, and applies only at start", 10*time.Second)

	p.cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1")
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// The unit file is what systemd-analyze accepts, with Type=notify and
// ExecReload sending SIGHUP after checking the file.
func TestSystemdUnitVerifies(t *testing.T) {
	b, err := os.ReadFile("../../deployments/systemd/longlink@.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"Type=notify", "ExecReload=/usr/local/bin/longlink %i -check-config", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(unit, want) {
			t.Fatalf("unit lacks %q", want)
		}
	}
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		return
	}
	// systemd-analyze checks the unit's syntax and that its commands exist:
	// point them at a real binary.
	bin := longlinkBinary(t)
	path := filepath.Join(t.TempDir(), "longlink@lbs.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/longlink", bin)), 0o644)
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
