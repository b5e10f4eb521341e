package callsvc

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/edge/turn"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

// TestCallRelaysMediaThroughTURN is scenario 6 below the SDK: Alice and Bob
// get credentials and the nearest TURN site from the call service, signal
// the call over the bus, and exchange media-like UDP (160-byte packets every
// 5 ms) through the TURN server's relays.
func TestCallRelaysMediaThroughTURN(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	secrets := []turncred.Secret{{ID: "k1", Value: config.NewSecret(testSecret)}}
	tcfg := turn.Default()
	tcfg.UDP, tcfg.TCP, tcfg.TLS = []string{"127.0.0.1:0"}, nil, nil
	tcfg.Secrets = secrets
	// Both relays live on 127.0.0.1, so the peers (each other's relay
	// address) must be opened explicitly.
	tcfg.Peers.Allow = []string{"127.0.0.1/32"}
	ts, err := turn.New(tcfg, turn.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// The clients' allocations are still open: do not wait for them.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = ts.Shutdown(ctx)
	}()
	turnAddr := ts.Addrs().UDP[0].String()

	nc := startNATS(t)
	cfg := testConfig()
	cfg.Servers = []ServerConfig{
		{Site: "far", URLs: []string{"turn:192.0.2.99:3478?transport=udp"}},
		{Site: "near", URLs: []string{"turn:" + turnAddr + "?transport=udp"}, ClientCIDRs: []string{"127.0.0.0/8"}},
	}
	svc, err := New(cfg, Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Shutdown(context.Background()) }()
	f := &fixture{nc: nc, svc: svc}

	type party struct {
		sess  buswire.Session
		relay net.PacketConn
		got   atomic.Int64
	}
	join := func(account string) *party {
		p := &party{sess: buswire.Session{AppKey: "app", Account: account, SessionID: "s-" + account, ClientIP: "127.0.0.1"}}
		r := f.request(t, p.sess, imapi.OpTurnCredentials, imapi.TurnCredentialsReq{TTLSec: 600})
		if r.Code != imapi.OK {
			t.Fatalf("credentials: %v", r.Code)
		}
		var c imapi.TurnCredentials
		_ = json.Unmarshal(r.Body, &c)
		if c.Servers[0].Site != "near" {
			t.Fatalf("nearest site %q", c.Servers[0].Site)
		}
		u, err := url.Parse(c.Servers[0].URLs[0])
		if err != nil {
			t.Fatal(err)
		}
		server, _, _ := strings.Cut(u.Opaque, "?")
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cl, err := pionturn.NewClient(&pionturn.ClientConfig{TURNServerAddr: server, STUNServerAddr: server,
			Username: c.Username, Password: c.Password, Conn: conn})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Listen(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close(); _ = conn.Close() })
		if p.relay, err = cl.Allocate(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.relay.Close() })
		return p
	}
	alice, bob := join("alice"), join("bob")

	// Signalling: the invite carries Alice's relayed candidate, the accept Bob's.
	toBob := subscribePushes(t, nc, "app", "bob")
	toAlice := subscribePushes(t, nc, "app", "alice")
	cand := func(p *party) json.RawMessage { b, _ := json.Marshal(p.relay.LocalAddr().String()); return b }
	if r := f.request(t, alice.sess, imapi.OpCallSignal, imapi.CallSignal{CallID: "call1", To: "bob", Kind: imapi.CallInvite, Media: "audio", Payload: cand(alice)}); r.Code != imapi.OK {
		t.Fatal(r.Code)
	}
	inv, _ := nextEvent(t, toBob)
	if r := f.request(t, bob.sess, imapi.OpCallSignal, imapi.CallSignal{CallID: "call1", To: "alice", Kind: imapi.CallAccept, Payload: cand(bob)}); r.Code != imapi.OK {
		t.Fatal(r.Code)
	}
	acc, _ := nextEvent(t, toAlice)
	peerOf := func(ev imapi.CallEvent) net.Addr {
		var s string
		_ = json.Unmarshal(ev.Payload, &s)
		a, err := net.ResolveUDPAddr("udp4", s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	aliceSeesBob, bobSeesAlice := peerOf(acc), peerOf(inv)

	const packets = 200
	recv := func(p *party) {
		buf := make([]byte, 1500)
		for {
			_ = p.relay.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _, err := p.relay.ReadFrom(buf)
			if err != nil {
				return
			}
			if n == 160 {
				p.got.Add(1)
			}
		}
	}
	go recv(alice)
	go recv(bob)
	// Each side opens its permission toward the other first (as ICE would).
	_, _ = alice.relay.WriteTo(make([]byte, 8), aliceSeesBob)
	_, _ = bob.relay.WriteTo(make([]byte, 8), bobSeesAlice)
	time.Sleep(100 * time.Millisecond)
	frame := make([]byte, 160)
	tick := time.NewTicker(5 * time.Millisecond)
	for i := 0; i < packets; i++ {
		<-tick.C
		if _, err := alice.relay.WriteTo(frame, aliceSeesBob); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.relay.WriteTo(frame, bobSeesAlice); err != nil {
			t.Fatal(err)
		}
	}
	tick.Stop()
	deadline := time.Now().Add(2 * time.Second)
	for (alice.got.Load() < packets || bob.got.Load() < packets) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alice.got.Load() < packets*99/100 || bob.got.Load() < packets*99/100 {
		t.Fatalf("alice got %d, bob got %d of %d", alice.got.Load(), bob.got.Load(), packets)
	}
	t.Logf("alice got %d, bob got %d of %d", alice.got.Load(), bob.got.Load(), packets)
}
