package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/store"
)

const benchAppKey = "bench"

// server is a core server process under test.
type server struct {
	cmd       *exec.Cmd
	argv, env []string // to start it again (restart)
	dir       string
	linkAddr  string
	webAddr   string // WebLink's base URL (serverOpts.weblink)
	debugAddr string
	key       link.KeyPair
}

type serverOpts struct {
	bin   string
	cpu   string // taskset CPU list; "" = not pinned
	users int
	extra string // extra top-level YAML
	env   []string
	// weblink also runs WebLink (Socket.IO) on a free port.
	weblink bool
	// seed, when set, prepares more of the store after the users (bulk
	// data such as large groups) before the server starts.
	seed func(ctx context.Context, dbPath string) error
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func account(i int) string { return "u" + strconv.Itoa(i) }
func token(i int) string   { return "bench-token-" + strconv.Itoa(i) }

// seedUsers creates n users with known tokens directly in the SQLite store
// the server will open (much faster than n calls to the server API).
func seedUsers(ctx context.Context, dbPath string, n int) error {
	st, err := openSeedStore(ctx, dbPath)
	if err != nil {
		return err
	}
	defer st.Close()
	const batch = 500
	for i := 0; i < n; i += batch {
		var us []service.SeedUser
		for j := i; j < min(i+batch, n); j++ {
			us = append(us, service.SeedUser{Account: account(j), Token: token(j)})
		}
		if _, err := service.Seed(ctx, st, benchAppKey, us, 24*time.Hour); err != nil {
			return err
		}
	}
	return nil
}

func startServer(ctx context.Context, o serverOpts) (*server, error) {
	dir, err := os.MkdirTemp("", "loadgen-core")
	if err != nil {
		return nil, err
	}
	s := &server{dir: dir}
	if s.key, err = link.GenerateKey("bench-1"); err != nil {
		return nil, err
	}
	if s.linkAddr, err = freePort(); err != nil {
		return nil, err
	}
	if s.debugAddr, err = freePort(); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := seedUsers(ctx, filepath.Join(dir, "core.db"), o.users); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	progress("seeded %d users in %s", o.users, time.Since(start).Round(time.Millisecond))
	if o.seed != nil {
		start = time.Now()
		if err := o.seed(ctx, filepath.Join(dir, "core.db")); err != nil {
			return nil, fmt.Errorf("seed: %w", err)
		}
		progress("seeded the rest in %s", time.Since(start).Round(time.Millisecond))
	}
	web := ""
	if o.weblink {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		s.webAddr = "http://" + addr
		web = fmt.Sprintf("weblink: {listen: %q, max_sessions_per_ip: -1, demo_page: false}\n", addr)
	}
	cfg := fmt.Sprintf(`data_dir: %s
debug_listen: %s
roles: {services: true, gateway: true, server_api: false, weblink: %t}
bus: {listen: ""}
service:
  apps:
    - {appkey: %s, secret: bench-app-secret-0123456789, devices: allow_all, heartbeat: 60s}
gateway:
  listen: %s
  keys: [{id: %s, private_key: %s}]
  heartbeat: 60s
  max_connections_per_ip: -1
  request_rate: 100000
  request_burst: 100000
  max_inflight: 4096
%s%s`, dir, s.debugAddr, o.weblink, benchAppKey, s.linkAddr, s.key.ID, link.EncodeKey(s.key.Private), web, o.extra)
	cfgPath := filepath.Join(dir, "core.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	argv := []string{o.bin, "core", "-config", cfgPath, "-log-level", "warn"}
	if o.cpu != "" {
		if _, err := exec.LookPath("taskset"); err == nil {
			argv = append([]string{"taskset", "-c", o.cpu}, argv...)
		} else {
			progress("taskset not found: the server is not pinned")
		}
	}
	s.argv, s.env = argv, o.env
	if err := s.launch(); err != nil {
		return nil, err
	}
	progress("server pid %d listening on %s (cpu %q)", s.cmd.Process.Pid, s.linkAddr, o.cpu)
	return s, nil
}

// launch starts the server process and waits until it listens.
func (s *server) launch() error {
	s.cmd = exec.Command(s.argv[0], s.argv[1:]...)
	s.cmd.Stdout = os.Stderr
	s.cmd.Stderr = os.Stderr
	s.cmd.Env = append(os.Environ(), s.env...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	return s.waitListening()
}

// kill9 kills the server process with SIGKILL and reaps it.
func (s *server) kill9() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

func (s *server) waitListening() error {
	deadline := time.Now().Add(60 * time.Second)
	addrs := []string{s.linkAddr}
	if s.webAddr != "" {
		addrs = append(addrs, strings.TrimPrefix(s.webAddr, "http://"))
	}
	for _, addr := range addrs {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				s.stop()
				return fmt.Errorf("server did not listen on %s", addr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func (s *server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
		}
	}
	_ = os.RemoveAll(s.dir)
}

// rss is the server's resident set size in bytes (the process that holds the
// sockets: with taskset the child of taskset is exec'd in place).
func (s *server) rss() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}

// cpuTime is the CPU time (user + system) the server process has used.
func (s *server) cpuTime() (time.Duration, error) { return procCPUTime(s.cmd.Process.Pid) }

// procCPUTime is the CPU time (user + system) a process has used, from
// /proc/<pid>/stat in clock ticks of 10ms (USER_HZ is 100 on Linux).
func procCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields", len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: utime %q stime %q", f[11], f[12])
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// fetchProfile saves a CPU profile of the server.
func fetchProfile(debugAddr, path string, d time.Duration) error {
	secs := max(1, int(d.Seconds())-1)
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", debugAddr, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// dumpMetrics prints the server's metrics whose names start with a prefix.
func dumpMetrics(debugAddr string, prefixes []string) {
	resp, err := http.Get("http://" + debugAddr + "/metrics")
	if err != nil {
		progress("metrics: %v", err)
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		for _, p := range prefixes {
			if strings.HasPrefix(sc.Text(), p) {
				progress("%s", sc.Text())
			}
		}
	}
}

// openSeedStore opens the SQLite store at dbPath to seed it before the
// server starts (synchronous=normal: seeding is not what is measured).
func openSeedStore(ctx context.Context, dbPath string) (store.Store, error) {
	cfg := store.Default()
	cfg.Path = dbPath
	cfg.Synchronous = "normal"
	return store.Open(ctx, cfg, store.Deps{})
}
