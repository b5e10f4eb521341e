package edge

import (
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

// Reload applies the drain period, the first-byte timeout and the TURN
// section's reloadable keys to a running edge (its TURN server takes the
// new secret), and refuses restart-only keys by name, changing nothing.
func TestReload(t *testing.T) {
	w := newWorld(t, "mem", memCreds(), func(c *Config) {
		c.TURN.Enabled = true
		c.TURN.UDP = []string{"127.0.0.1:0"}
		c.TURN.TCP, c.TURN.TLS = nil, nil
		c.TURN.UDPSockets = 1
		c.TURN.Secrets = []turncred.Secret{{ID: "k1", Value: config.NewSecret("edge-turn-test-secret-0123456789")}}
	})
	e := w.edge
	next := *e.live.Load()
	next.DrainPeriod = config.Duration(7 * time.Second)
	next.Limits.FirstByteTimeout = config.Duration(3 * time.Second)
	next.TURN.Secrets = []turncred.Secret{{ID: "k2", Value: config.NewSecret("edge-turn-second-secret-0123456789")}}
	next.TURN.Quotas.PerUser = 2
	applied, err := e.Reload(next)
	if err != nil || strings.Join(applied, ",") != "drain_period,limits.first_byte_timeout,turn.quotas.per_user,turn.secrets" {
		t.Fatalf("reload: %v %v", applied, err)
	}
	if e.live.Load().DrainPeriod.D() != 7*time.Second || e.live.Load().Limits.FirstByteTimeout.D() != 3*time.Second {
		t.Fatal("drain_period or first_byte_timeout not applied")
	}
	if ids := e.TURN().SecretIDs(); strings.Join(ids, ",") != "k2" {
		t.Fatalf("TURN secrets after the reload: %v", ids)
	}

	bad := *e.live.Load()
	bad.Name = "renamed"
	bad.TURN.Realm = "elsewhere"
	bad.DrainPeriod = config.Duration(time.Second)
	if _, err := e.Reload(bad); err == nil || !strings.Contains(err.Error(), "name: changed") || !strings.Contains(err.Error(), "turn.realm: changed") {
		t.Fatalf("restart-only keys: %v", err)
	}
	if e.live.Load().DrainPeriod.D() != 7*time.Second {
		t.Fatal("a refused reload changed the drain period")
	}
}
