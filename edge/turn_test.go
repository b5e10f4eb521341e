package edge

import (
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

// With turn.enabled the edge runs the TURN server as one of its components:
// it answers STUN on its UDP port while the edge runs and is gone after
// Shutdown.
func TestEdgeRunsTURN(t *testing.T) {
	w := newWorld(t, "mem", memCreds(), func(c *Config) {
		c.TURN.Enabled = true
		c.TURN.UDP = []string{"127.0.0.1:0"}
		c.TURN.TCP, c.TURN.TLS = nil, nil
		c.TURN.UDPSockets = 1
		c.TURN.Secrets = []turncred.Secret{{ID: "k1", Value: config.NewSecret("edge-turn-test-secret-0123456789")}}
	})
	if w.edge.TURN() == nil || len(w.edge.TURN().Addrs().UDP) == 0 {
		t.Fatal("TURN not started")
	}
	addr := w.edge.TURN().Addrs().UDP[0].String()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := c.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no STUN answer from the edge's TURN: %v", err)
	}
	var resp stun.Message
	resp.Raw = buf[:n]
	if err := resp.Decode(); err != nil || resp.Type != stun.BindingSuccess {
		t.Fatalf("answer %v %v", resp.Type, err)
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(&resp); err != nil || xor.String() != c.LocalAddr().String() {
		t.Fatalf("mapped address %v (%v), want %s", xor, err, c.LocalAddr())
	}
}
