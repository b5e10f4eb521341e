package deployments

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/longlink/longlink/core/clustertest"
)

// TestClusterWalkthrough runs docs/cluster.md the way an operator starts:
// its `# prepare` block (secrets and certificates, with the real longlink
// binary) and its `# check` block (every config through -check-config), in
// a scratch directory holding deployments/. Every config in
// deployments/cluster must be checked there, and every file the document
// names must exist. In integration mode the NATS configs also pass
// `nats-server -t`.
func TestClusterWalkthrough(t *testing.T) {
	doc, err := os.ReadFile("../docs/cluster.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := shellBlocks(string(doc))
	if blocks["# prepare"] == "" || blocks["# check"] == "" {
		t.Fatalf("docs/cluster.md lacks its # prepare or # check block (found %d blocks)", len(blocks))
	}
	for _, f := range regexp.MustCompile(`deployments/cluster/[A-Za-z0-9_.-]+`).FindAllString(string(doc), -1) {
		if _, err := os.Stat(filepath.Join("..", f)); err != nil {
			t.Errorf("docs/cluster.md names %s: %v", f, err)
		}
	}
	configs, _ := filepath.Glob("cluster/*.yaml")
	for _, f := range configs {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "policy") {
			continue // the LBS's policies: lbs TestDeployments validates them
		}
		if !strings.Contains(blocks["# check"], "deployments/cluster/"+base+" -check-config") {
			t.Errorf("%s is not checked by docs/cluster.md's # check block", f)
		}
	}

	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "longlink"), "../cmd/longlink")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	work := t.TempDir()
	abs, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(abs, filepath.Join(work, "deployments")); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, name := range []string{"# prepare", "# check"} {
		cmd := exec.Command("sh", "-e", "-c", blocks[name])
		cmd.Dir, cmd.Env = work, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docs/cluster.md %s block: %v\n%s", name, err, out)
		}
	}

	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		return
	}
	bins, err := clustertest.Build()
	if err != nil {
		t.Fatal(err)
	}
	nats, _ := filepath.Glob("cluster/nats-*.conf")
	if len(nats) != 3 {
		t.Fatalf("want 3 NATS configs, found %v", nats)
	}
	for _, f := range nats {
		cmd := exec.Command(bins.NATSServer, "-t", "-c", filepath.Join("deployments", f))
		cmd.Dir, cmd.Env = work, append(env, "NATS_PASSWORD=test-password")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("nats-server -t %s: %v\n%s", f, err, out)
		}
	}
}

// shellBlocks returns the ```sh blocks of a Markdown text, keyed by their
// first line (a "# name" comment).
func shellBlocks(md string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(md))
	var block []string
	in := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && line == "```sh":
			in, block = true, nil
		case in && line == "```":
			in = false
			if len(block) > 0 {
				out[strings.TrimSpace(block[0])] = strings.Join(block, "\n")
			}
		case in:
			block = append(block, line)
		}
	}
	return out
}
