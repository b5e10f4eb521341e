package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

// A Link client and a WebLink client of one real core exchange messages
// both ways; a bad token stops the WebLink client with ErrAuth; the WebLink
// client reconnects after the server closes its socket.
func TestWebLinkTransport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := core.Default()
	cfg.DataDir = t.TempDir()
	cfg.DebugListen = ""
	cfg.Roles = core.Roles{Services: true, Gateway: true, WebLink: true}
	cfg.Bus.Listen = ""
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.Keys = []gateway.KeyConfig{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}
	cfg.WebLink.Listen = "127.0.0.1:0"
	// frequent pings: a client that does not answer them is dropped
	// within pingsDrop; a loaded machine answers well within the timeout
	cfg.WebLink.PingInterval = config.Duration(100 * time.Millisecond)
	cfg.WebLink.PingTimeout = config.Duration(time.Second)
	const pingsDrop = 1100 * time.Millisecond
	cfg.Service.Apps = []service.AppConfig{{AppKey: "demo", Secret: config.NewSecret("app-api-secret-0123456789")}}
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
	webCfg := func(u service.SeedUser, token string) Config {
		return Config{Addresses: []string{"http://" + node.WebLinkAddr()}, Dialer: WebLinkDialer(),
			AppKey: "demo", Account: u.Account, Token: token,
			BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
	}
	start := func(c Config) *Client {
		t.Helper()
		cl, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		cl.Start()
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}

	// a bad token: ErrAuth, and the client stops
	bad := start(webCfg(users[1], "not-the-token"))
	if err := bad.WaitConnected(ctx); !errors.Is(err, ErrAuth) {
		t.Fatalf("bad token: %v, want ErrAuth", err)
	}
	_ = bad.Close()

	alice := start(Config{Addresses: []string{node.LinkAddr()}, ServerKeys: map[string][]byte{key.ID: key.Public},
		AppKey: "demo", Account: "alice", Token: users[0].Token})
	bob := start(webCfg(users[1], users[1].Token))
	for _, c := range []*Client{alice, bob} {
		if err := c.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
	}
	first := bob.SessionID()
	if first == "" {
		t.Fatal("WebLink client has no session id")
	}
	// the client answers pings: its session outlives the time in which a
	// client that did not would have been dropped
	time.Sleep(pingsDrop + 400*time.Millisecond)
	if bob.SessionID() != first || bob.State() != StateConnected {
		t.Fatalf("WebLink session did not survive pings: %q → %q, state %v", first, bob.SessionID(), bob.State())
	}

	expect := func(c *Client, text string) {
		t.Helper()
		for {
			select {
			case ev := <-c.Events():
				if ev.Message != nil && strings.Contains(string(ev.Message.Body), text) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no message %q", text)
			}
		}
	}
	if _, err := alice.SendText(ctx, imapi.ConvP2P, "bob", "hello over link"); err != nil {
		t.Fatal(err)
	}
	expect(bob, "hello over link")
	ack, err := bob.SendText(ctx, imapi.ConvP2P, "alice", "hello over weblink")
	if err != nil {
		t.Fatal(err)
	}
	if ack.Seq == 0 {
		t.Fatalf("send ack over WebLink: %+v", ack)
	}
	expect(alice, "hello over weblink")

	// a request error comes back with its code
	var resp json.RawMessage
	err = bob.Request(ctx, imapi.OpRecall, imapi.RecallReq{ConvID: "p2p:nobody:nowhere", MsgID: "no-such-message"}, &resp)
	var ie *imapi.Error
	if !errors.As(err, &ie) || ie.Code == imapi.OK {
		t.Fatalf("bad recall over WebLink: %v, want an imapi error", err)
	}

	// the server closes bob's socket (a drain kick): bob logs in again
	old := bob.SessionID()
	kick, _ := json.Marshal(imapi.Kick{Code: imapi.ErrUnavailable, Reason: "draining"})
	push, _ := json.Marshal(buswire.Push{Op: imapi.OpKick, OnlySession: old, Body: kick})
	if err := node.Bus().Conn().Publish(buswire.UserSubject("demo", "bob"), push); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 10*time.Second, "the WebLink client to log in again", func() bool {
		return bob.SessionID() != old && bob.State() == StateConnected
	})
	if _, err := alice.SendText(ctx, imapi.ConvP2P, "bob", "after reconnect"); err != nil {
		t.Fatal(err)
	}
	expect(bob, "after reconnect")
	if _, err := bob.SendText(ctx, imapi.ConvP2P, "alice", "bob is back"); err != nil {
		t.Fatal(err)
	}
	expect(alice, "bob is back")
}

// The Socket.IO decoder never panics and answers only acks it sent.
func FuzzWebLinkPacket(f *testing.F) {
	for _, s := range []string{`0{"sid":"x"}`, `1`, `4{"message":"no","data":{"code":401,"message":"bad token"}}`,
		`4"x"`, `2["login",{"session_id":"s"}]`, `2["message",{"seq":1}]`, `27["kick",{"code":1002}]`,
		`2["nope"]`, `2[]`, `2[1,2]`, `31[{"code":0,"body":{}}]`, `31[{"code":1003,"message":"x"}]`, `3[]`,
		`399999999999999999999[{}]`, `2/chat,["x"]`, `5`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		tr := &webLinkTransport{acks: map[uint64]opSeq{1: {imapi.OpSend, 7}}, login: true, loginSeq: 3}
		in, ok, err := tr.socketIO(p)
		if err != nil && ok {
			t.Fatal("error and a result")
		}
		if !ok {
			return
		}
		switch {
		case in.Push:
			if _, known := imapi.OpByName(in.Op.Name()); !known {
				t.Fatalf("push of unknown op %v", in.Op)
			}
		case in.Op == imapi.OpLogin:
			if in.Seq != 3 {
				t.Fatalf("login answer seq %d", in.Seq)
			}
		case in.Op == imapi.OpSend:
			if in.Seq != 7 {
				t.Fatalf("ack seq %d", in.Seq)
			}
		default:
			t.Fatalf("unexpected %+v", in)
		}
	})
}
