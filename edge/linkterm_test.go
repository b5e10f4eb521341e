package edge

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

// TestLinkTerminatedRefusals: a terminating edge closes a client whose
// handshake is garbage (counted as "handshake"; a probe that sends nothing
// counts as "empty"), and answers the login with
// 503 when the core has no link-frames service (the mem world's egress
// serves only passthrough link), so that the client moves on at once.
func TestLinkTerminatedRefusals(t *testing.T) {
	key, err := link.GenerateKey("k-term")
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, "mem", memCreds(), func(c *Config) {
		c.Link.Terminate = &LinkTermination{Keys: []LinkKey{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}}
	})
	addr := w.edge.Addr("link").String()

	garbage, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	_, _ = garbage.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	_ = garbage.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := garbage.Read(make([]byte, 16)); err == nil {
		t.Fatal("garbage hello got an answer")
	}
	waitCount(t, w, "handshake", 1)

	// A readiness probe: connect and close without a byte.
	probe, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	probe.Close()
	waitCount(t, w, "empty", 1)
	waitCount(t, w, "handshake", 1)

	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := link.Client(ctx, nc, key.ID, key.Public, link.Limits{})
	if err != nil {
		t.Fatalf("handshake with the edge: %v", err)
	}
	if err := c.WriteFrame(link.Frame{Op: imapi.OpLogin, Seq: 1, Body: []byte(`{"appkey":"a"}`)}); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := c.ReadFrame()
	if err != nil {
		t.Fatalf("no answer to the login: %v", err)
	}
	if !f.IsResponse() || f.Seq != 1 || f.Code != imapi.ErrUnavailable {
		t.Fatalf("answer %+v, want a 503 response to seq 1", f)
	}
	// The egress refused the stream (refused); under load the refusal can
	// also be seen as the stream failing (error).
	deadline := time.Now().Add(5 * time.Second)
	for count(w, "refused")+count(w, "error") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("sessions_total{link}: refused %v, error %v, ok %v; want one refusal",
				count(w, "refused"), count(w, "error"), count(w, "ok"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func count(w *world, result string) float64 {
	return testutil.ToFloat64(w.edge.m.connections.WithLabelValues("link", result))
}

func waitCount(t *testing.T, w *world, result string, want float64) {
	t.Helper()
	waittest.Until(t, 5*time.Second, fmt.Sprintf("sessions_total{link,%s} = %v", result, want),
		func() bool { return count(w, result) == want })
}
