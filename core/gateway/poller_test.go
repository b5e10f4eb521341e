//go:build linux

package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/waittest"
)

// holdConn keeps what is written while hold is set, so that a test can put
// a sealed frame on the wire in pieces.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	held []byte
}

func (h *holdConn) Write(b []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hold {
		h.held = append(h.held, b...)
		return len(b), nil
	}
	return h.Conn.Write(b)
}

// parked reports whether the session id's connection is parked.
func (e *env) parked(id string) bool {
	for _, l := range e.g.poller.parked() {
		if l.sess != nil && l.sess.ID() == id {
			l.mu.Lock()
			p := l.parked
			l.mu.Unlock()
			if p {
				return true
			}
		}
	}
	return false
}

// TestParkedConnections: idle connections park, and what wakes them is
// served by the poller's readers: heartbeats of every connection at once,
// a request, a frame that arrives in two pieces (left to a reader of its
// own, which waits for the rest), a frame larger than the read-ahead, and
// the client's close.
func TestParkedConnections(t *testing.T) {
	e := newEnv(t, nil)
	const n = 40
	var cs []*client
	for i := range n {
		cs = append(cs, e.login(t, fmt.Sprintf("p%d", i), "phone"))
	}
	allParked := func() bool {
		for _, c := range cs {
			if !e.parked(c.sess) {
				return false
			}
		}
		return true
	}
	waittest.Until(t, 5*time.Second, "every connection parked", allParked)

	// Heartbeats of all at once.
	seqs := make([]uint32, n)
	for i, c := range cs {
		seqs[i] = c.request(imapi.OpHeartbeat, nil)
	}
	for i, c := range cs {
		if f, _ := c.response(seqs[i]); f.Code != imapi.OK {
			t.Fatalf("heartbeat %d: code %d", i, f.Code)
		}
	}
	waittest.Until(t, 5*time.Second, "parked again after the heartbeats", allParked)

	// A request, and one larger than the read-ahead (4 KiB).
	send := func(c *client, id, text string) uint32 {
		return c.request(imapi.OpSend, imapi.SendReq{ConvType: imapi.ConvP2P, To: "p1", ClientMsgID: id, Type: "text",
			Body: json.RawMessage(fmt.Sprintf(`{"text":%q}`, text))})
	}
	for _, text := range []string{"hi", strings.Repeat("x", 9000)} {
		seq := send(cs[0], "c-"+fmt.Sprint(len(text)), text)
		if f, _ := cs[0].response(seq); f.Code != imapi.OK {
			t.Fatalf("send of %d bytes: code %d %s", len(text), f.Code, f.Body)
		}
	}

	// A frame in two pieces.
	nc, err := net.Dial("tcp", e.g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	hc := &holdConn{Conn: nc}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	lc, err := link.Client(ctx, hc, e.key.ID, e.key.Public, link.Limits{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	split := &client{t: t, c: lc}
	seq := split.request(imapi.OpLogin, imapi.LoginReq{AppKey: "app", Account: "split", Token: "tok-split", DeviceID: "split", DeviceType: "phone"})
	f, _ := split.response(seq)
	var lr imapi.LoginResp
	if f.Code != imapi.OK || json.Unmarshal(f.Body, &lr) != nil {
		t.Fatalf("login: code %d %s", f.Code, f.Body)
	}
	waittest.Until(t, 5*time.Second, "the connection parked", func() bool { return e.parked(lr.SessionID) })
	hc.mu.Lock()
	hc.hold = true
	hc.mu.Unlock()
	seq = split.request(imapi.OpHeartbeat, nil)
	hc.mu.Lock()
	hc.hold = false
	wire := hc.held
	hc.mu.Unlock()
	if _, err := nc.Write(wire[:7]); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 5*time.Second, "woken by the first piece", func() bool { return !e.parked(lr.SessionID) })
	if _, err := nc.Write(wire[7:]); err != nil {
		t.Fatal(err)
	}
	if f, _ := split.response(seq); f.Code != imapi.OK {
		t.Fatalf("heartbeat in two pieces: code %d", f.Code)
	}
	waittest.Until(t, 5*time.Second, "parked again", func() bool { return e.parked(lr.SessionID) })

	// The client's close ends a parked session.
	before := e.g.Sessions()
	_ = cs[5].c.Close()
	waittest.Until(t, 5*time.Second, "the closed session gone", func() bool { return e.g.Sessions() == before-1 })
}
