package nginx

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestConfigSyntax checks the example with nginx -t.
func TestConfigSyntax(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	bin := Binary()
	if bin == "" {
		t.Fatal("nginx is not installed (tools/testdeps/install.sh installs it)")
	}
	dir := t.TempDir()
	conf, err := Prepare("longlink.conf", dir, "127.0.0.1:18080", "127.0.0.1:18443", "127.0.0.1:7711")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-t", "-p", dir, "-c", conf).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "test is successful") {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}
