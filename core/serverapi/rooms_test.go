package serverapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/serverapi"
	"github.com/longlink/longlink/core/service/room"
)

// The chatroom endpoints end to end: create, get, entry token (used on the
// bus as a gateway would), entry points from gateway announcements, a
// system message published once on the room subject, members, close.
func TestRooms(t *testing.T) {
	e := newEnv(t)
	var created serverapi.CreateUserResp
	e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "host"}, &created)
	e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "fan"}, nil)

	var info imapi.RoomInfo
	e.ok(http.MethodPost, "/v1/rooms", room.CreateReq{RoomID: "live1", Name: "Live", Owner: "host", HistorySize: 10}, &info)
	if info.RoomID != "live1" || info.Owner != "host" {
		t.Fatalf("created %+v", info)
	}
	e.fails(http.MethodPost, "/v1/rooms", room.CreateReq{RoomID: "live1", Owner: "host"}, imapi.ErrConflict)
	e.fails(http.MethodPost, "/v1/rooms", room.CreateReq{RoomID: "live2", Owner: "nobody"}, imapi.ErrNotFound)
	e.fails(http.MethodPost, "/v1/rooms", room.CreateReq{RoomID: "bad.id", Owner: "host"}, imapi.ErrBadRequest)
	e.fails(http.MethodGet, "/v1/rooms/nope", nil, imapi.ErrNotFound)

	// No gateway has announced itself yet.
	e.fails(http.MethodGet, "/v1/rooms/live1/addresses", nil, imapi.ErrUnavailable)
	for _, a := range []buswire.GatewayAnnounce{
		{ID: "gw-a", Addresses: []string{"link://10.0.0.1:7710"}, Sessions: 10, Capacity: 100},
		{ID: "gw-b", Addresses: []string{"link://10.0.0.2:7710"}, Sessions: 5, Capacity: 100},
		{ID: "gw-c", Addresses: []string{"link://10.0.0.3:7710"}, Sessions: 0, Capacity: 100, Draining: true},
	} {
		b, _ := json.Marshal(a)
		if err := e.nc.Publish(buswire.GatewaySubject, b); err != nil {
			t.Fatal(err)
		}
	}
	_ = e.nc.Flush()
	var eps serverapi.RoomEntryPointsResp
	deadline := time.Now().Add(5 * time.Second)
	for len(eps.EntryPoints) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		_, b := e.do(http.MethodGet, "/v1/rooms/live1/addresses", nil, nil)
		_ = json.Unmarshal(b, &eps)
	}
	// An empty room: the least loaded gateway first; a draining one never.
	if len(eps.EntryPoints) != 2 || eps.EntryPoints[0].Gateway != "gw-b" {
		t.Fatalf("entry points %+v", eps.EntryPoints)
	}

	// Tokens: for an existing account, member or guest only.
	e.fails(http.MethodPost, "/v1/rooms/live1/tokens", serverapi.RoomTokenReq{Account: "ghost"}, imapi.ErrNotFound)
	e.fails(http.MethodPost, "/v1/rooms/live1/tokens", serverapi.RoomTokenReq{Account: "fan", Role: "owner"}, imapi.ErrBadRequest)
	var tok room.Token
	e.ok(http.MethodPost, "/v1/rooms/live1/tokens", serverapi.RoomTokenReq{Account: "fan", TTLSec: 60}, &tok)
	if tok.Token == "" || tok.Role != imapi.RoleMember || tok.Expires-time.Now().Unix() > 61 {
		t.Fatalf("token %+v", tok)
	}
	// The fan enters on gw-a as a gateway would relay it.
	sess := buswire.Session{AppKey: appKey, Account: "fan", SessionID: "s-fan", Gateway: "gw-a"}
	var entered imapi.RoomEnterResp
	if code := e.bus(sess, imapi.OpRoomEnter, imapi.RoomEnterReq{RoomID: "live1", Token: tok.Token}, &entered); code != imapi.OK || entered.Role != imapi.RoleMember {
		t.Fatalf("enter: %v %+v", code, entered)
	}
	// Now the gateway holding the room's member comes first.
	e.ok(http.MethodGet, "/v1/rooms/live1/addresses", nil, &eps)
	if eps.EntryPoints[0].Gateway != "gw-a" || eps.EntryPoints[0].Members != 1 {
		t.Fatalf("entry points with a member %+v", eps.EntryPoints)
	}

	msgs := make(chan *nats.Msg, 4)
	sub, err := e.nc.ChanSubscribe(buswire.RoomSubject(appKey, "live1")+".*", msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = e.nc.Flush()
	var ack imapi.RoomSendAck
	e.ok(http.MethodPost, "/v1/rooms/live1/messages", serverapi.RoomMessageReq{ClientMsgID: "n1", Body: json.RawMessage(`{"text":"welcome"}`)}, &ack)
	if ack.Seq != 1 {
		t.Fatalf("ack %+v", ack)
	}
	select {
	case m := <-msgs:
		var rm imapi.RoomMessage
		if err := json.Unmarshal(m.Data, &rm); err != nil || rm.From != imapi.SystemAccount || rm.Seq != 1 {
			t.Fatalf("published %s %v", m.Data, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the room message was not published")
	}
	e.fails(http.MethodPost, "/v1/rooms/live1/messages", serverapi.RoomMessageReq{ClientMsgID: "n2"}, imapi.ErrBadRequest)

	var page imapi.RoomMembersResp
	e.ok(http.MethodGet, "/v1/rooms/live1/members?limit=10", nil, &page)
	if len(page.Members) != 1 || page.Members[0].Account != "fan" {
		t.Fatalf("members %+v", page)
	}
	e.fails(http.MethodGet, "/v1/rooms/live1/members?limit=0", nil, imapi.ErrBadRequest)
	e.ok(http.MethodGet, "/v1/rooms/live1", nil, &info)
	if info.Members != 1 || info.LastSeq != 1 {
		t.Fatalf("room %+v", info)
	}

	e.ok(http.MethodPost, "/v1/rooms/live1/close", nil, nil)
	select {
	case m := <-msgs:
		var ev imapi.RoomEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Kind != imapi.RoomEventClosed {
			t.Fatalf("close event %s %v", m.Data, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no close event")
	}
	e.fails(http.MethodPost, "/v1/rooms/live1/close", nil, imapi.ErrNotFound)
	e.fails(http.MethodPost, "/v1/rooms/live1/tokens", serverapi.RoomTokenReq{Account: "fan"}, imapi.ErrNotFound)
	e.ok(http.MethodGet, "/v1/rooms/live1", nil, &info)
	if !info.Closed || info.Members != 0 {
		t.Fatalf("closed room %+v", info)
	}
}

// bus sends a request as a gateway would, for sess.
func (e *env) bus(sess buswire.Session, op imapi.Op, req, resp any) imapi.Code {
	e.t.Helper()
	body, _ := json.Marshal(req)
	data, _ := json.Marshal(&buswire.Request{Session: sess, Body: body})
	m, err := e.nc.Request(buswire.ServiceSubject(buswire.DefaultCluster, op), data, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	var r buswire.Reply
	_ = json.Unmarshal(m.Data, &r)
	if r.Code == imapi.OK && resp != nil {
		_ = json.Unmarshal(r.Body, resp)
	}
	return r.Code
}

// The app's server mutes and kicks: a muted member's and a muted room's
// sends are refused on the bus, unmuting lets them through again, every
// change is published as a room event, a kick with a ban removes the
// member and refuses its next entry, and the server may act on the owner.
func TestRoomKickAndMute(t *testing.T) {
	e := newEnv(t)
	e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "host"}, nil)
	e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "fan"}, nil)
	e.ok(http.MethodPost, "/v1/rooms", room.CreateReq{RoomID: "r1", Owner: "host"}, nil)
	events := make(chan *nats.Msg, 16)
	sub, err := e.nc.ChanSubscribe(buswire.RoomSubject(appKey, "r1")+buswire.RoomEventSuffix, events)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = e.nc.Flush()
	event := func(kind, account string) {
		t.Helper()
		select {
		case m := <-events:
			var ev imapi.RoomEvent
			if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Kind != kind || ev.Account != account || ev.By != imapi.SystemAccount {
				t.Fatalf("event %s %v, want %s of %q by %s", m.Data, err, kind, account, imapi.SystemAccount)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", kind)
		}
	}
	enter := func(account string) imapi.Code {
		var tok room.Token
		e.ok(http.MethodPost, "/v1/rooms/r1/tokens", serverapi.RoomTokenReq{Account: account}, &tok)
		sess := buswire.Session{AppKey: appKey, Account: account, SessionID: "s-" + account, Gateway: "gw-a"}
		return e.bus(sess, imapi.OpRoomEnter, imapi.RoomEnterReq{RoomID: "r1", Token: tok.Token}, nil)
	}
	n := 0
	send := func(account string) imapi.Code {
		n++
		sess := buswire.Session{AppKey: appKey, Account: account, SessionID: "s-" + account, Gateway: "gw-a"}
		return e.bus(sess, imapi.OpRoomSend, imapi.RoomSendReq{RoomID: "r1", ClientMsgID: fmt.Sprint("c", n), Body: json.RawMessage(`{"text":"x"}`)}, nil)
	}
	for _, a := range []string{"host", "fan"} {
		if code := enter(a); code != imapi.OK {
			t.Fatalf("%s enters: %v", a, code)
		}
	}
	if code := send("fan"); code != imapi.OK {
		t.Fatalf("send before any mute: %v", code)
	}

	e.ok(http.MethodPost, "/v1/rooms/r1/mute", serverapi.RoomMuteReq{Account: "fan", Muted: true, DurationSec: 60}, nil)
	event(imapi.RoomEventMuted, "fan")
	if code := send("fan"); code != imapi.ErrForbidden {
		t.Fatalf("a muted member sends: %v", code)
	}
	e.ok(http.MethodPost, "/v1/rooms/r1/mute", serverapi.RoomMuteReq{Account: "fan", Muted: false}, nil)
	event(imapi.RoomEventUnmuted, "fan")
	if code := send("fan"); code != imapi.OK {
		t.Fatalf("an unmuted member sends: %v", code)
	}

	e.ok(http.MethodPost, "/v1/rooms/r1/mute", serverapi.RoomMuteReq{Muted: true}, nil)
	event(imapi.RoomEventRoomMuted, "")
	if code := send("fan"); code != imapi.ErrForbidden {
		t.Fatalf("a member sends in a muted room: %v", code)
	}
	if code := send("host"); code != imapi.OK {
		t.Fatalf("the owner sends in a muted room: %v", code)
	}
	e.ok(http.MethodPost, "/v1/rooms/r1/mute", serverapi.RoomMuteReq{Muted: false}, nil)
	event(imapi.RoomEventRoomUnmuted, "")

	// Above every role: the owner can be muted by the app's server.
	e.ok(http.MethodPost, "/v1/rooms/r1/mute", serverapi.RoomMuteReq{Account: "host", Muted: true}, nil)
	event(imapi.RoomEventMuted, "host")
	if code := send("host"); code != imapi.ErrForbidden {
		t.Fatalf("a muted owner sends: %v", code)
	}

	e.ok(http.MethodPost, "/v1/rooms/r1/kick", serverapi.RoomKickReq{Account: "fan", Reason: "spam", BanSec: 60}, nil)
	event(imapi.RoomEventKicked, "fan")
	var page imapi.RoomMembersResp
	e.ok(http.MethodGet, "/v1/rooms/r1/members", nil, &page)
	if len(page.Members) != 1 || page.Members[0].Account != "host" {
		t.Fatalf("members after the kick %+v", page)
	}
	if code := enter("fan"); code != imapi.ErrForbidden {
		t.Fatalf("a banned member enters: %v", code)
	}

	e.fails(http.MethodPost, "/v1/rooms/r1/kick", serverapi.RoomKickReq{}, imapi.ErrBadRequest)
	e.fails(http.MethodPost, "/v1/rooms/r1/kick", serverapi.RoomKickReq{Account: "fan", BanSec: -1}, imapi.ErrBadRequest)
	e.fails(http.MethodPost, "/v1/rooms/r1/mute", serverapi.RoomMuteReq{Account: "fan", Muted: true, DurationSec: -5}, imapi.ErrBadRequest)
	e.fails(http.MethodPost, "/v1/rooms/r1/mute", serverapi.RoomMuteReq{Account: "bad.name", Muted: true}, imapi.ErrBadRequest)
	e.fails(http.MethodPost, "/v1/rooms/nope/mute", serverapi.RoomMuteReq{Muted: true}, imapi.ErrNotFound)
	e.ok(http.MethodPost, "/v1/rooms/r1/close", nil, nil)
	e.fails(http.MethodPost, "/v1/rooms/r1/kick", serverapi.RoomKickReq{Account: "host"}, imapi.ErrNotFound)
}
