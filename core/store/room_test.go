package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/longlink/longlink/core/store"
)

func TestRooms(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		r := store.Room{AppKey: app, RoomID: "r1", Name: "lobby", Owner: "alice", HistorySize: 3}
		if err := st.CreateRoom(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateRoom(ctx, r); !errors.Is(err, store.ErrExists) {
			t.Fatalf("second create: %v, want ErrExists", err)
		}
		if _, err := st.Room(ctx, app, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown room: %v", err)
		}
		got, err := st.Room(ctx, app, "r1")
		if err != nil || got.Owner != "alice" || got.HistorySize != 3 || got.Closed {
			t.Fatalf("room %+v %v", got, err)
		}
		if a, err := st.RoomAccount(ctx, app, "r1", "alice"); err != nil || a.Role != "owner" {
			t.Fatalf("owner role %+v %v", a, err)
		}

		// Presence on two gateways; paging by account.
		for i, acc := range []string{"alice", "bob", "carol", "dave"} {
			gw := "gw1"
			if i%2 == 1 {
				gw = "gw2"
			}
			if err := st.EnterRoom(ctx, store.RoomPresence{AppKey: app, RoomID: "r1", SessionID: "s-" + acc, Account: acc, Gateway: gw}); err != nil {
				t.Fatal(err)
			}
		}
		// A second session of bob counts on the gateway, once in the list.
		if err := st.EnterRoom(ctx, store.RoomPresence{AppKey: app, RoomID: "r1", SessionID: "s-bob2", Account: "bob", Gateway: "gw1"}); err != nil {
			t.Fatal(err)
		}
		gws, err := st.RoomGateways(ctx, app, "r1")
		if err != nil || gws["gw1"] != 3 || gws["gw2"] != 2 {
			t.Fatalf("gateways %v %v", gws, err)
		}
		page, more, err := st.RoomMembers(ctx, app, "r1", "", 2)
		if err != nil || !more || len(page) != 2 || page[0].Account != "alice" || page[0].Role != "owner" || page[1].Account != "bob" {
			t.Fatalf("page 1 %+v %v %v", page, more, err)
		}
		page, more, err = st.RoomMembers(ctx, app, "r1", "bob", 2)
		if err != nil || more || len(page) != 2 || page[0].Account != "carol" || page[1].Role != "" {
			t.Fatalf("page 2 %+v %v %v", page, more, err)
		}
		if in, err := st.InRoom(ctx, app, "r1", "s-dave"); !in || err != nil {
			t.Fatalf("in room %v %v", in, err)
		}
		if ok, err := st.LeaveRoom(ctx, app, "r1", "s-dave"); !ok || err != nil {
			t.Fatalf("leave %v %v", ok, err)
		}
		// A dead gateway's presence goes; sessions entered after the cut stay.
		if err := st.EnterRoom(ctx, store.RoomPresence{AppKey: app, RoomID: "r1", SessionID: "late", Account: "erin", Gateway: "gw2",
			Entered: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if n, err := st.RemoveGatewayPresence(ctx, "gw2", time.Now()); n != 1 || err != nil {
			t.Fatalf("remove gw2 presence: %d %v", n, err)
		}
		if gws, _ := st.RoomGateways(ctx, app, "r1"); gws["gw2"] != 1 {
			t.Fatalf("gateways after removing gw2's old presence: %v", gws)
		}
		if _, err := st.LeaveRoom(ctx, app, "r1", "late"); err != nil {
			t.Fatal(err)
		}
		if in, _ := st.InRoom(ctx, app, "r1", "s-dave"); in {
			t.Fatal("dave still in the room after leaving")
		}
		if n, err := st.RemoveRoomAccount(ctx, app, "r1", "bob"); n != 1 || err != nil {
			t.Fatalf("remove bob: %d %v", n, err)
		}

		// Sanctions.
		until := time.Now().Add(time.Minute).UnixMilli()
		if err := st.PutRoomAccount(ctx, store.RoomAccount{AppKey: app, RoomID: "r1", Account: "carol", Role: "manager", MutedUntil: until}); err != nil {
			t.Fatal(err)
		}
		if a, err := st.RoomAccount(ctx, app, "r1", "carol"); err != nil || a.Role != "manager" || a.MutedUntil != until {
			t.Fatalf("carol %+v %v", a, err)
		}
		if err := st.SetRoomMuted(ctx, app, "r1", true); err != nil {
			t.Fatal(err)
		}

		// History keeps the last HistorySize messages.
		for i := range 5 {
			m := &store.RoomMessage{AppKey: app, RoomID: "r1", MsgID: fmt.Sprintf("m%d", i), Sender: "alice", ClientMsgID: fmt.Sprintf("c%d", i),
				Type: "text", Body: []byte(`{"n":1}`), Time: time.Now().UnixMilli()}
			if err := st.AppendRoomMessage(ctx, m); err != nil || m.Seq != int64(i+1) {
				t.Fatalf("append %d: seq %d %v", i, m.Seq, err)
			}
		}
		h, err := st.RoomHistory(ctx, app, "r1", 10)
		if err != nil || len(h) != 3 || h[0].Seq != 3 || h[2].Seq != 5 || string(h[2].Body) != `{"n":1}` {
			t.Fatalf("history %+v %v", h, err)
		}
		if h, _ := st.RoomHistory(ctx, app, "r1", 2); len(h) != 2 || h[1].Seq != 5 {
			t.Fatalf("history of 2: %+v", h)
		}

		// Close: presence goes, entering and sending fail.
		if err := st.CloseRoom(ctx, app, "r1"); err != nil {
			t.Fatal(err)
		}
		if err := st.CloseRoom(ctx, app, "r1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second close: %v", err)
		}
		if gws, _ := st.RoomGateways(ctx, app, "r1"); len(gws) != 0 {
			t.Fatalf("presence after close: %v", gws)
		}
		if err := st.EnterRoom(ctx, store.RoomPresence{AppKey: app, RoomID: "r1", SessionID: "x", Account: "x", Gateway: "gw1"}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("enter closed: %v", err)
		}
		if err := st.AppendRoomMessage(ctx, &store.RoomMessage{AppKey: app, RoomID: "r1", MsgID: "z", Sender: "a", Type: "text", Body: []byte(`1`)}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("send to closed: %v", err)
		}
		if r, _ := st.Room(ctx, app, "r1"); !r.Closed || !r.Muted || r.LastSeq != 5 {
			t.Fatalf("closed room %+v", r)
		}
	})
}
