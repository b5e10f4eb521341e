package lbs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/metricstest"
	"github.com/longlink/longlink/pkg/waittest"
)

// The policy's rotation rule: an edge reporting a connection rate at or
// above rotation.conn_rate rotates every app whose pools list it (and that
// has a reserve); the others stay; a rate below does nothing.
func TestRotateByAttackRule(t *testing.T) {
	b, err := os.ReadFile("testdata/rotation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, append(b, []byte("rotation: {conn_rate: 1000}\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	l := startSingleWith(t, Deps{Registerer: reg}, func(c *Config) { c.InitialPolicy = policy })
	n := newAdmin(t, l, testNodeToken)
	admin := newAdmin(t, l, testAdminToken)
	beat := func(node string, rate float64) {
		b, _ := json.Marshal(lbsapi.Heartbeat{Node: node, Connections: 10, ConnRate: rate})
		if code := n.json("POST", lbsapi.PathHeartbeat, b, nil); code != 200 {
			t.Fatalf("heartbeat: %d", code)
		}
	}
	rotations := func() map[string]struct{ Who, Why string } {
		var rot map[string]struct{ Who, Why string }
		if code := admin.json("GET", "/v1/rotations?consistent=1", nil, &rot); code != 200 {
			t.Fatalf("rotations: %d", code)
		}
		return rot
	}
	beat("vm-1", 900)
	beat("sh-1", 50)
	// The rule decides in the heartbeat's handler: nothing decided, and
	// nothing rotated.
	if v := metricstest.Value(t, reg, "longlink_lbs_rotations_total"); v != 0 {
		t.Fatalf("%v rotations below the rate", v)
	}
	if rot := rotations(); len(rot) != 0 {
		t.Fatalf("rotated below the rate: %+v", rot)
	}
	beat("vm-1", 4200)
	beat("vm-1", 4300) // again while rotating: once
	waittest.Until(t, 5*time.Second, "victim and victim2 rotated", func() bool { return len(rotations()) == 2 })
	rot := rotations()
	if rot["victim"].Who != "rule:rotation" || !strings.Contains(rot["victim"].Why, "vm-1 reported 4200 new connections/s") {
		t.Fatalf("rotations: %+v", rot)
	}
	if v := metricstest.Value(t, reg, "longlink_lbs_rotations_total"); v != 2 {
		t.Fatalf("%v rotations decided, want 2 (victim, victim2; once each)", v)
	}
	if _, ok := rot["bystander"]; ok {
		t.Fatal("an app on other entry points was rotated")
	}
	var audit []struct{ Op, What string }
	admin.json("GET", "/v1/audit", nil, &audit)
	count := 0
	for _, a := range audit {
		if a.Op == "rotate" {
			count++
		}
	}
	if count != 2 {
		t.Fatalf("%d rotations audited, want 2: %+v", count, audit)
	}
}
