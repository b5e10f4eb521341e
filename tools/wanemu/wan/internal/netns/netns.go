// Package netns creates and deletes named network namespaces (the ones `ip
// netns` manages under /var/run/netns), runs code inside them, and opens TUN
// devices in them. Everything here needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Dir is where iproute2 keeps its named namespaces.
const Dir = "/var/run/netns"

// Prefix starts the name of every namespace the emulator creates. The owning
// process's pid follows it, so stale namespaces of crashed runs can be told
// apart from those of runs still alive.
const Prefix = "llw-"

// Name returns the namespace name for node of the world owned by pid.
func Name(pid int, world, node string) string {
	return fmt.Sprintf("%s%d-%s-%s", Prefix, pid, world, node)
}

// Owner returns the pid encoded in a namespace name made by Name.
func Owner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return 0, false
	}
	pidText, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// Supported reports why the emulator cannot run here, or nil.
func Supported() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces and TUN devices)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("no TUN support: %w", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("iproute2 missing: %w", err)
	}
	return nil
}

// IP runs the ip(8) command and returns its error output with the error.
func IP(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Add creates the named namespace.
func Add(ctx context.Context, name string) error {
	return IP(ctx, "netns", "add", name)
}

// Delete removes the named namespace. Processes still inside keep it alive
// until they exit, but it disappears from /var/run/netns at once.
func Delete(ctx context.Context, name string) error {
	return IP(ctx, "netns", "delete", name)
}

// List returns the names of the namespaces whose name starts with Prefix.
func List() ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netns: list: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), Prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Stale returns the emulator's namespaces whose owning process is gone.
func Stale() ([]string, error) {
	names, err := List()
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, n := range names {
		pid, ok := Owner(n)
		if !ok {
			continue
		}
		if !alive(pid) {
			stale = append(stale, n)
		}
	}
	return stale, nil
}

// alive reports whether pid is a running process (a zombie is not: it has
// died and only waits for its parent to notice).
func alive(pid int) bool {
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state …; comm may contain spaces and parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// Do runs fn on an OS thread that has joined the named namespace. Sockets
// created by fn stay in that namespace for their whole life, so fn can listen
// or dial and hand the result back. The calling goroutine's thread is never
// moved.
func Do(name string, fn func() error) error {
	target, err := os.Open(filepath.Join(Dir, name))
	if err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		// This goroutine's thread is switched and never switched back: it
		// exits with the goroutine (LockOSThread without Unlock), so no other
		// goroutine ever runs in the wrong namespace.
		runtime.LockOSThread()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns %s: setns: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Command returns a command that runs argv inside the named namespace via
// `ip netns exec`. It starts in its own process group so that killing the
// group takes down everything it spawned.
func Command(ctx context.Context, name string, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", name}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// Spawner starts commands from one OS thread that lives until Close, with
// the parent-death signal set to SIGKILL. The kernel sends that signal when
// the thread that forked a child exits — in Go any thread may exit (a locked
// thread does when its goroutine ends), so commands started from arbitrary
// goroutines would be killed at random. From the spawner's thread the signal
// comes only when the whole process dies, even by SIGKILL: children never
// outlive a crashed emulator.
type Spawner struct {
	reqs chan spawnReq
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

// NewSpawner starts the spawner's thread.
func NewSpawner() *Spawner {
	s := &Spawner{reqs: make(chan spawnReq), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(s.done)
		for {
			select {
			case r := <-s.reqs:
				if r.cmd.SysProcAttr == nil {
					r.cmd.SysProcAttr = &syscall.SysProcAttr{}
				}
				r.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
				r.err <- r.cmd.Start()
			case <-s.stop:
				return
			}
		}
	}()
	return s
}

// Start starts cmd from the spawner's thread.
func (s *Spawner) Start(cmd *exec.Cmd) error {
	r := spawnReq{cmd: cmd, err: make(chan error, 1)}
	select {
	case s.reqs <- r:
		return <-r.err
	case <-s.done:
		return errors.New("netns: spawner closed")
	}
}

// Close stops the spawner; it is idempotent. Children it started receive
// their parent-death signal when its thread exits, which it does only with
// the process (the thread is handed back to the runtime, not terminated).
func (s *Spawner) Close() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// Tun is an open TUN device (layer 3, no packet information header).
type Tun struct {
	*os.File
	Name string
}

// OpenTun creates the TUN device dev inside the named namespace and returns
// it. The device lives as long as the file stays open.
func OpenTun(ns, dev string) (*Tun, error) {
	var f *os.File
	err := Do(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		var req [unix.IFNAMSIZ + 64]byte
		copy(req[:unix.IFNAMSIZ-1], dev)
		*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TUN | unix.IFF_NO_PI
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.TUNSETIFF), uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", dev, errno)
		}
		// Non-blocking so that the runtime poller owns it and Close
		// interrupts a pending Read.
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return fmt.Errorf("tun %s: %w", dev, err)
		}
		f = os.NewFile(uintptr(fd), "/dev/net/tun:"+dev)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", ns, err)
	}
	return &Tun{File: f, Name: dev}, nil
}
