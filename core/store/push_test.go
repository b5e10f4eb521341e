package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/longlink/longlink/core/store"
)

func TestPushTokensAndSettings(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		put := func(account, device, provider, token string) {
			t.Helper()
			if err := st.PutPushToken(ctx, store.PushToken{AppKey: app, Account: account, DeviceID: device, Provider: provider, Token: token}); err != nil {
				t.Fatal(err)
			}
		}
		put("alice", "phone", "apns", "t1")
		put("alice", "tablet", "fcm", "t2")
		put("alice", "phone", "apns", "t3") // the device's token changes
		ts, err := st.PushTokens(ctx, app, "alice")
		if err != nil || len(ts) != 2 || ts[0].DeviceID != "phone" || ts[0].Token != "t3" || ts[1].Token != "t2" {
			t.Fatalf("tokens %+v, %v", ts, err)
		}
		put("bob", "phone", "fcm", "t2") // the tablet's token moved to bob
		if ts, _ := st.PushTokens(ctx, app, "alice"); len(ts) != 1 || ts[0].Token != "t3" {
			t.Fatalf("alice after the move: %+v", ts)
		}
		if ok, err := st.DeletePushTokenValue(ctx, app, "fcm", "t2"); err != nil || !ok {
			t.Fatalf("delete by value: %v %v", ok, err)
		}
		if ok, _ := st.DeletePushTokenValue(ctx, app, "fcm", "t2"); ok {
			t.Fatal("deleted twice")
		}
		if err := st.DeletePushToken(ctx, app, "alice", "phone"); err != nil {
			t.Fatal(err)
		}
		if ts, _ := st.PushTokens(ctx, app, "alice"); len(ts) != 0 {
			t.Fatalf("tokens left: %+v", ts)
		}

		if ps, err := st.PushSettings(ctx, app, "alice"); err != nil || ps != (store.PushSettings{}) {
			t.Fatalf("default settings %+v %v", ps, err)
		}
		want := store.PushSettings{DNDEnabled: true, DNDStart: 22 * 60, DNDEnd: 7 * 60, DNDZone: "Europe/Paris"}
		if err := st.PutPushSettings(ctx, app, "alice", want); err != nil {
			t.Fatal(err)
		}
		if ps, err := st.PushSettings(ctx, app, "alice"); err != nil || ps != want {
			t.Fatalf("settings %+v %v", ps, err)
		}
		if n, err := st.UnreadTotal(ctx, app, "nobody"); err != nil || n != 0 {
			t.Fatalf("unread %d %v", n, err)
		}
	})
}

func TestEventLog(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		var evs []store.SessionEvent
		for i := range 7 {
			acct := "alice"
			if i%2 == 1 {
				acct = "bob"
			}
			evs = append(evs, store.SessionEvent{AppKey: app, ID: fmt.Sprintf("e%02d", i), Account: acct, Kind: "login",
				Time: int64(1000 + i/2), DeviceID: "d", DeviceType: "phone", ClientIP: "192.0.2.1", SDK: "go/1", SessionID: "s"})
		}
		if err := st.AppendEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		if err := st.AppendEvents(ctx, evs[:2]); err != nil { // redelivered: ignored
			t.Fatal(err)
		}
		// Paging through everything, 3 at a time.
		var got []string
		q := store.EventQuery{AppKey: app, Limit: 3}
		for {
			page, more, err := st.Events(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				got = append(got, e.ID)
			}
			if !more {
				break
			}
			last := page[len(page)-1]
			q.AfterTime, q.AfterID = last.Time, last.ID
		}
		if fmt.Sprint(got) != "[e00 e01 e02 e03 e04 e05 e06]" {
			t.Fatalf("paged %v", got)
		}
		page, more, err := st.Events(ctx, store.EventQuery{AppKey: app, Account: "bob", From: 1001, To: 1003, Limit: 10})
		if err != nil || more || len(page) != 2 || page[0].ID != "e03" || page[1].ID != "e05" || page[0].ClientIP != "192.0.2.1" {
			t.Fatalf("bob in [1001,1003): %+v %v %v", page, more, err)
		}
		if n, err := st.DeleteEventsBefore(ctx, 1002); err != nil || n != 4 {
			t.Fatalf("retention deleted %d, %v", n, err)
		}
		if page, _, _ := st.Events(ctx, store.EventQuery{AppKey: app, Limit: 10}); len(page) != 3 || page[0].ID != "e04" {
			t.Fatalf("left after retention: %+v", page)
		}
	})
}
