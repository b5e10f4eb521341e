package core

import (
	"strings"
	"testing"

	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/config"
)

// TestSiteLabel: the node-level site is checked, reaches the service's
// announcements and becomes the LBS heartbeat label unless one is set.
func TestSiteLabel(t *testing.T) {
	cfg := Default()
	cfg.Site = "Shanghai A"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "site:") {
		t.Fatalf("bad site accepted: %v", err)
	}
	cfg.Site = "sh-a"
	cfg.DataDir = t.TempDir()
	cfg.LBS.Servers = []string{"https://127.0.0.1:7701"}
	cfg.LBS.Token = config.NewSecret("node-token-0123456789")
	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gateway.Keys = []gateway.KeyConfig{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}
	n, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if n.cfg.Service.Node().Site != "sh-a" || n.cfg.LBS.Labels["site"] != "sh-a" {
		t.Fatalf("site not passed on: node %+v, labels %v", n.cfg.Service.Node(), n.cfg.LBS.Labels)
	}
	cfg.LBS.Labels = map[string]string{"site": "rack-7", "zone": "z1"}
	if n, err = New(cfg, Deps{}); err != nil {
		t.Fatal(err)
	}
	if n.cfg.LBS.Labels["site"] != "rack-7" || n.cfg.LBS.Labels["zone"] != "z1" {
		t.Fatalf("configured labels replaced: %v", n.cfg.LBS.Labels)
	}
}
