package lbs

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDig asks the DNS front end with the real dig, with and without EDNS
// Client Subnet, and checks the answers follow the client's geography.
func TestDig(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Fatal("dig not installed (tools/testdeps/install.sh installs it)")
	}
	l := startSingle(t)
	host, port, _ := strings.Cut(l.DNSAddr().String(), ":")
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		full := append([]string{"@" + host, "-p", port, "+time=2", "+tries=1"}, args...)
		out, err := exec.CommandContext(ctx, dig, full...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", full, err, out)
		}
		return string(out)
	}
	short := func(args ...string) []string {
		return strings.Fields(run(append(args, "+short")...))
	}
	cases := []struct {
		subnet, first, scope string
	}{
		{"9.9.9.0/24", "192.0.2.12", "24"},   // Frankfurt, a /24 in the database
		{"101.0.3.0/24", "192.0.2.11", "16"}, // Singapore, a /16 in the database
		{"8.8.8.0/24", "192.0.2.13", "24"},   // US west
	}
	for _, c := range cases {
		got := short("link.demo.lbs.test", "A", "+subnet="+c.subnet)
		if len(got) == 0 || got[0] != c.first {
			t.Errorf("+subnet=%s: %v, want %s first", c.subnet, got, c.first)
		}
		// the answer says which scope it holds for
		full := run("link.demo.lbs.test", "A", "+subnet="+c.subnet)
		if !strings.Contains(full, "CLIENT-SUBNET: "+c.subnet+"/"+c.scope) {
			t.Errorf("no ECS scope /%s in:\n%s", c.scope, full)
		}
	}
	// without ECS the client is 127.0.0.1 (no location): still an answer
	if got := short("link.demo.lbs.test", "A"); len(got) < 2 {
		t.Errorf("no-ECS answer: %v", got)
	}
	out := run("_link._tcp.demo.lbs.test", "SRV", "+subnet=9.9.9.0/24")
	if !strings.Contains(out, "7720 edge-fra.ep.lbs.test.") || !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, " aa") {
		t.Errorf("SRV:\n%s", out)
	}
	if out := run("link.nope.lbs.test", "A"); !strings.Contains(out, "status: NXDOMAIN") {
		t.Errorf("NXDOMAIN:\n%s", out)
	}
	if out := run("link.demo.lbs.test", "TXT", "+tcp"); !strings.Contains(out, "policy_version=1") {
		t.Errorf("TXT over TCP:\n%s", out)
	}
}
