package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The first five minutes (SCENARIOS.md §1), with the real binary: `longlink
// dev` starts everything and prints its table; alice (through the edge) and
// bob (direct) chat both ways and see sequence numbers; `ctl explain`
// answers; Ctrl-C stops cleanly; a second `longlink dev` still has the
// messages.
func TestFirstFiveMinutes(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	bin := longlinkBinary(t)
	dir := t.TempDir()

	// a block of ports of its own: tests run in parallel, and so may a
	// developer's dev on the default 7700
	base := freeDevPortBase(t)
	pb := strconv.Itoa(base)
	dev := startProc(t, bin, "dev", "-dir", dir, "-log-level", "info", "-port-base", pb)
	dev.waitFor(t, "longlink chat --user bob", 2*time.Minute) // the last line of the table
	for _, want := range []string{"Link via edge", devAddr(base, 20), "user alice", "user bob", "demo page", "login tokens", "token v1.dev1."} {
		if !strings.Contains(dev.text(), want) {
			t.Fatalf("dev table lacks %q:\n%s", want, dev.text())
		}
	}
	// rows: a label, then its address in the next column (however wide the
	// longest label makes it)
	for _, row := range [][2]string{
		{"LBS DNS (udp, tcp)", devAddr(base, 53)}, {"LBS admin, console", "https://" + devAddr(base, 1) + "/console/"},
		{"metrics, health", "http://" + devAddr(base, 19) + "/metrics"}, {"NATS (embedded)", "nats://" + devAddr(base, 14)},
		{"relay, core egress", devAddr(base, 40) + ", " + devAddr(base, 45)},
	} {
		if !regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(row[0]) + `  +` + regexp.QuoteMeta(row[1])).MatchString(dev.text()) {
			t.Fatalf("dev table lacks the row %q %q:\n%s", row[0], row[1], dev.text())
		}
	}
	// a healthy start logs no warnings
	if strings.Contains(dev.text(), "level=WARN") || strings.Contains(dev.text(), "level=ERROR") {
		t.Fatalf("a healthy dev start logged warnings:\n%s", dev.text())
	}
	// a second dev in the same place stops at once, writing nothing
	state, _ := os.Stat(filepath.Join(dir, "dev.json"))
	second, err := exec.Command(bin, "dev", "-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(second), "another longlink dev (pid ") || !strings.Contains(string(second), "is running in "+dir) {
		t.Fatalf("second dev in %s: %v\n%s", dir, err, second)
	}
	if again, _ := os.Stat(filepath.Join(dir, "dev.json")); !again.ModTime().Equal(state.ModTime()) {
		t.Fatal("the second dev wrote dev.json")
	}

	bob := startProc(t, bin, "chat", "-dir", dir, "-user", "bob", "-to", "alice", "-direct")
	bob.waitFor(t, "(connected)", 20*time.Second)
	alice := startProc(t, bin, "chat", "-dir", dir, "-user", "alice", "-to", "bob")
	alice.waitFor(t, "(connected)", 20*time.Second)
	if !strings.Contains(alice.text(), devAddr(base, 20)) {
		t.Fatalf("alice did not go through the edge:\n%s", alice.text())
	}

	alice.say(t, "hello bob, this is alice")
	bob.waitFor(t, "alice: hello bob, this is alice", 15*time.Second)
	bob.say(t, "hi alice")
	alice.waitFor(t, "bob: hi alice", 15*time.Second)
	if !strings.Contains(bob.text(), "[seq ") {
		t.Fatalf("bob's view shows no sequence numbers:\n%s", bob.text())
	}

	// A super-group (read diffusion) works the same way from the chat.
	alice.say(t, "/screate everyone bob")
	alice.waitFor(t, "created super-group", 15*time.Second)
	bob.waitFor(t, "joined by alice", 15*time.Second)
	alice.say(t, "hello everyone")
	bob.waitFor(t, "alice in s", 15*time.Second)
	bob.waitFor(t, ": hello everyone", 15*time.Second)

	explain, err := exec.Command(bin, "ctl", "-ctl-config", filepath.Join(dir, "lbs", "ctl.yaml"),
		"explain", "--appkey", "demo", "--ip", "8.8.8.8").CombinedOutput()
	if err != nil || !strings.Contains(string(explain), "edge-1") {
		t.Fatalf("ctl explain: %v\n%s", err, explain)
	}

	// an operator changes the policy; the restart keeps it
	ctlConf := filepath.Join(dir, "lbs", "ctl.yaml")
	policy, err := exec.Command(bin, "ctl", "-ctl-config", ctlConf, "policy", "get").Output()
	if err != nil {
		t.Fatalf("ctl policy get: %v", err)
	}
	changed := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(changed, []byte(strings.Replace(string(policy), "description:", "description: changed by an operator;", 1)), 0o600)
	if out, err := exec.Command(bin, "ctl", "-ctl-config", ctlConf, "policy", "apply", "-f", changed, "-m", "operator change").CombinedOutput(); err != nil {
		t.Fatalf("ctl policy apply: %v\n%s", err, out)
	}

	alice.stop(t)
	bob.stop(t)
	dev.interrupt(t, 20*time.Second)

	dev2 := startProc(t, bin, "dev", "-dir", dir, "-port-base", pb)
	dev2.waitFor(t, "longlink chat --user bob", 2*time.Minute)
	hist, err := exec.Command(bin, "ctl", "-ctl-config", ctlConf, "-o", "json", "policy", "history").Output()
	if err != nil || strings.Count(string(hist), `"version"`) != 2 || !strings.Contains(string(hist), `"comment": "operator change"`) {
		t.Fatalf("after a restart the history should end with the operator's version 2: %v\n%s", err, hist)
	}
	if live, _ := exec.Command(bin, "ctl", "-ctl-config", ctlConf, "policy", "get").Output(); !strings.Contains(string(live), "changed by an operator") {
		t.Fatalf("the restart replaced the operator's policy:\n%s", live)
	}
	carol := startProc(t, bin, "chat", "-dir", dir, "-user", "bob", "-to", "alice", "-direct")
	carol.waitFor(t, "(connected)", 20*time.Second)
	carol.say(t, "/history 10")
	carol.waitFor(t, "hello bob, this is alice", 15*time.Second)
	carol.stop(t)
	dev2.interrupt(t, 20*time.Second)
}

// proc is a child process whose output is collected for assertions.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   strings.Builder
	seen  chan struct{}
	done  chan error
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	return startCmd(t, cmd)
}

// startCmd starts a prepared command (its own environment, directory).
func startCmd(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	args := cmd.Args[1:]
	p := &proc{cmd: cmd, seen: make(chan struct{}, 1), done: make(chan error, 1)}
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	r, w := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
	}()
	go func() { p.done <- p.cmd.Wait(); w.Close() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("output of %v:\n%s", args, p.text())
		}
	})
	return p
}

func (p *proc) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) waitFor(t *testing.T, s string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !strings.Contains(p.text(), s) {
		select {
		case <-p.seen:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("%v: no %q within %s; output:\n%s", p.cmd.Args, s, d, p.text())
		}
	}
}

func (p *proc) say(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.say(t, "/quit")
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%v did not quit", p.cmd.Args)
	}
}

// interrupt is Ctrl-C: the process must exit cleanly within d.
func (p *proc) interrupt(t *testing.T, d time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("%v exited with %v after Ctrl-C; output:\n%s", p.cmd.Args, err, p.text())
		}
	case <-time.After(d):
		t.Fatalf("%v still running %s after Ctrl-C", p.cmd.Args, d)
	}
}
