package service_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/service/room"
	"github.com/longlink/longlink/pkg/config"
)

// enterRoom enters a room with a fresh token of role.
func (c *client) enterRoom(room, role string) (imapi.RoomEnterResp, imapi.Code) {
	c.e.t.Helper()
	tok, err := c.e.svc.Rooms().IssueToken(context.Background(), appKey, room, c.sess.Account, role, 0)
	if err != nil {
		c.e.t.Fatalf("token: %v", err)
	}
	var resp imapi.RoomEnterResp
	code := c.call(imapi.OpRoomEnter, &imapi.RoomEnterReq{RoomID: room, Token: tok.Token}, &resp)
	return resp, code
}

func (c *client) roomSend(room, cmid string) (imapi.RoomSendAck, imapi.Code) {
	c.e.t.Helper()
	var ack imapi.RoomSendAck
	code := c.call(imapi.OpRoomSend, &imapi.RoomSendReq{RoomID: room, ClientMsgID: cmid, Body: json.RawMessage(`{"text":"hi"}`)}, &ack)
	return ack, code
}

// A room's rules as the service enforces them: tokens, roles, mutes, kicks,
// rate limits, history and close. Messages and events are published once on
// the room's subjects.
func TestRoomRules(t *testing.T) {
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, func(c *service.Config) { c.Rooms.MemberRate = 3; c.Rooms.MsgRate = 1000 })
		ctx := context.Background()
		msgs := make(chan *nats.Msg, 256)
		sub, err := e.nc.ChanSubscribe(buswire.RoomSubject(appKey, "r1")+".*", msgs)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		_ = e.nc.Flush()
		next := func(suffix string) []byte {
			t.Helper()
			for {
				select {
				case m := <-msgs:
					if m.Subject == buswire.RoomSubject(appKey, "r1")+suffix {
						return m.Data
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("nothing on %s", suffix)
				}
			}
		}

		if _, err := e.svc.Rooms().Create(ctx, appKey, &room.CreateReq{RoomID: "r1", Name: "lobby", Owner: "alice", HistorySize: 5}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Rooms().Create(ctx, appKey, &room.CreateReq{RoomID: "r1", Owner: "alice"}); err == nil {
			t.Fatal("a room id was taken twice")
		}
		alice, bob, carol := e.login("alice", "pc"), e.login("bob", "pc"), e.login("carol", "pc")

		// Tokens: wrong room, another account's, expired, tampered.
		tok, _ := e.svc.Rooms().IssueToken(ctx, appKey, "r1", "bob", "", time.Minute)
		for name, req := range map[string]imapi.RoomEnterReq{
			"another account's": {RoomID: "r1", Token: tok.Token},
			"tampered":          {RoomID: "r1", Token: tok.Token[:len(tok.Token)-2] + "xx"},
			"garbage":           {RoomID: "r1", Token: "x.y"},
		} {
			if code := carol.call(imapi.OpRoomEnter, &req, nil); code != imapi.ErrUnauthorized {
				t.Errorf("%s token: %v, want 401", name, code)
			}
		}
		e.clock.advance(2 * time.Minute)
		if code := bob.call(imapi.OpRoomEnter, &imapi.RoomEnterReq{RoomID: "r1", Token: tok.Token}, nil); code != imapi.ErrUnauthorized {
			t.Fatalf("expired token: %v, want 401", code)
		}
		if code := bob.call(imapi.OpRoomSend, &imapi.RoomSendReq{RoomID: "r1", ClientMsgID: "x", Body: json.RawMessage(`1`)}, nil); code != imapi.ErrForbidden {
			t.Fatalf("send before entering: %v, want 403", code)
		}

		if r, code := alice.enterRoom("r1", ""); code != imapi.OK || r.Role != imapi.RoleOwner {
			t.Fatalf("owner enter: %v %+v", code, r)
		}
		if _, code := bob.enterRoom("r1", ""); code != imapi.OK {
			t.Fatalf("bob enter: %v", code)
		}
		if r, code := carol.enterRoom("r1", imapi.RoleGuest); code != imapi.OK || r.Role != imapi.RoleGuest {
			t.Fatalf("guest enter: %v %+v", code, r)
		}
		if _, code := carol.roomSend("r1", "g1"); code != imapi.ErrForbidden {
			t.Fatalf("guest send: %v, want 403", code)
		}

		// Messages: stored, published once, the last HistorySize kept.
		for i := range 3 {
			e.clock.advance(time.Second)
			if _, code := bob.roomSend("r1", "b"+string(rune('0'+i))); code != imapi.OK {
				t.Fatalf("send %d: %v", i, code)
			}
			var m imapi.RoomMessage
			if err := json.Unmarshal(next(buswire.RoomMessageSuffix), &m); err != nil || m.From != "bob" || m.Seq != int64(i+1) {
				t.Fatalf("published %+v %v", m, err)
			}
		}
		// The member limit (3/s, burst 3) refuses the fourth at once.
		for i := range 3 {
			_, _ = alice.roomSend("r1", "a"+string(rune('0'+i)))
		}
		if _, code := alice.roomSend("r1", "a9"); code != imapi.ErrRateLimited {
			t.Fatalf("fourth message in a second: %v, want 429", code)
		}
		e.clock.advance(2 * time.Second)
		var hist imapi.RoomHistoryResp
		if code := carol.call(imapi.OpRoomHistory, &imapi.RoomHistoryReq{RoomID: "r1", Limit: 100}, &hist); code != imapi.OK || len(hist.Messages) != 5 || hist.Messages[4].Seq != 6 {
			t.Fatalf("history: %v %d", code, len(hist.Messages))
		}
		if r, _ := e.login("dave", "pc").enterRoom("r1", ""); len(r.History) != 5 || r.Room.Members != 4 {
			t.Fatalf("history on enter: %d messages, %d members", len(r.History), r.Room.Members)
		}

		// Members, in pages.
		var page imapi.RoomMembersResp
		if code := bob.call(imapi.OpRoomMembers, &imapi.RoomMembersReq{RoomID: "r1", Limit: 3}, &page); code != imapi.OK || len(page.Members) != 3 || page.Next != "carol" {
			t.Fatalf("members page: %v %+v", code, page)
		}
		after := page.Next
		page = imapi.RoomMembersResp{}
		if code := bob.call(imapi.OpRoomMembers, &imapi.RoomMembersReq{RoomID: "r1", After: after}, &page); code != imapi.OK || len(page.Members) != 1 || page.Members[0].Account != "dave" || page.Next != "" {
			t.Fatalf("members page 2: %v %+v", code, page)
		}

		// Roles: only the owner sets them; a manager mutes members but not
		// other managers or the owner.
		if code := bob.call(imapi.OpRoomSetRole, &imapi.RoomRoleReq{RoomID: "r1", Account: "carol", Role: imapi.RoleManager}, nil); code != imapi.ErrForbidden {
			t.Fatalf("member sets a role: %v", code)
		}
		if code := alice.call(imapi.OpRoomSetRole, &imapi.RoomRoleReq{RoomID: "r1", Account: "carol", Role: imapi.RoleManager}, nil); code != imapi.OK {
			t.Fatalf("owner sets a role: %v", code)
		}
		var ev imapi.RoomEvent
		_ = json.Unmarshal(next(buswire.RoomEventSuffix), &ev)
		if ev.Kind != imapi.RoomEventRole || ev.Account != "carol" || ev.Role != imapi.RoleManager {
			t.Fatalf("role event %+v", ev)
		}
		if code := carol.call(imapi.OpRoomMute, &imapi.RoomMuteReq{RoomID: "r1", Account: "alice", Muted: true}, nil); code != imapi.ErrForbidden {
			t.Fatalf("manager mutes the owner: %v", code)
		}
		if code := carol.call(imapi.OpRoomMute, &imapi.RoomMuteReq{RoomID: "r1", Account: "bob", Muted: true, DurationSec: 60}, nil); code != imapi.OK {
			t.Fatalf("manager mutes a member: %v", code)
		}
		_ = json.Unmarshal(next(buswire.RoomEventSuffix), &ev)
		if ev.Kind != imapi.RoomEventMuted || ev.Account != "bob" || ev.Until == 0 {
			t.Fatalf("mute event %+v", ev)
		}
		if _, code := bob.roomSend("r1", "m1"); code != imapi.ErrForbidden {
			t.Fatalf("muted member sends: %v", code)
		}
		e.clock.advance(61 * time.Second)
		if _, code := bob.roomSend("r1", "m2"); code != imapi.OK {
			t.Fatalf("send after the mute ran out: %v", code)
		}
		_ = next(buswire.RoomMessageSuffix)
		// The whole room muted: members silent, managers not.
		if code := carol.call(imapi.OpRoomMute, &imapi.RoomMuteReq{RoomID: "r1", Muted: true}, nil); code != imapi.OK {
			t.Fatalf("mute room: %v", code)
		}
		if _, code := bob.roomSend("r1", "m3"); code != imapi.ErrForbidden {
			t.Fatalf("member in a muted room: %v", code)
		}
		if _, code := carol.roomSend("r1", "m4"); code != imapi.OK {
			t.Fatalf("manager in a muted room: %v", code)
		}

		// Kick with a ban: out of the room, refused on enter until it ends.
		if code := carol.call(imapi.OpRoomKick, &imapi.RoomKickReq{RoomID: "r1", Account: "bob", BanSec: 30, Reason: "spam"}, nil); code != imapi.OK {
			t.Fatalf("kick: %v", code)
		}
		if code := bob.call(imapi.OpRoomHistory, &imapi.RoomHistoryReq{RoomID: "r1"}, nil); code != imapi.ErrForbidden {
			t.Fatalf("kicked member reads history: %v", code)
		}
		if _, code := bob.enterRoom("r1", ""); code != imapi.ErrForbidden {
			t.Fatalf("banned member enters: %v", code)
		}
		e.clock.advance(31 * time.Second)
		if _, code := bob.enterRoom("r1", ""); code != imapi.OK {
			t.Fatalf("enter after the ban: %v", code)
		}

		// Leave, then close: only the owner closes; then nobody enters.
		if code := bob.call(imapi.OpRoomLeave, &imapi.RoomRef{RoomID: "r1"}, nil); code != imapi.OK {
			t.Fatalf("leave: %v", code)
		}
		if code := carol.call(imapi.OpRoomClose, &imapi.RoomRef{RoomID: "r1"}, nil); code != imapi.ErrForbidden {
			t.Fatalf("manager closes: %v", code)
		}
		if code := alice.call(imapi.OpRoomClose, &imapi.RoomRef{RoomID: "r1"}, nil); code != imapi.OK {
			t.Fatalf("close: %v", code)
		}
		if _, err := e.svc.Rooms().IssueToken(ctx, appKey, "r1", "bob", "", 0); err == nil {
			t.Fatal("token for a closed room")
		}
		if _, code := alice.roomSend("r1", "late"); code != imapi.ErrNotFound {
			t.Fatalf("send to a closed room: %v", code)
		}
	})
}

// The room-level limit counts every sender together.
func TestRoomRateLimit(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *service.Config) { c.Rooms.MsgRate = 2; c.Rooms.MemberRate = 100 })
	if _, err := e.svc.Rooms().Create(context.Background(), appKey, &room.CreateReq{RoomID: "r2", Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	a, b := e.login("alice", "pc"), e.login("bob", "pc")
	a.enterRoom("r2", "")
	b.enterRoom("r2", "")
	codes := []imapi.Code{}
	for i, c := range []*client{a, b, a} {
		_, code := c.roomSend("r2", string(rune('a'+i)))
		codes = append(codes, code)
	}
	if codes[0] != imapi.OK || codes[1] != imapi.OK || codes[2] != imapi.ErrRateLimited {
		t.Fatalf("codes %v, want ok ok 429", codes)
	}
}

// Presence recorded through a gateway that goes silent, or restarts under
// the same id, is removed: such a gateway never sends its sessions'
// room.leave.
func TestRoomGatewayGone(t *testing.T) {
	// 4s: a sweep that runs 2s late (a loaded machine) counts as a stall
	// of the node, which restarts the timeouts of the test clock.
	e := newEnv(t, "sqlite", func(c *service.Config) { c.Rooms.GatewayTimeout = config.Duration(4 * time.Second) })
	ctx := context.Background()
	if _, err := e.svc.Rooms().Create(ctx, appKey, &room.CreateReq{RoomID: "r3", Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	announce := func(id string, started int64) {
		b, _ := json.Marshal(buswire.GatewayAnnounce{ID: id, Addresses: []string{"link://" + id}, Started: started})
		if err := e.nc.Publish(buswire.GatewaySubject, b); err != nil {
			t.Fatal(err)
		}
		_ = e.nc.Flush()
	}
	members := func() int {
		p, err := e.svc.Rooms().Members(ctx, appKey, &imapi.RoomMembersReq{RoomID: "r3"})
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Members)
	}
	waitMembers := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for members() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d members, want %d", members(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	announce("gw-a", 1)
	announce("gw-b", 1)
	a, b := e.login("alice", "pc"), e.login("bob", "pc")
	a.sess.Gateway, b.sess.Gateway = "gw-a", "gw-b"
	a.enterRoom("r3", "")
	b.enterRoom("r3", "")
	waitMembers(2)

	// gw-b restarts: bob's old session is gone.
	e.clock.advance(time.Second)
	announce("gw-b", e.clock.now().UnixMilli())
	waitMembers(1)

	// gw-a falls silent past the timeout.
	e.clock.advance(5 * time.Second)
	announce("gw-b", e.clock.now().UnixMilli()-1000)
	waitMembers(0)
}
