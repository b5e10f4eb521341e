package edge

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/logintoken"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/pkg/config"
)

// TestEdgeAnswersLogin: a real core that signs tokens behind edge → relays
// → egress, the edge holding the token public key (LINK.md section 7).
// A signed token is answered by the edge once it has seen a core login
// answer, and messages then flow; opaque, expired and forged tokens are
// answered by the core (the forged one refused); a revoked signed token is
// answered by the edge, then kicked with the core's 401, and the SDK stops
// with ErrAuth.
func TestEdgeAnswersLogin(t *testing.T) {
	integration(t)
	ctx := context.Background()
	key, err := link.GenerateKey("k-login-test")
	if err != nil {
		t.Fatal(err)
	}
	seed, pub, err := logintoken.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := logintoken.NewSigner("t1", seed)
	if err != nil {
		t.Fatal(err)
	}
	ccfg := testCoreConfig(t, key, imapi.DevicesAllowAll)
	ccfg.Gateway.PlainListen = "127.0.0.1:0"
	ccfg.Service.TokenKey = &service.TokenKeyConfig{ID: "t1", PrivateKey: config.NewSecret(logintoken.EncodeKey(seed))}
	node, err := core.New(ccfg, core.Deps{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Shutdown(ctx) })

	// Tokens: issued by the core (signed), opaque ones, one expired at the
	// edge but valid in the store, one signed by another key under the
	// same key id (unknown to the store).
	users, err := service.Seed(ctx, node.Store(), "demo", []service.SeedUser{{Account: "alice"}, {Account: "bob"}, {Account: "carol"}, {Account: "dave"}, {Account: "erin"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok := map[string]string{}
	for _, u := range users {
		tok[u.Account] = u.Token // opaque
	}
	for _, a := range []string{"alice", "erin"} {
		if tok[a], _, err = node.Service().Sessions().IssueToken(ctx, "demo", a, false); err != nil {
			t.Fatal(err)
		}
		if !logintoken.IsSigned(tok[a]) {
			t.Fatalf("token of %s is not signed: %q", a, tok[a])
		}
	}
	expired, _ := signer.Issue("demo", "carol", time.Now().Add(-time.Minute))
	seedOther, _, _ := logintoken.GenerateKey()
	other, _ := logintoken.NewSigner("t1", seedOther)
	forged, _ := other.Issue("demo", "dave", time.Now().Add(time.Hour))
	if _, err := service.Seed(ctx, node.Store(), "demo", []service.SeedUser{{Account: "carol", Token: expired}}, time.Hour); err != nil {
		t.Fatal(err)
	}

	w := newWorldLink(t, "quic", pkiCreds(t), func(c *Config) {
		c.Link.Terminate = &LinkTermination{
			Keys:      []LinkKey{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}},
			TokenKeys: []TokenKey{{ID: "t1", PublicKey: logintoken.EncodeKey(pub)}},
		}
	}, "127.0.0.1:1", node.Gateway().PlainAddr().String())
	edgeAddr := w.edge.Addr("link").String()
	logins := func(result string) float64 { return testutil.ToFloat64(w.edge.m.logins.WithLabelValues(result)) }

	start := func(account, token, addr string) (*sdk.Client, *inbox) {
		c, err := sdk.New(sdk.Config{
			Addresses:  []string{addr},
			ServerKeys: map[string][]byte{key.ID: key.Public},
			AppKey:     "demo", Account: account, Token: token, DeviceType: "phone",
			BackoffMin: 50 * time.Millisecond, BackoffMax: 300 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		in := &inbox{}
		c.Start()
		go in.collect(c)
		t.Cleanup(func() { _ = c.Close() })
		return c, in
	}
	connect := func(account, token, addr string) (*sdk.Client, *inbox) {
		c, in := start(account, token, addr)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.WaitConnected(wctx); err != nil {
			t.Fatalf("%s: connect: %v", account, err)
		}
		return c, in
	}
	stopped := func(c *sdk.Client) error {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for c.State() != sdk.StateStopped {
			if time.Now().After(deadline) {
				t.Fatalf("client still %v", c.State())
			}
			time.Sleep(10 * time.Millisecond)
		}
		return c.WaitConnected(ctx)
	}

	// Before the edge has seen a core login answer it forwards.
	first, _ := connect("alice", tok["alice"], edgeAddr)
	_ = first.Close()
	if logins("forwarded_not_ready") != 1 || logins("answered") != 0 {
		t.Fatalf("first login: not_ready %v answered %v", logins("forwarded_not_ready"), logins("answered"))
	}

	// Answered by the edge; messages both ways.
	alice, aliceIn := connect("alice", tok["alice"], edgeAddr)
	if logins("answered") != 1 {
		t.Fatalf("signed token: answered %v, want 1", logins("answered"))
	}
	bob, bobIn := connect("bob", tok["bob"], node.LinkAddr())
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := alice.SendText(sctx, imapi.ConvP2P, "bob", "hello from an edge-answered login"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendText(sctx, imapi.ConvP2P, "alice", "hello back"); err != nil {
		t.Fatal(err)
	}
	aliceIn.wait(t, 1, 10*time.Second)
	bobIn.wait(t, 1, 10*time.Second)
	if alice.SessionID() == "" || alice.State() != sdk.StateConnected {
		t.Fatalf("alice: session %q state %v", alice.SessionID(), alice.State())
	}

	// Opaque: forwarded, answered by the core.
	connect("bob", tok["bob"], edgeAddr)
	// Expired at the edge (the store would still take it): forwarded.
	connect("carol", expired, edgeAddr)
	// Forged: forwarded, refused by the core.
	dave, _ := start("dave", forged, edgeAddr)
	if err := stopped(dave); !errors.Is(err, sdk.ErrAuth) {
		t.Fatalf("forged token: %v, want ErrAuth", err)
	}
	for _, r := range []string{"forwarded_opaque", "forwarded_expired", "forwarded_invalid"} {
		if logins(r) != 1 {
			t.Errorf("%s: %v, want 1", r, logins(r))
		}
	}
	if logins("answered") != 1 {
		t.Fatalf("answered %v: the edge answered an unverifiable token", logins("answered"))
	}

	// Revoked but unexpired: the edge answers, the core refuses, the SDK
	// is kicked with 401 and stops without reconnecting.
	if _, _, err := node.Service().Sessions().IssueToken(ctx, "demo", "erin", true); err != nil {
		t.Fatal(err)
	}
	erin, _ := start("erin", tok["erin"], edgeAddr)
	err = stopped(erin)
	if !errors.Is(err, sdk.ErrAuth) {
		t.Fatalf("revoked token: %v, want ErrAuth", err)
	}
	if logins("answered") != 2 || logins("rejected") != 1 {
		t.Fatalf("revoked token: answered %v rejected %v, want 2 and 1", logins("answered"), logins("rejected"))
	}
}
