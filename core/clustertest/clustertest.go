// Package clustertest runs a Longlink cluster of real processes for tests
// and benchmarks, the way an operator runs one: a NATS cluster of
// nats-server processes (JetStream clustered, every connection
// authenticated and on TLS from a test CA), PostgreSQL from the machine's
// binaries (a primary and, when asked, a streaming standby) and gateway-only
// and service-only `longlink core` processes started from generated YAML
// files. Every process can be killed (SIGKILL), paused (SIGSTOP), resumed
// and restarted, its output is kept in a log file, and everything is
// stopped and removed when the test ends, within a bounded time.
//
// Processes run at a Site: the address they bind and advertise and a
// command prefix (ip netns exec NAME …) that places them, so that a test
// can spread a deployment over network namespaces.
//
// No daemon imports this package.
package clustertest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/pkg/pki"
)

// Require skips t unless LONGLINK_INTEGRATION is set (`make test` sets it):
// the processes take seconds to start and a few hundred MB.
func Require(t testing.TB) {
	t.Helper()
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("multi-process test: set LONGLINK_INTEGRATION=1")
	}
}

// Site is where processes run.
type Site struct {
	// Name labels the site's processes and files.
	Name string
	// Host is the address processes bind and advertise. Default 127.0.0.1.
	Host string
	// Exec is a command prefix that places a process, e.g.
	// []string{"ip", "netns", "exec", "site-a"}; it must exec the command
	// (keep its pid), as ip netns exec does, so that signals reach it.
	Exec []string
}

func (s *Site) host() string {
	if s == nil || s.Host == "" {
		return "127.0.0.1"
	}
	return s.Host
}

// Env is the root of one test's processes: their directory, the test CA,
// the binaries, and the cleanup that stops them all.
type Env struct {
	t testing.TB
	// Dir holds every process's files (configs, data, logs).
	Dir string
	// CA signs every certificate; CAFile is its PEM.
	CA     *pki.CA
	CAFile string
	Bins   Binaries
	// Site is the default site.
	Site *Site

	mu    sync.Mutex
	procs []*Proc
	ports map[int]bool
	// atEnd run after every process stopped (network namespaces).
	atEnd []func()
}

// StopTimeout bounds the orderly stop of one process at cleanup; a process
// still there is killed.
const StopTimeout = 3 * time.Second

// New makes an environment for t: builds (or finds up to date) the
// binaries, creates the CA, and registers the cleanup that stops every
// process started through it (in reverse order) and prints the last lines
// of their logs when t failed. Set LONGLINK_CLUSTERTEST_KEEP=1 to keep the
// files of a failed test.
func New(t testing.TB) *Env {
	t.Helper()
	bins, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "longlink-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	// World-traversable: PostgreSQL runs as its own user beneath it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA("longlink clustertest CA")
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{t: t, Dir: dir, CA: ca, CAFile: filepath.Join(dir, "ca.pem"), Bins: bins, Site: &Site{Name: "local"}, ports: map[int]bool{}}
	if err := os.WriteFile(e.CAFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cleanup)
	return e
}

func (e *Env) cleanup() {
	e.mu.Lock()
	procs := append([]*Proc(nil), e.procs...)
	e.mu.Unlock()
	// The core processes first, all at once, then the engines they use
	// (a node stopping while its bus goes away would wait for it).
	for _, engines := range []bool{false, true} {
		var wg sync.WaitGroup
		for _, p := range procs {
			if p.engine != engines {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := p.Stop(StopTimeout); err != nil {
					e.t.Logf("clustertest: %v", err)
				}
			}()
		}
		wg.Wait()
	}
	e.mu.Lock()
	atEnd := e.atEnd
	e.mu.Unlock()
	for i := len(atEnd) - 1; i >= 0; i-- {
		atEnd[i]()
	}
	if e.t.Failed() {
		for _, p := range procs {
			e.t.Logf("--- %s (%s), last lines:\n%s", p.Name, p.LogPath, p.Tail(40))
		}
		if os.Getenv("LONGLINK_CLUSTERTEST_KEEP") != "" {
			e.t.Logf("clustertest: files kept in %s", e.Dir)
			return
		}
	}
	_ = os.RemoveAll(e.Dir)
}

// Procs lists every process started in the environment.
func (e *Env) Procs() []*Proc {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*Proc(nil), e.procs...)
}

// NewProc prepares a process at site (nil: e.Site) whose log goes to
// Dir/name.log; the caller starts it. The environment stops it at cleanup.
func (e *Env) NewProc(site *Site, name, bin string, args ...string) *Proc {
	if site == nil {
		site = e.Site
	}
	if len(site.Exec) > 0 {
		args = append(append(append([]string(nil), site.Exec[1:]...), bin), args...)
		bin = site.Exec[0]
	}
	p := &Proc{Name: name, Site: site, LogPath: filepath.Join(e.Dir, name+".log"), bin: bin, args: args, dir: e.Dir, stopSig: syscall.SIGTERM}
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p
}

// Port returns a port on host, free for TCP and UDP, that the environment
// has not handed out before. It is below the kernel's ephemeral range: the
// process that binds it starts later, and a port in that range may become
// the local port of some connection meanwhile (CI under a benchmark's tens
// of thousands of loopback connections: PostgreSQL 'could not bind ...
// Address already in use' on a port picked 6 s earlier; in a site's
// namespace a NATS route's). Only explicit binds take ports below the
// range, and a port someone holds fails the check here. A host that is not
// this namespace's (a site's namespace, the test's own) cannot be checked.
func (e *Env) Port(host string) int {
	e.t.Helper()
	lo, hi := 10000, ephemeralLow()
	for range 1000 {
		p := lo + mrand.IntN(hi-lo)
		e.mu.Lock()
		fresh := !e.ports[p]
		e.ports[p] = true
		e.mu.Unlock()
		if !fresh {
			continue
		}
		addr := net.JoinHostPort(host, strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			return p
		}
		if err != nil {
			continue
		}
		ln.Close()
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		pc.Close()
		return p
	}
	e.t.Fatalf("clustertest: no free port on %s in %d..%d", host, lo, hi)
	return 0
}

// ephemeralLow is the start of the kernel's ephemeral port range (Linux's
// default 32768 in a new namespace; that too when it cannot be read or
// leaves too little room below).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 20000 {
		return 32768
	}
	return n
}

// Addr is host:port with a fresh port.
func (e *Env) Addr(host string) string {
	return net.JoinHostPort(host, strconv.Itoa(e.Port(host)))
}

// Cert issues a certificate for names (valid for server and client
// authentication) and writes it and its key as PEM files dir/name.pem and
// dir/name-key.pem.
func (e *Env) Cert(dir, name string, names ...string) (certFile, keyFile string) {
	e.t.Helper()
	c, err := e.CA.Issue(name, names...)
	if err != nil {
		e.t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := writeCert(c, certFile, keyFile); err != nil {
		e.t.Fatal(err)
	}
	return certFile, keyFile
}

func writeCert(c tls.Certificate, certFile, keyFile string) error {
	var certPEM []byte
	for _, der := range c.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// Secret writes a random secret to dir/name (mode 0600) and returns it and
// the file's path.
func (e *Env) Secret(dir, name string) (value, path string) {
	e.t.Helper()
	var b [18]byte
	_, _ = rand.Read(b[:])
	value = hex.EncodeToString(b[:])
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(value+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return value, path
}

// MkDir makes Dir/name.
func (e *Env) MkDir(name string) string {
	e.t.Helper()
	d := filepath.Join(e.Dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		e.t.Fatal(err)
	}
	return d
}

// errExited: the process waited for has exited, so waiting longer for it
// to be ready is pointless.
var errExited = errors.New("exited")

// poll calls f until it returns nil or timeout passes (then its last
// error); an errExited ends it at once.
func poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if errors.Is(err, errExited) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
