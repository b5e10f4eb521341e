package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/waittest"
)

func metricValue(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestWire captures the bytes between the SDK and the gateway: message text,
// tokens and account names never appear, and replaying a captured stream or
// frame is rejected.
func TestWire(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	tok := c.users("alice", "bob")
	rec := newRecorder(t, c.addr)
	alice := c.client(t, "alice", tok["alice"], "phone", rec.addr())
	bob := c.client(t, "bob", tok["bob"], "phone", rec.addr())
	alice.connected(t)
	bob.connected(t)
	ctx := ctx10(t)
	secrets := []string{"attack at dawn, bring the blue folder", strings.Repeat("compressible secret ", 200)}
	for _, s := range secrets {
		if _, err := alice.SendText(ctx, imapi.ConvP2P, "bob", s); err != nil {
			t.Fatal(err)
		}
	}
	bob.waitUntil("messages", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 2 })
	if got := text(bob.messages()[1]); got != secrets[1] {
		t.Fatalf("long message altered: %d bytes", len(got))
	}
	wire := rec.all()
	if len(wire) < 1000 {
		t.Fatalf("captured only %d bytes", len(wire))
	}
	for _, needle := range []string{"attack at dawn", "compressible secret", tok["alice"], tok["bob"], "alice", "bob", `"token"`, `"text"`} {
		if bytes.Contains(wire, []byte(needle)) {
			t.Errorf("%q appears on the wire", needle)
		}
	}

	// Replay alice's whole client stream (hello, login, sends) on a new
	// connection: the server answers with a fresh ephemeral key, so the
	// captured frames no longer decrypt; no session is created.
	rec.mu.Lock()
	captured := append([]byte(nil), rec.up[0]...)
	rec.mu.Unlock()
	sessions := c.gw.Sessions()
	before := metricValue(t, c.reg, "longlink_gateway_protocol_errors_total", "reason", "decrypt")
	nc, err := net.Dial("tcp", c.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(captured); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(nc)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("replayed stream: %v", err)
	}
	if len(got) != 3+48 {
		t.Fatalf("server sent %d bytes to a replayed stream, want only its hello (51)", len(got))
	}
	waittest.Until(t, 5*time.Second, "the decrypt error counted", func() bool {
		return metricValue(t, c.reg, "longlink_gateway_protocol_errors_total", "reason", "decrypt") == before+1
	})
	if c.gw.Sessions() != sessions {
		t.Fatal("replayed login created a session")
	}

	// Replay a captured frame inside a fresh, valid handshake.
	helloLen := 4 + len(c.key.ID) + 2 + 48
	frames := captured[helloLen:]
	nc2, err := net.Dial("tcp", c.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lc, err := link.Client(hctx, nc2, c.key.ID, c.key.Public, link.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc2.Write(frames); err != nil {
		t.Fatal(err)
	}
	_ = nc2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if f, err := lc.ReadFrame(); err == nil {
		t.Fatalf("server answered a replayed frame: %+v", f)
	}
	waittest.Until(t, 5*time.Second, "the second decrypt error counted", func() bool {
		return metricValue(t, c.reg, "longlink_gateway_protocol_errors_total", "reason", "decrypt") == before+2
	})
}
