package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/longlink/longlink/lbs"
	"github.com/longlink/longlink/pkg/config"
)

const ctlTestToken = "ctl-test-admin-token-0123456789"

// startCtlLBS runs a one-member LBS on free loopback ports with the lbs
// package's test policy, and writes a ctl config file for it.
func startCtlLBS(t *testing.T) (ctlConfig string) {
	t.Helper()
	dir := t.TempDir()
	cfg := lbs.Default()
	cfg.NodeID, cfg.DataDir = "lbs1", dir
	cfg.ClientListen, cfg.AdminListen, cfg.RaftListen, cfg.DNS.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.TLS.CADir = filepath.Join(dir, "ca")
	cfg.AdminToken = config.NewSecret(ctlTestToken)
	cfg.Cluster.Bootstrap = true
	cfg.InitialPolicy = "../../lbs/testdata/policy.yaml"
	l, err := lbs.New(cfg, lbs.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Shutdown(ctx)
	})
	ca := filepath.Join(dir, "ca", "ca.pem")
	b, _ := yaml.Marshal(map[string]string{"server": "https://" + l.AdminAddr().String(), "token": ctlTestToken, "ca_file": ca})
	ctlConfig = filepath.Join(dir, "ctl.yaml")
	if err := os.WriteFile(ctlConfig, b, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err := runCtlOut(ctlConfig, "policy", "history"); err == nil && !strings.Contains(out, "(none)") {
			return ctlConfig
		}
		if time.Now().After(deadline) {
			t.Fatal("LBS not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func runCtlOut(ctlConfig string, args ...string) (string, error) {
	var out bytes.Buffer
	err := ctl(context.Background(), append([]string{"-ctl-config", ctlConfig}, args...), &out)
	return out.String(), err
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

// ctl prints tables by default and JSON with -o json; policy diff exits 1
// on differences; each failure has its own exit code.
func TestCtlOutputAndExitCodes(t *testing.T) {
	cc := startCtlLBS(t)
	policy := "../../lbs/testdata/policy.yaml"

	out, err := runCtlOut(cc, "nodes")
	if err != nil || !strings.HasPrefix(out, "ID ") || !strings.Contains(out, "HEALTH") || !strings.Contains(out, "edge-sg ") {
		t.Fatalf("nodes table: %v\n%s", err, out)
	}
	out, err = runCtlOut(cc, "nodes", "-o", "json")
	if err != nil || !strings.HasPrefix(out, "[") || !strings.Contains(out, `"id": "edge-sg"`) {
		t.Fatalf("nodes json: %v\n%s", err, out)
	}
	// topology: the map the console draws, not the policy's (empty) uplinks
	out, err = runCtlOut(cc, "-o", "json", "topology")
	if err != nil || !strings.Contains(out, `"leader_id": "lbs1"`) || !strings.Contains(out, `"id": "edge-sg"`) || !strings.Contains(out, `"topology": []`) {
		t.Fatalf("topology json: %v %q", err, out)
	}
	out, err = runCtlOut(cc, "topology")
	if err != nil || !strings.Contains(out, "LBS: leader lbs1, term ") || !regexp.MustCompile(`(?m)^lbs1\s+127\.0\.0\.1:\d+\s+Voter\s+yes`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^sg\s+edge-sg\s+edge\s+`).MatchString(out) || !strings.Contains(out, "UPLINKS") || strings.Contains(out, "null") {
		t.Fatalf("topology table: %v\n%s", err, out)
	}
	out, err = runCtlOut(cc, "token", "list")
	if err != nil || !strings.Contains(out, "admin") || !strings.Contains(out, "config") {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	// Candidates with their sites; which two edges is a weighted shuffle
	// (no coordinates for this address).
	out, err = runCtlOut(cc, "explain", "-appkey", "demo", "-ip", "9.9.9.9")
	if err != nil || !strings.Contains(out, "policy version") || !strings.Contains(out, "STEP") || strings.Contains(out, "SERVICE NODES") ||
		!regexp.MustCompile(`(?m)^candidates\s+edge-\w+ \(\w+\), edge-\w+ \(\w+\)`).MatchString(out) {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	// With an account, which service nodes serve it (no gateway reports here).
	out, err = runCtlOut(cc, "explain", "-appkey", "demo", "-account", "alice")
	if err != nil || !strings.Contains(out, "SERVICE NODES OF alice") || !strings.Contains(out, "no gateway reports its routing") {
		t.Fatalf("explain -account: %v\n%s", err, out)
	}

	if out, err := runCtlOut(cc, "policy", "diff", "-f", policy); exitCode(err) != 0 || !strings.Contains(out, "no changes") {
		t.Fatalf("diff of the same policy: %v\n%s", err, out)
	}
	changed := filepath.Join(t.TempDir(), "p.yaml")
	b, _ := os.ReadFile(policy)
	os.WriteFile(changed, bytes.Replace(b, []byte("count: 2"), []byte("count: 3"), 1), 0o600)
	if out, err := runCtlOut(cc, "policy", "diff", "-f", changed); exitCode(err) != ctlExitDiffers || !strings.Contains(out, "+ ") {
		t.Fatalf("diff of a changed policy: exit %d\n%s", exitCode(err), out)
	}
	os.WriteFile(changed, []byte("apps: [{appkey: Bad}]\n"), 0o600)
	if _, err := runCtlOut(cc, "policy", "validate", "-f", changed); exitCode(err) != ctlExitDiffers || !strings.Contains(err.Error(), "appkey") {
		t.Fatalf("validate of a bad policy: %v", err)
	}
	out, err = runCtlOut(cc, "sites")
	if err != nil || !strings.HasPrefix(out, "SITE ") || !strings.Contains(out, "LOAD") || !strings.Contains(out, "edge-sg") {
		t.Fatalf("sites table: %v\n%s", err, out)
	}
	if out, err = runCtlOut(cc, "site", "drain", "sg"); err != nil || !strings.Contains(out, "drained site sg: [edge-sg]") {
		t.Fatalf("site drain: %v\n%s", err, out)
	}
	if out, err = runCtlOut(cc, "sites"); err != nil || !strings.Contains(out, "edge-sg") {
		t.Fatalf("sites after the drain: %v\n%s", err, out)
	}
	if _, err := runCtlOut(cc, "site", "undrain", "sg"); err != nil {
		t.Fatalf("site undrain: %v", err)
	}
	if _, err := runCtlOut(cc, "site", "drain", "nowhere"); exitCode(err) != ctlExitRefused {
		t.Fatalf("drain of an unknown site: %v", err)
	}
	if _, err := runCtlOut(cc, "drain", "no-such-node"); exitCode(err) != ctlExitRefused {
		t.Fatalf("drain of an unknown node: %v", err)
	}
	if _, err := runCtlOut(cc, "frobnicate"); exitCode(err) != ctlExitUsage {
		t.Fatalf("unknown command: %v", err)
	}
	if _, err := runCtlOut(cc, "nodes", "-o", "xml"); exitCode(err) != ctlExitUsage {
		t.Fatalf("bad -o: %v", err)
	}
	var out2 bytes.Buffer
	err = ctl(context.Background(), []string{"-server", "https://127.0.0.1:1", "-token", "x", "nodes"}, &out2)
	if exitCode(err) != ctlExitUnreachable {
		t.Fatalf("unreachable LBS: %v", err)
	}
	err = ctl(context.Background(), []string{"-ctl-config", cc, "-token", "wrong-token", "nodes"}, &out2)
	if exitCode(err) != ctlExitRefused {
		t.Fatalf("bad token: %v", err)
	}
}

// `longlink version` names the version, the commit and the Go toolchain;
// a build stamps the first two with -ldflags.
func TestVersionText(t *testing.T) {
	version, commit = "v1.2.3", "0123abcd"
	defer func() { version, commit = "dev", "" }()
	got := versionText()
	for _, want := range []string{"longlink v1.2.3\n", "commit   0123abcd", "go       go1."} {
		if !strings.Contains(got, want) {
			t.Fatalf("version text lacks %q:\n%s", want, got)
		}
	}
}

// Flag help shows real placeholders: back-quoted words in a usage string
// become the placeholder, so they must be the value's name.
func TestFlagHelpPlaceholders(t *testing.T) {
	for _, c := range []struct {
		cmd  string
		want []string
	}{
		{"chat", []string{"-dir directory", "-server URL", "-user account", "-to account", "-token token", "-addr host:port"}},
		{"api", []string{"-dir directory", "-server URL"}},
		{"dev", []string{`(default "error")`, "(default 10s)", `-dir directory`}},
	} {
		r, w, _ := os.Pipe()
		stderr := os.Stderr
		os.Stderr = w
		err := commands[c.cmd].run(context.Background(), []string{"-h"})
		os.Stderr = stderr
		w.Close()
		var out bytes.Buffer
		out.ReadFrom(r)
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s -h: %v", c.cmd, err)
		}
		for _, want := range c.want {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s -h lacks %q:\n%s", c.cmd, want, out.String())
			}
		}
		if strings.Contains(out.String(), "-dir longlink") || strings.Contains(out.String(), "-server longlink") {
			t.Errorf("%s -h shows a command as a placeholder:\n%s", c.cmd, out.String())
		}
	}
}

// -check-config reports every problem at once, each with its key path and
// line: a missing env secret and a duration without a unit (named only by
// their values before), and files the config names that are missing.
func TestCheckConfigNamesKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lbs.yaml")
	os.WriteFile(path, []byte(`node_id: lbs-1
data_dir: `+dir+`/data
admin_token: env:LONGLINK_TEST_UNSET_TOKEN
health:
  interval: 5
tls:
  ca_file: `+dir+`/missing-ca.pem
  cert_file: `+dir+`/missing-cert.pem
  key_file: `+dir+`/missing-key.pem
`), 0o600)
	err := commands["lbs"].run(context.Background(), []string{"-config", path, "-check-config"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		path + ":3: admin_token: secret: environment variable LONGLINK_TEST_UNSET_TOKEN is not set",
		path + `:5: health.interval: duration "5"`, "a duration needs a unit",
		path + ":7: tls.ca_file: open " + dir + "/missing-ca.pem",
		path + ":9: tls.key_file: open ",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("check-config lacks %q:\n%v", want, err)
		}
	}
}
