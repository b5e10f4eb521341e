package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/config"
)

// TestDrainMovesClients runs two gateways on one bus. Draining the first
// kicks its sessions with "server draining"; the SDK reconnects at once to
// the second address and no message is lost or duplicated.
func TestDrainMovesClients(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	gcfg := gateway.Default()
	gcfg.ID = "gw-e2e-2"
	gcfg.Listen = "127.0.0.1:0"
	gcfg.Keys = []gateway.KeyConfig{{ID: c.key.ID, PrivateKey: config.NewSecret(link.EncodeKey(c.key.Private))}}
	gw2, err := gateway.New(gcfg, gateway.Deps{NATS: c.bus.Conn(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw2.Shutdown(context.Background()) })

	tok := c.users("alice", "bob")
	addrs := []string{c.addr, gw2.Addr().String()}
	alice := c.client(t, "alice", tok["alice"], "phone", addrs...)
	bob := c.client(t, "bob", tok["bob"], "phone", addrs...)
	alice.connected(t)
	bob.connected(t)
	if c.gw.Sessions() != 2 {
		t.Fatalf("first gateway holds %d sessions, want 2 (the first address wins the race)", c.gw.Sessions())
	}
	ctx := ctx10(t)
	for i := 1; i <= 5; i++ {
		if _, err := alice.SendText(ctx, imapi.ConvP2P, "bob", fmt.Sprintf("before %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.gw.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for gw2.Sessions() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("second gateway holds %d sessions after the drain", gw2.Sessions())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 1; i <= 5; i++ {
		if _, err := alice.SendText(ctx, imapi.ConvP2P, "bob", fmt.Sprintf("after %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	bob.waitUntil("10 messages", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 10 })
	time.Sleep(100 * time.Millisecond)
	msgs := bob.messages()
	if len(msgs) != 10 {
		t.Fatalf("bob got %d messages, want 10", len(msgs))
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
	}
	bob.mu.Lock()
	defer bob.mu.Unlock()
	if len(bob.kicks) == 0 || bob.kicks[0].Reason != gateway.ReasonDraining {
		t.Fatalf("kicks %+v", bob.kicks)
	}
}
