package callsvc_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/core/callsvc"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/edge/turn"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

// TestSDKCallThroughTURN is scenario 6 end to end: two Go SDK users log in
// to an in-process core, get TURN credentials and the nearest TURN server
// from the call service, signal the call (invite, ringing, accept,
// candidates, hang-up) over IM, and exchange media-like UDP through the
// TURN server.
func TestSDKCallThroughTURN(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	secrets := []turncred.Secret{{ID: "k1", Value: config.NewSecret("sdk-call-secret-0123456789")}}

	tcfg := turn.Default()
	tcfg.UDP, tcfg.TCP, tcfg.TLS = []string{"127.0.0.1:0"}, nil, nil
	tcfg.Secrets = secrets
	tcfg.Peers.Allow = []string{"127.0.0.1/32"} // both relays live on loopback
	ts, err := turn.New(tcfg, turn.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer c()
		_ = ts.Shutdown(sctx)
	}()

	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := core.Default()
	cfg.DataDir = t.TempDir()
	cfg.DebugListen = ""
	cfg.Roles = core.Roles{Services: true, Gateway: true, Call: true}
	cfg.Bus.Listen = ""
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.Keys = []gateway.KeyConfig{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}
	cfg.Service.Apps = []service.AppConfig{{AppKey: "demo", Secret: config.NewSecret("sdk-call-app-secret-0123"),
		Devices: imapi.DevicesKickSameType, Heartbeat: config.Duration(30 * time.Second)}}
	cfg.Call.Secrets = secrets
	cfg.Call.Servers = []callsvc.ServerConfig{{Site: "local", URLs: []string{"turn:" + ts.Addrs().UDP[0].String() + "?transport=udp"}}}
	node, err := core.New(cfg, core.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = node.Shutdown(context.Background()) }()
	users, err := service.Seed(ctx, node.Store(), "demo", []service.SeedUser{{Account: "alice"}, {Account: "bob"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	connect := func(u service.SeedUser) *sdk.Client {
		c, err := sdk.New(sdk.Config{Addresses: []string{node.LinkAddr()}, ServerKeys: map[string][]byte{key.ID: key.Public},
			AppKey: "demo", Account: u.Account, Token: u.Token, DeviceType: "phone"})
		if err != nil {
			t.Fatal(err)
		}
		c.Start()
		t.Cleanup(func() { _ = c.Close() })
		if err := c.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
		return c
	}
	alice, bob := connect(users[0]), connect(users[1])

	// Each side: credentials from the core, then an allocation on the
	// nearest TURN server.
	allocate := func(c *sdk.Client) net.PacketConn {
		creds, err := c.TurnCredentials(ctx, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(creds.Servers) == 0 || creds.TTLSec != 600 {
			t.Fatalf("credentials %+v", creds)
		}
		uri, err := sdk.ParseTurnURI(creds.Servers[0].URLs[0])
		if err != nil || uri.Transport != "udp" {
			t.Fatalf("uri %+v %v", uri, err)
		}
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cl, err := pionturn.NewClient(&pionturn.ClientConfig{TURNServerAddr: uri.Addr, STUNServerAddr: uri.Addr,
			Username: creds.Username, Password: creds.Password, Conn: conn})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Listen(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close(); _ = conn.Close() })
		relay, err := cl.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = relay.Close() })
		return relay
	}
	nextCall := func(c *sdk.Client, kind string) imapi.CallEvent {
		for {
			select {
			case ev := <-c.Events():
				if ce, ok := sdk.CallEventOf(ev); ok && ce.Kind == kind {
					return ce
				}
			case <-ctx.Done():
				t.Fatalf("no %s event", kind)
			}
		}
	}
	addrOf := func(ce imapi.CallEvent) net.Addr {
		var s string
		if err := json.Unmarshal(ce.Payload, &s); err != nil {
			t.Fatal(err)
		}
		a, err := net.ResolveUDPAddr("udp4", s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	cand := func(pc net.PacketConn) json.RawMessage { b, _ := json.Marshal(pc.LocalAddr().String()); return b }

	aliceRelay := allocate(alice)
	callID := sdk.NewCallID()
	if err := alice.CallInvite(ctx, "bob", callID, "audio", json.RawMessage(`{"sdp":"offer"}`)); err != nil {
		t.Fatal(err)
	}
	inv := nextCall(bob, imapi.CallInvite)
	if inv.From != "alice" || inv.CallID != callID {
		t.Fatalf("invite %+v", inv)
	}
	if err := bob.CallRinging(ctx, "alice", callID); err != nil {
		t.Fatal(err)
	}
	nextCall(alice, imapi.CallRinging)
	bobRelay := allocate(bob)
	if err := bob.CallAccept(ctx, "alice", callID, json.RawMessage(`{"sdp":"answer"}`)); err != nil {
		t.Fatal(err)
	}
	nextCall(alice, imapi.CallAccept)
	// Trickle the relayed candidates both ways.
	if err := alice.CallCandidate(ctx, "bob", callID, cand(aliceRelay)); err != nil {
		t.Fatal(err)
	}
	if err := bob.CallCandidate(ctx, "alice", callID, cand(bobRelay)); err != nil {
		t.Fatal(err)
	}
	bobSeesAlice := addrOf(nextCall(bob, imapi.CallCandidate))
	aliceSeesBob := addrOf(nextCall(alice, imapi.CallCandidate))

	var aliceGot, bobGot atomic.Int64
	recv := func(pc net.PacketConn, got *atomic.Int64) {
		buf := make([]byte, 1500)
		for {
			_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n == 160 {
				got.Add(1)
			}
		}
	}
	go recv(aliceRelay, &aliceGot)
	go recv(bobRelay, &bobGot)
	_, _ = aliceRelay.WriteTo([]byte("open"), aliceSeesBob)
	_, _ = bobRelay.WriteTo([]byte("open"), bobSeesAlice)
	time.Sleep(100 * time.Millisecond)
	const packets = 200
	frame := make([]byte, 160)
	tick := time.NewTicker(5 * time.Millisecond)
	for i := 0; i < packets; i++ {
		<-tick.C
		_, _ = aliceRelay.WriteTo(frame, aliceSeesBob)
		_, _ = bobRelay.WriteTo(frame, bobSeesAlice)
	}
	tick.Stop()
	deadline := time.Now().Add(2 * time.Second)
	for (aliceGot.Load() < packets || bobGot.Load() < packets) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if aliceGot.Load() < packets*99/100 || bobGot.Load() < packets*99/100 {
		t.Fatalf("alice got %d, bob got %d of %d", aliceGot.Load(), bobGot.Load(), packets)
	}
	if err := alice.CallHangup(ctx, "bob", callID); err != nil {
		t.Fatal(err)
	}
	nextCall(bob, imapi.CallHangup)
	t.Logf("relayed: alice got %d, bob got %d of %d media packets", aliceGot.Load(), bobGot.Load(), packets)
}
