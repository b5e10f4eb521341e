package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestWebSDK runs the Web SDK's end-to-end tests (core/sdk/web/e2e) against
// the real binary: `longlink dev` (killed and restarted by one of them),
// headless Chromium users through the edge and directly, the demo page with
// the LBS, a chatroom shared with `longlink chat` (the Go SDK), and a
// Node.js bot.
func TestWebSDK(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	web, err := filepath.Abs("../../core/sdk/web")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(web, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("node modules missing in %s: run tools/testdeps/install.sh (%v)", web, err)
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("chromium is not installed (tools/testdeps/install.sh installs it)")
	}
	bin := filepath.Join(t.TempDir(), "longlink")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	portBase := freeDevPortBase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"npm", "run", "build"}, // the Node.js bot uses dist/index.cjs
		{"node", "--test", "--test-reporter=spec", "--test-concurrency=1", "e2e/"},
	} {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = web
		// its own block of ports (e2e/procs.mjs passes it to longlink dev)
		cmd.Env = append(os.Environ(), "LONGLINK_BIN="+bin, "LONGLINK_DEV_PORT_BASE="+strconv.Itoa(portBase))
		// The tests start `longlink dev`, `longlink chat` and Chromium: on a
		// timeout the whole process group goes, so none outlives the test.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		t.Logf("%v:\n%s", args, out)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
}
