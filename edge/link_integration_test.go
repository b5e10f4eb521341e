package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/pkg/config"
)

// TestLinkThroughChainQUIC and TestLinkThroughChainKCP: a real IM core
// (core.New: gateway, services, embedded bus, SQLite) behind the egress;
// alice logs in through edge → relay → relay → egress, bob directly. They
// message both ways; then the relay carrying alice is stopped mid-traffic:
// her SDK reconnects over the other relay by itself and bob gets every
// acknowledged message exactly once, in order.
func TestLinkThroughChainQUIC(t *testing.T) { linkChainTest(t, "quic", false) }
func TestLinkThroughChainKCP(t *testing.T)  { linkChainTest(t, "kcp", false) }

// TestLinkTerminatedQUIC and TestLinkTerminatedKCP: the same with the edge
// terminating Link (link.terminate): alice's handshake ends at the edge,
// her frames ride a link-frames stream to the gateway's pre-terminated
// listener, and the gateway sees her address from the PROXY header.
func TestLinkTerminatedQUIC(t *testing.T) { linkChainTest(t, "quic", true) }
func TestLinkTerminatedKCP(t *testing.T)  { linkChainTest(t, "kcp", true) }

// testCoreConfig is a one-node core for the edge's integration tests: a
// gateway with the Link key on a free loopback port that trusts PROXY
// headers from loopback, an embedded bus, and the app "demo" with the given
// multi-device policy.
func testCoreConfig(t *testing.T, key link.KeyPair, devices string) core.Config {
	ccfg := core.Default()
	ccfg.DataDir = t.TempDir()
	ccfg.DebugListen = ""
	ccfg.Roles.ServerAPI = false
	ccfg.Bus.Listen = ""
	ccfg.Bus.StoreDir = filepath.Join(ccfg.DataDir, "nats")
	ccfg.Gateway.Listen = "127.0.0.1:0"
	ccfg.Gateway.Keys = []gateway.KeyConfig{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}
	ccfg.Gateway.TrustedProxies = []string{"127.0.0.1/32"}
	ccfg.Service.Apps = []service.AppConfig{{AppKey: "demo", Secret: config.NewSecret("app-secret-edge-test"), Devices: devices, Heartbeat: config.Duration(30 * time.Second)}}
	return ccfg
}

func linkChainTest(t *testing.T, tr string, terminate bool) {
	integration(t)
	ctx := context.Background()
	key, err := link.GenerateKey("k-edge-test")
	if err != nil {
		t.Fatal(err)
	}
	ccfg := testCoreConfig(t, key, imapi.DevicesKickSameType)
	if terminate {
		ccfg.Gateway.PlainListen = "127.0.0.1:0"
	}
	node, err := core.New(ccfg, core.Deps{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Shutdown(ctx) })
	users, err := service.Seed(ctx, node.Store(), "demo", []service.SeedUser{{Account: "alice"}, {Account: "bob"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok := map[string]string{}
	for _, u := range users {
		tok[u.Account] = u.Token
	}

	// The world's egress serves "link" from the core's gateway.
	var mutate func(*Config)
	plainAddr := ""
	if terminate {
		plainAddr = node.Gateway().PlainAddr().String()
		mutate = func(c *Config) {
			c.Link.Terminate = &LinkTermination{Keys: []LinkKey{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}}
		}
	}
	linkAddr := node.LinkAddr()
	if terminate {
		// Only the link-frames service reaches the core: the test fails
		// unless the edge terminated alice's Link.
		linkAddr = "127.0.0.1:1"
	}
	w := newWorldLink(t, tr, pkiCreds(t), mutate, linkAddr, plainAddr)

	newClient := func(account, addr string) (*sdk.Client, *inbox) {
		c, err := sdk.New(sdk.Config{
			Addresses:  []string{addr},
			ServerKeys: map[string][]byte{key.ID: key.Public},
			AppKey:     "demo", Account: account, Token: tok[account], DeviceType: "phone",
			BackoffMin: 50 * time.Millisecond, BackoffMax: 300 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		in := &inbox{}
		c.Start()
		go in.collect(c)
		t.Cleanup(func() { _ = c.Close() })
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.WaitConnected(wctx); err != nil {
			t.Fatalf("%s: connect: %v", account, err)
		}
		return c, in
	}
	alice, aliceIn := newClient("alice", w.edge.Addr("link").String())
	bob, bobIn := newClient("bob", node.LinkAddr())

	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := alice.SendText(sctx, imapi.ConvP2P, "bob", "hello through the edge"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendText(sctx, imapi.ConvP2P, "alice", "hello back"); err != nil {
		t.Fatal(err)
	}
	aliceIn.wait(t, 1, 10*time.Second)
	bobIn.wait(t, 1, 10*time.Second)
	var alicePath string
	for _, s := range w.edge.Sessions() {
		if s.Listener == "link" {
			alicePath = s.Path
		}
	}
	if alicePath == "" {
		t.Fatal("alice's session is not in the edge's table")
	}

	// Stop alice's relay while she sends: her stream resumes on the other
	// relay (routing.resume), so she neither reconnects nor logs in again.
	connectsBefore := aliceIn.connects()
	if connectsBefore == 0 {
		t.Fatal("alice's client reported no connection")
	}
	const n = 30
	for i := 1; i <= n; i++ {
		if i == 10 {
			_ = w.relays[alicePath].Shutdown(ctx)
		}
		if _, err := alice.SendText(sctx, imapi.ConvP2P, "bob", fmt.Sprintf("m%d", i)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	bobIn.wait(t, n+1, 20*time.Second)
	msgs := bobIn.all()
	seen := map[string]bool{}
	for i, m := range msgs {
		if seen[m.ClientMsgID] {
			t.Fatalf("duplicate message %+v", m)
		}
		seen[m.ClientMsgID] = true
		if i > 0 && m.Seq <= msgs[i-1].Seq {
			t.Fatalf("out of order: %d after %d", m.Seq, msgs[i-1].Seq)
		}
	}
	var body struct{ Text string }
	_ = json.Unmarshal(msgs[len(msgs)-1].Body, &body)
	if body.Text != fmt.Sprintf("m%d", n) {
		t.Fatalf("last message %q", body.Text)
	}
	for _, s := range w.edge.Sessions() {
		if s.Listener == "link" && s.Path == alicePath {
			t.Fatalf("alice still on the stopped relay %s", alicePath)
		}
	}
	if c := aliceIn.connects(); c != connectsBefore {
		t.Fatalf("alice connected %d times while her relay stopped: she reconnected", c-connectsBefore)
	}
}

type inbox struct {
	mu     sync.Mutex
	msgs   []imapi.Message
	states []sdk.State // connection state changes
}

func (in *inbox) collect(c *sdk.Client) {
	for ev := range c.Events() {
		in.mu.Lock()
		switch ev.Kind {
		case sdk.EventMessage:
			in.msgs = append(in.msgs, *ev.Message)
		case sdk.EventState:
			in.states = append(in.states, ev.State)
		}
		in.mu.Unlock()
	}
}

// connects counts the times the client came to be connected.
func (in *inbox) connects() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for _, s := range in.states {
		if s == sdk.StateConnected {
			n++
		}
	}
	return n
}

func (in *inbox) all() []imapi.Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]imapi.Message(nil), in.msgs...)
}

func (in *inbox) wait(t *testing.T, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for len(in.all()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("got %d messages, want %d", len(in.all()), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
