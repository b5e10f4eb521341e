package clustertest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one child process: started from a binary with fixed arguments, its
// output appended to a log file, and controlled by signals. A Proc can be
// started again after it exited or was killed (Restart), with the same
// arguments, files and ports.
type Proc struct {
	Name    string
	LogPath string
	// Site is where it runs.
	Site *Site

	bin  string
	args []string
	dir  string
	env  []string
	cred *syscall.Credential
	// stopSig asks for a quick orderly stop (SIGTERM; PostgreSQL: SIGQUIT).
	stopSig syscall.Signal
	// engine: stopped at cleanup after the processes that use it.
	engine bool

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current run ends
	err    error         // the current run's exit status
	paused bool
}

// Start runs the process (again). It returns once the process exists, not
// when it is ready: each kind of process has its own readiness check.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.exited) {
		return fmt.Errorf("clustertest: %s is already running", p.Name)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== clustertest: start %s at %s\n", p.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group (a ^C to the test does not reach it
		// first), and killed when the test binary dies (see spawner).
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: p.cred,
	}
	if err := spawn(cmd); err != nil {
		logf.Close()
		return fmt.Errorf("clustertest: start %s: %w", p.Name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.err, p.paused = cmd, exited, nil, false
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

// Pid is the current run's process id (0 when never started).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the process is alive (paused counts as alive).
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.exited)
}

// Exited is closed when the current run ends.
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.exited
}

// ExitErr is the current run's exit status once it has exited.
func (p *Proc) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *Proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || isClosed(p.exited) {
		return fmt.Errorf("clustertest: %s is not running", p.Name)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.paused = true
	case syscall.SIGCONT:
		p.paused = false
	}
	return p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	return p.wait(10 * time.Second)
}

// Pause stops the process (SIGSTOP): it keeps its sockets and locks but
// runs nothing, as a process in a GC storm or on a stuck disk.
func (p *Proc) Pause() error { return p.signal(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (p *Proc) Resume() error { return p.signal(syscall.SIGCONT) }

// Stop asks the process to stop in order (SIGTERM, PostgreSQL: SIGQUIT)
// and kills it if it has not exited within timeout.
func (p *Proc) Stop(timeout time.Duration) error {
	if !p.Running() {
		return nil
	}
	p.mu.Lock()
	paused := p.paused
	p.mu.Unlock()
	if paused {
		_ = p.signal(syscall.SIGCONT)
	}
	if err := p.signal(p.stopSig); err != nil {
		return nil // exited meanwhile
	}
	if p.wait(timeout) == nil {
		return nil
	}
	_ = p.signal(syscall.SIGKILL)
	return p.wait(5 * time.Second)
}

// Restart kills the process if it runs and starts it again.
func (p *Proc) Restart() error {
	if p.Running() {
		if err := p.Kill(); err != nil {
			return err
		}
	}
	return p.Start()
}

func (p *Proc) wait(timeout time.Duration) error {
	select {
	case <-p.Exited():
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("clustertest: %s did not exit within %v", p.Name, timeout)
	}
}

// Log is the process's whole log so far (every run).
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Tail is the last n lines of the log.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.LogPath)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// WaitLog waits until the log contains substr.
func (p *Proc) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(p.Log(), substr) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clustertest: %s: %q not logged within %v", p.Name, substr, timeout)
		}
		select {
		case <-p.Exited():
			if !strings.Contains(p.Log(), substr) {
				return fmt.Errorf("clustertest: %s exited before logging %q", p.Name, substr)
			}
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// CPUTime is the CPU time (user and system) the process and its
// descendants (PostgreSQL's backends) have used so far, from /proc; 0 when
// it is not running or there is no /proc.
func (p *Proc) CPUTime() time.Duration {
	pid := p.Pid()
	if pid <= 0 {
		return 0
	}
	var sum time.Duration
	for _, q := range append([]int{pid}, descendants(pid)...) {
		sum += procCPU(q)
	}
	return sum
}

// procCPU is pid's own utime + stime (clock ticks of 10 ms, Linux's
// USER_HZ).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	// After comm: state(0) ppid … utime(11) stime(12).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// descendants are the processes below pid (children, their children, …),
// read from /proc; none where there is no /proc.
func descendants(pid int) []int {
	if pid <= 0 {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	kids := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			kids[ppid] = append(kids[ppid], p)
		}
	}
	var out []int
	next := []int{pid}
	for len(next) > 0 {
		p := next[0]
		next = next[1:]
		out = append(out, kids[p]...)
		next = append(next, kids[p]...)
	}
	return out
}

func isClosed(c chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Children are started from one goroutine locked to its own OS thread that
// never exits: Pdeathsig fires when the thread that forked the child ends,
// so forking from arbitrary goroutines could kill a child when the Go
// runtime retires a thread, not when the test binary dies.
var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the binary
			for r := range spawnCh {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnCh <- r
	err := <-r.done
	if err != nil && errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("%s: %w", cmd.Path, err)
	}
	return err
}
