package clustertest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
)

// Binaries are the programs the processes run.
type Binaries struct {
	// NATSServer is nats-server built from the module in go.mod: the same
	// version as the bus's embedded server.
	NATSServer string
	// Longlink is this repository's binary.
	Longlink string
	// PGBin is the directory of PostgreSQL's server programs (initdb,
	// postgres, pg_basebackup), from the machine's packages.
	PGBin string
	// PGTemplate is an initdb data directory (owned by the postgres user
	// when running as root) that primaries start as a copy of.
	PGTemplate string
}

var (
	buildOnce sync.Once
	buildBins Binaries
	buildErr  error
)

// Build compiles nats-server and longlink into a cache directory (once per
// test binary; `go build` relinks only what changed) and finds PostgreSQL.
// Test binaries of several packages may build at once: a file lock keeps
// them from writing the same file together.
func Build() (Binaries, error) {
	buildOnce.Do(func() { buildBins, buildErr = build() })
	return buildBins, buildErr
}

func build() (Binaries, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	// One directory per checkout: test binaries of other worktrees on the
	// machine build their own longlink, which must not replace this one's.
	root, err := moduleRoot()
	if err != nil {
		return Binaries{}, err
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(cache, "longlink-clustertest", hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Binaries{}, fmt.Errorf("clustertest: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return Binaries{}, fmt.Errorf("clustertest: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return Binaries{}, fmt.Errorf("clustertest: lock %s: %w", dir, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	b := Binaries{NATSServer: filepath.Join(dir, "nats-server"), Longlink: filepath.Join(dir, "longlink")}
	for _, x := range []struct{ out, pkg string }{
		{b.NATSServer, "github.com/nats-io/nats-server/v2"},
		{b.Longlink, "github.com/longlink/longlink/cmd/longlink"},
	} {
		cmd := exec.Command("go", "build", "-o", x.out, x.pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			return Binaries{}, fmt.Errorf("clustertest: go build %s: %v\n%s", x.pkg, err, out)
		}
	}
	if b.PGBin, err = pgBin(); err != nil {
		return Binaries{}, err
	}
	if b.PGTemplate, err = pgTemplate(dir, b.PGBin); err != nil {
		return Binaries{}, err
	}
	return b, nil
}

// moduleRoot is the directory of the go.mod above the working directory
// (a test runs in its package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("clustertest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("clustertest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// pgBin finds the newest /usr/lib/postgresql/*/bin with initdb (Debian's
// layout; tools/testdeps/install.sh installs the package).
func pgBin() (string, error) {
	ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(ms) == 0 {
		return "", fmt.Errorf("clustertest: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (install the postgresql package; make test does)")
	}
	// Glob sorts lexically; versions 10+ have two digits, so the last is the newest.
	return filepath.Dir(ms[len(ms)-1]), nil
}
