package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
)

func ctx10(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func text(m imapi.Message) string {
	var b struct {
		Text string `json:"text"`
	}
	_ = json.Unmarshal(m.Body, &b)
	return b.Text
}

func TestDirectMessages(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	tok := c.users("alice", "bob")
	alice := c.client(t, "alice", tok["alice"], "phone")
	bob := c.client(t, "bob", tok["bob"], "phone")
	alice.connected(t)
	bob.connected(t)
	ctx := ctx10(t)
	for i := 1; i <= 5; i++ {
		ack, err := alice.SendText(ctx, imapi.ConvP2P, "bob", fmt.Sprintf("hello %d", i))
		if err != nil {
			t.Fatal(err)
		}
		if ack.Seq != int64(i) || ack.MsgID == "" || ack.ConvID != imapi.P2PConvID("alice", "bob") {
			t.Fatalf("ack %+v", ack)
		}
	}
	bob.waitUntil("5 messages", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 5 })
	for i, m := range bob.messages() {
		if m.Seq != int64(i+1) || m.From != "alice" || text(m) != fmt.Sprintf("hello %d", i+1) {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	// bob answers; alice gets it, and not her own messages back.
	if _, err := bob.SendText(ctx, imapi.ConvP2P, "alice", "hi alice"); err != nil {
		t.Fatal(err)
	}
	alice.waitUntil("reply", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 1 })
	time.Sleep(100 * time.Millisecond)
	if msgs := alice.messages(); len(msgs) != 1 || msgs[0].Seq != 6 || msgs[0].From != "bob" {
		t.Fatalf("alice got %+v", msgs)
	}
	// A refused request comes back as *imapi.Error.
	_, err := alice.SendText(ctx, imapi.ConvP2P, "nobody", "x")
	var ie *imapi.Error
	if !errors.As(err, &ie) {
		t.Fatalf("send to unknown user: %v", err)
	}
}

func TestOfflineThenSync(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	tok := c.users("alice", "bob")
	alice := c.client(t, "alice", tok["alice"], "phone")
	ctx := ctx10(t)
	for i := 1; i <= 30; i++ {
		if _, err := alice.SendText(ctx, imapi.ConvP2P, "bob", fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	bob := c.client(t, "bob", tok["bob"], "phone")
	bob.waitUntil("30 synced messages", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 30 })
	// And live ones continue the sequence.
	if _, err := alice.SendText(ctx, imapi.ConvP2P, "bob", "m31"); err != nil {
		t.Fatal(err)
	}
	bob.waitUntil("31 messages", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 31 })
	time.Sleep(100 * time.Millisecond)
	msgs := bob.messages()
	if len(msgs) != 31 {
		t.Fatalf("%d messages, want 31", len(msgs))
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) || text(m) != fmt.Sprintf("m%d", i+1) {
			t.Fatalf("message %d: seq %d %q", i, m.Seq, text(m))
		}
	}
}

func TestGroups(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	tok := c.users("alice", "bob", "carol", "dan")
	alice := c.client(t, "alice", tok["alice"], "phone")
	bob := c.client(t, "bob", tok["bob"], "phone")
	carol := c.client(t, "carol", tok["carol"], "phone")
	for _, cl := range []*client{alice, bob, carol} {
		cl.connected(t)
	}
	ctx := ctx10(t)
	var g imapi.Group
	if err := alice.Request(ctx, imapi.OpGroupCreate, imapi.GroupCreateReq{Name: "team", Members: []string{"bob", "carol"}}, &g); err != nil {
		t.Fatal(err)
	}
	if g.GroupID == "" || len(g.Members) != 3 {
		t.Fatalf("group %+v", g)
	}
	bob.waitUntil("group created event", 10*time.Second, func(c *client) bool { return len(c.groups) >= 1 })
	for i := 1; i <= 3; i++ {
		if _, err := alice.SendText(ctx, imapi.ConvGroup, g.GroupID, fmt.Sprintf("g%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bob.SendText(ctx, imapi.ConvGroup, g.GroupID, "g4"); err != nil {
		t.Fatal(err)
	}
	carol.waitUntil("4 group messages", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 4 })
	for i, m := range carol.messages() {
		if m.ConvID != imapi.GroupConvID(g.GroupID) || m.Seq != int64(i+1) || text(m) != fmt.Sprintf("g%d", i+1) {
			t.Fatalf("carol message %d: %+v", i, m)
		}
	}
	// Remove carol: she gets the event, and no later messages.
	if err := alice.Request(ctx, imapi.OpGroupRemove, imapi.GroupMembersReq{GroupID: g.GroupID, Members: []string{"carol"}}, nil); err != nil {
		t.Fatal(err)
	}
	carol.waitUntil("removed event", 10*time.Second, func(c *client) bool {
		for _, e := range c.groups {
			if e.Kind == "removed" {
				return true
			}
		}
		return false
	})
	if _, err := alice.SendText(ctx, imapi.ConvGroup, g.GroupID, "g5"); err != nil {
		t.Fatal(err)
	}
	bob.waitUntil("g5", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 4 })
	time.Sleep(200 * time.Millisecond)
	if n := len(carol.messages()); n != 4 {
		t.Fatalf("carol got %d messages after removal, want 4", n)
	}
	// A non-member cannot send.
	dan := c.client(t, "dan", tok["dan"], "phone")
	_, err := dan.SendText(ctx, imapi.ConvGroup, g.GroupID, "intruder")
	var ie *imapi.Error
	if !errors.As(err, &ie) || ie.Code != imapi.ErrForbidden {
		t.Fatalf("non-member send: %v", err)
	}
}

func TestRecallAndReadReceipts(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	tok := c.users("alice", "bob")
	alice := c.client(t, "alice", tok["alice"], "phone")
	bob := c.client(t, "bob", tok["bob"], "phone")
	bob.connected(t)
	ctx := ctx10(t)
	ack1, err := alice.SendText(ctx, imapi.ConvP2P, "bob", "first")
	if err != nil {
		t.Fatal(err)
	}
	ack2, err := alice.SendText(ctx, imapi.ConvP2P, "bob", "oops")
	if err != nil {
		t.Fatal(err)
	}
	bob.waitUntil("2 messages", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 2 })
	if err := alice.Request(ctx, imapi.OpRecall, imapi.RecallReq{ConvID: ack2.ConvID, MsgID: ack2.MsgID}, nil); err != nil {
		t.Fatal(err)
	}
	bob.waitUntil("recall", 10*time.Second, func(c *client) bool { return len(c.recalls) >= 1 })
	if r := bob.recalls[0]; r.MsgID != ack2.MsgID || r.By != "alice" {
		t.Fatalf("recalled %+v", r)
	}
	// bob cannot recall alice's message.
	err = bob.Request(ctx, imapi.OpRecall, imapi.RecallReq{ConvID: ack1.ConvID, MsgID: ack1.MsgID}, nil)
	var ie *imapi.Error
	if !errors.As(err, &ie) {
		t.Fatalf("recall of another's message: %v", err)
	}
	// Read receipt.
	if err := bob.Request(ctx, imapi.OpRead, imapi.ReadReq{ConvID: ack1.ConvID, Seq: ack2.Seq}, nil); err != nil {
		t.Fatal(err)
	}
	alice.waitUntil("receipt", 10*time.Second, func(c *client) bool { return len(c.receipts) >= 1 })
	if r := alice.receipts[0]; r.Reader != "bob" || r.Seq != ack2.Seq || r.ConvID != ack1.ConvID {
		t.Fatalf("receipt %+v", r)
	}
	var list imapi.ConvListResp
	if err := bob.Request(ctx, imapi.OpConvList, nil, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Conversations) != 1 || list.Conversations[0].Unread != 0 || list.Conversations[0].ReadSeq != ack2.Seq {
		t.Fatalf("conversation list %+v", list)
	}
}

func TestMultiDevicePolicy(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{devices: imapi.DevicesKickSameType})
	tok := c.users("alice", "bob")
	phone1 := c.client(t, "bob", tok["bob"], "phone")
	phone1.connected(t)
	pc := c.client(t, "bob", tok["bob"], "pc")
	pc.connected(t)
	phone2 := c.client(t, "bob", tok["bob"], "phone")
	phone2.connected(t)
	phone1.waitUntil("kicked", 10*time.Second, func(c *client) bool { return len(c.kicks) >= 1 })
	if k := phone1.kicks[0]; k.Code != imapi.ErrKicked {
		t.Fatalf("kick %+v", k)
	}
	ctx := ctx10(t)
	phone1.waitUntil("stopped", 10*time.Second, func(c *client) bool {
		return len(c.states) > 0 && c.states[len(c.states)-1] == sdk.StateStopped
	})
	if err := phone1.WaitConnected(ctx); !errors.Is(err, sdk.ErrKicked) {
		t.Fatalf("kicked client: %v", err)
	}
	// The pc and the new phone both get alice's messages.
	alice := c.client(t, "alice", tok["alice"], "phone")
	if _, err := alice.SendText(ctx, imapi.ConvP2P, "bob", "to all devices"); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client{pc, phone2} {
		cl.waitUntil("message on every device", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 1 })
	}
	// A message bob sends from his pc reaches his phone as well.
	if _, err := pc.SendText(ctx, imapi.ConvP2P, "alice", "from pc"); err != nil {
		t.Fatal(err)
	}
	phone2.waitUntil("own message from the other device", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 2 })
	if m := phone2.messages()[1]; m.From != "bob" || text(m) != "from pc" {
		t.Fatalf("phone got %+v", m)
	}

	// Policy "single": any new login kicks every other session.
	c2 := startCore(t, t.TempDir(), "", newKey(t), coreOpts{devices: imapi.DevicesSingle})
	tok2 := c2.users("erin")
	a := c2.client(t, "erin", tok2["erin"], "phone")
	a.connected(t)
	b := c2.client(t, "erin", tok2["erin"], "pc")
	b.connected(t)
	a.waitUntil("kicked by another type", 10*time.Second, func(c *client) bool { return len(c.kicks) >= 1 })
}

func TestBadToken(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	c.users("alice")
	cl := c.client(t, "alice", "wrong-token", "phone")
	if err := cl.WaitConnected(ctx10(t)); !errors.Is(err, sdk.ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
}
