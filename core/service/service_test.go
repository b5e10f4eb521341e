package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/store"
)

func TestLogin(t *testing.T) {
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		anon := &client{e: e, notify: make(chan struct{}, 1)}
		yes := true
		if _, err := e.st.UpdateUser(context.Background(), appKey, "dave", store.UserUpdate{Disabled: &yes}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			req  imapi.LoginReq
			want imapi.Code
		}{
			{"good token", imapi.LoginReq{AppKey: appKey, Account: "alice", Token: e.tokens["alice"], DeviceType: "phone"}, imapi.OK},
			{"wrong token", imapi.LoginReq{AppKey: appKey, Account: "alice", Token: e.tokens["bob"], DeviceType: "phone"}, imapi.ErrUnauthorized},
			{"unknown appkey", imapi.LoginReq{AppKey: "nope", Account: "alice", Token: e.tokens["alice"]}, imapi.ErrUnauthorized},
			{"unknown account", imapi.LoginReq{AppKey: appKey, Account: "zed", Token: e.tokens["alice"]}, imapi.ErrUnauthorized},
			{"bad account syntax", imapi.LoginReq{AppKey: appKey, Account: "a.b", Token: "x"}, imapi.ErrUnauthorized},
			{"empty token", imapi.LoginReq{AppKey: appKey, Account: "alice"}, imapi.ErrUnauthorized},
			{"disabled user", imapi.LoginReq{AppKey: appKey, Account: "dave", Token: e.tokens["dave"]}, imapi.ErrUserDisabled},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var resp imapi.LoginResp
				if code := anon.call(imapi.OpLogin, &tc.req, &resp); code != tc.want {
					t.Fatalf("code %v, want %v", code, tc.want)
				}
				if tc.want == imapi.OK && (len(resp.SessionID) != 32 || resp.HeartbeatSec != 25 || resp.ServerTime == 0) {
					t.Fatalf("resp %+v", resp)
				}
			})
		}
		// Requests other than login need a session.
		if code := anon.call(imapi.OpConvList, nil, nil); code != imapi.ErrNotLoggedIn {
			t.Fatalf("conv list without session: %v", code)
		}
	})
}

func TestMultiDeviceKick(t *testing.T) {
	for _, tc := range []struct {
		policy   string
		wantKick string // KickDeviceType, "" for none
	}{
		{imapi.DevicesKickSameType, "phone"},
		{imapi.DevicesSingle, "*"},
		{imapi.DevicesAllowAll, ""},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			e := newEnv(t, store.DriverSQLite, withDevices(tc.policy))
			old := e.login("alice", "phone")
			fresh := e.login("alice", "phone")
			if tc.wantKick == "" {
				old.quiet(imapi.OpKick, 0)
				return
			}
			p := old.waitPushes(imapi.OpKick, 1)[0]
			if p.KickDeviceType != tc.wantKick || p.ExceptSession != fresh.sess.SessionID {
				t.Fatalf("kick push %+v", p)
			}
			k := decodePush[imapi.Kick](t, p)
			if k.Code != imapi.ErrKicked || k.By != "phone" {
				t.Fatalf("kick %+v", k)
			}
			// The new session is excepted.
			fresh.quiet(imapi.OpKick, 0)
		})
	}
}

func TestSendDurableDedupePush(t *testing.T) {
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		alice := e.login("alice", "phone")
		alicePC := e.login("alice", "pc")
		bob := e.login("bob", "phone")
		ack := alice.send("bob", "c-1", "hello", "bob")
		if ack.Seq != 1 || ack.ConvID != imapi.P2PConvID("alice", "bob") || ack.MsgID == "" || ack.Time == 0 {
			t.Fatalf("ack %+v", ack)
		}
		// Acked means durable: a store opened afresh on the same database has it.
		st2, err := store.Open(context.Background(), e.stCfg, store.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		ms, _, err := st2.Messages(context.Background(), appKey, ack.ConvID, 0, 10)
		_ = st2.Close()
		if err != nil || len(ms) != 1 || ms[0].MsgID != ack.MsgID {
			t.Fatalf("durable copy %+v %v", ms, err)
		}
		// Resending the same client_msg_id returns the original ack.
		again := alice.send("bob", "c-1", "hello")
		if again != ack {
			t.Fatalf("dup ack %+v, want %+v", again, ack)
		}
		ms, _, _ = e.st.Messages(context.Background(), appKey, ack.ConvID, 0, 10)
		if len(ms) != 1 {
			t.Fatalf("%d rows after a duplicate send", len(ms))
		}
		// The recipient and the sender's other device get one push each; the
		// sending session gets none.
		m := decodePush[imapi.Message](t, bob.waitPushes(imapi.OpPush, 1)[0])
		if m.MsgID != ack.MsgID || m.From != "alice" || m.FromDevice != "phone" || m.To != "bob" || m.Seq != 1 ||
			string(m.Body) != `{"text":"hello"}` || !slices.Equal(m.Mentions, []string{"bob"}) {
			t.Fatalf("pushed %+v", m)
		}
		alicePC.waitPushes(imapi.OpPush, 1)
		alice.quiet(imapi.OpPush, 0)
		bob.quiet(imapi.OpPush, 1)
	})
}

func TestSeqMonotonicUnderConcurrency(t *testing.T) {
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		alice, bob := e.offline("alice"), e.offline("bob")
		const n = 40
		acks := make([]imapi.SendAck, 2*n)
		var wg sync.WaitGroup
		for i := range 2 * n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				from, to := alice, "bob"
				if i%2 == 1 {
					from, to = bob, "alice"
				}
				acks[i] = from.send(to, fmt.Sprintf("m%d", i), "x")
			}()
		}
		wg.Wait()
		seqs := map[int64]bool{}
		for _, a := range acks {
			if seqs[a.Seq] {
				t.Fatalf("seq %d acked twice", a.Seq)
			}
			seqs[a.Seq] = true
		}
		for s := int64(1); s <= 2*n; s++ {
			if !seqs[s] {
				t.Fatalf("seq %d missing", s)
			}
		}
	})
}

func TestOfflineSyncAndHistory(t *testing.T) {
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		alice := e.login("alice", "phone")
		for i := range 7 {
			alice.send("bob", fmt.Sprint(i), fmt.Sprint("msg ", i))
		}
		bob := e.offline("bob") // was offline all along; now syncs
		conv := imapi.P2PConvID("alice", "bob")
		var got []imapi.Message
		after := int64(0)
		for {
			var page imapi.SyncResp
			if code := bob.call(imapi.OpSync, &imapi.SyncReq{ConvID: conv, AfterSeq: after, Limit: 3}, &page); code != imapi.OK {
				t.Fatalf("sync: %v", code)
			}
			got = append(got, page.Messages...)
			if !page.HasMore {
				break
			}
			after = page.Messages[len(page.Messages)-1].Seq
		}
		if len(got) != 7 {
			t.Fatalf("synced %d", len(got))
		}
		for i, m := range got {
			if m.Seq != int64(i+1) || m.ClientMsgID != fmt.Sprint(i) {
				t.Fatalf("message %d: %+v", i, m)
			}
		}
		var hist imapi.SyncResp
		if code := bob.call(imapi.OpHistory, &imapi.HistoryReq{ConvID: conv, Limit: 2}, &hist); code != imapi.OK || len(hist.Messages) != 2 || hist.Messages[0].Seq != 7 || !hist.HasMore {
			t.Fatalf("history %v %+v", code, hist)
		}
		carol := e.offline("carol")
		if code := carol.call(imapi.OpSync, &imapi.SyncReq{ConvID: conv}, nil); code != imapi.ErrForbidden {
			t.Fatalf("outsider sync: %v", code)
		}
		if code := carol.call(imapi.OpHistory, &imapi.HistoryReq{ConvID: "bogus"}, nil); code != imapi.ErrBadRequest {
			t.Fatalf("bad conv id: %v", code)
		}
	})
}

func TestReadReceiptsUnreadMentions(t *testing.T) {
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		alice := e.login("alice", "phone")
		bob := e.login("bob", "phone")
		alice.send("bob", "1", "a")
		alice.send("bob", "2", "@bob", "bob")
		last := alice.send("bob", "3", "c")
		var list imapi.ConvListResp
		if code := bob.call(imapi.OpConvList, nil, &list); code != imapi.OK || len(list.Conversations) != 1 {
			t.Fatalf("conv list %v %+v", code, list)
		}
		c := list.Conversations[0]
		if c.ConvID != last.ConvID || c.Peer != "alice" || c.Unread != 3 || c.Mentions != 1 || c.LastSeq != 3 || c.Last == nil || c.Last.MsgID != last.MsgID {
			t.Fatalf("bob's conversation %+v", c)
		}
		if code := bob.call(imapi.OpRead, &imapi.ReadReq{ConvID: last.ConvID, Seq: 2}, nil); code != imapi.OK {
			t.Fatalf("read: %v", code)
		}
		r := decodePush[imapi.Receipt](t, alice.waitPushes(imapi.OpReceipt, 1)[0])
		if r.ConvID != last.ConvID || r.Reader != "bob" || r.Seq != 2 {
			t.Fatalf("receipt %+v", r)
		}
		list = imapi.ConvListResp{} // omitempty fields must not keep old values
		_ = bob.call(imapi.OpConvList, nil, &list)
		if c := list.Conversations[0]; c.Unread != 1 || c.Mentions != 0 || c.ReadSeq != 2 {
			t.Fatalf("after read %+v", c)
		}
		carol := e.login("carol", "phone")
		if code := carol.call(imapi.OpRead, &imapi.ReadReq{ConvID: last.ConvID, Seq: 3}, nil); code != imapi.ErrForbidden {
			t.Fatalf("outsider read: %v", code)
		}
		bob.quiet(imapi.OpReceipt, 0)
	})
}

func TestRecall(t *testing.T) {
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		alice := e.login("alice", "phone")
		bob := e.login("bob", "phone")
		first := alice.send("bob", "1", "oops")
		second := alice.send("bob", "2", "later")
		if code := bob.call(imapi.OpRecall, &imapi.RecallReq{ConvID: first.ConvID, MsgID: first.MsgID}, nil); code != imapi.ErrForbidden {
			t.Fatalf("recall by the recipient: %v", code)
		}
		if code := alice.call(imapi.OpRecall, &imapi.RecallReq{ConvID: first.ConvID, MsgID: "nope"}, nil); code != imapi.ErrNotFound {
			t.Fatalf("recall unknown: %v", code)
		}
		if code := alice.call(imapi.OpRecall, &imapi.RecallReq{ConvID: first.ConvID, MsgID: first.MsgID}, nil); code != imapi.OK {
			t.Fatalf("recall: %v", code)
		}
		rc := decodePush[imapi.Recalled](t, bob.waitPushes(imapi.OpRecalled, 1)[0])
		if rc.MsgID != first.MsgID || rc.Seq != 1 || rc.By != "alice" {
			t.Fatalf("recalled push %+v", rc)
		}
		var page imapi.SyncResp
		_ = bob.call(imapi.OpSync, &imapi.SyncReq{ConvID: first.ConvID}, &page)
		if b := string(page.Messages[0].Body); !page.Messages[0].Recalled || (b != "" && b != "null") || page.Messages[1].Recalled {
			t.Fatalf("synced after recall %+v", page.Messages)
		}
		e.clock.advance(3 * time.Minute)
		if code := alice.call(imapi.OpRecall, &imapi.RecallReq{ConvID: second.ConvID, MsgID: second.MsgID}, nil); code != imapi.ErrRecallExpired {
			t.Fatalf("recall after the window: %v", code)
		}
	})
}

func TestGroups(t *testing.T) {
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		alice := e.login("alice", "phone")
		bob := e.login("bob", "phone")
		carol := e.login("carol", "phone")
		dave := e.login("dave", "phone")

		var g imapi.Group
		if code := alice.call(imapi.OpGroupCreate, &imapi.GroupCreateReq{Name: "team", Members: []string{"bob", "bob"}}, &g); code != imapi.OK {
			t.Fatalf("create: %v", code)
		}
		if g.Owner != "alice" || !slices.Equal(g.Members, []string{"alice", "bob"}) || g.GroupID == "" {
			t.Fatalf("group %+v", g)
		}
		ev := decodePush[imapi.GroupEvent](t, bob.waitPushes(imapi.OpGroupEvent, 1)[0])
		if ev.Kind != "created" || ev.GroupID != g.GroupID {
			t.Fatalf("event %+v", ev)
		}
		if code := alice.call(imapi.OpGroupCreate, &imapi.GroupCreateReq{Name: "x", Members: []string{"ghost"}}, nil); code != imapi.ErrNotFound {
			t.Fatalf("create with unknown member: %v", code)
		}

		sendGroup := func(c *client, cmid string, mentions ...string) (imapi.SendAck, imapi.Code) {
			var ack imapi.SendAck
			code := c.call(imapi.OpSend, &imapi.SendReq{ConvType: imapi.ConvGroup, To: g.GroupID, ClientMsgID: cmid, Body: json.RawMessage(`"hi"`), Mentions: mentions}, &ack)
			return ack, code
		}
		if _, code := sendGroup(carol, "c1"); code != imapi.ErrForbidden {
			t.Fatalf("non-member send: %v", code)
		}
		if code := carol.call(imapi.OpGroupInfo, &imapi.GroupRef{GroupID: g.GroupID}, nil); code != imapi.ErrForbidden {
			t.Fatalf("non-member info: %v", code)
		}
		if code := bob.call(imapi.OpGroupAdd, &imapi.GroupMembersReq{GroupID: g.GroupID, Members: []string{"carol"}}, nil); code != imapi.OK {
			t.Fatalf("member adds: %v", code)
		}
		carol.waitPushes(imapi.OpGroupEvent, 1)
		ack, code := sendGroup(alice, "a1", "carol")
		if code != imapi.OK || ack.Seq != 1 || ack.ConvID != imapi.GroupConvID(g.GroupID) {
			t.Fatalf("group send %v %+v", code, ack)
		}
		for _, c := range []*client{bob, carol} {
			m := decodePush[imapi.Message](t, c.waitPushes(imapi.OpPush, 1)[0])
			if m.ConvType != imapi.ConvGroup || m.To != g.GroupID || m.Seq != 1 {
				t.Fatalf("group push %+v", m)
			}
		}
		alice.quiet(imapi.OpPush, 0)
		dave.quiet(imapi.OpPush, 0)
		var list imapi.ConvListResp
		_ = carol.call(imapi.OpConvList, nil, &list)
		if len(list.Conversations) != 1 || list.Conversations[0].Peer != g.GroupID || list.Conversations[0].Mentions != 1 {
			t.Fatalf("carol's list %+v", list)
		}

		if code := bob.call(imapi.OpGroupRemove, &imapi.GroupMembersReq{GroupID: g.GroupID, Members: []string{"carol"}}, nil); code != imapi.ErrForbidden {
			t.Fatalf("non-owner remove: %v", code)
		}
		if code := alice.call(imapi.OpGroupAdd, &imapi.GroupMembersReq{GroupID: g.GroupID, Members: []string{"dave", "x1", "x2"}}, nil); code != imapi.ErrNotFound {
			t.Fatalf("add unknown: %v", code)
		}
		if code := alice.call(imapi.OpGroupRemove, &imapi.GroupMembersReq{GroupID: g.GroupID, Members: []string{"carol"}}, nil); code != imapi.OK {
			t.Fatalf("owner remove: %v", code)
		}
		evs := carol.waitPushes(imapi.OpGroupEvent, 2)
		if ev := decodePush[imapi.GroupEvent](t, evs[1]); ev.Kind != "removed" || !slices.Equal(ev.Members, []string{"carol"}) {
			t.Fatalf("removed event %+v", ev)
		}
		if _, code := sendGroup(carol, "c2"); code != imapi.ErrForbidden {
			t.Fatalf("removed member sends: %v", code)
		}
		if code := carol.call(imapi.OpSync, &imapi.SyncReq{ConvID: imapi.GroupConvID(g.GroupID)}, nil); code != imapi.ErrForbidden {
			t.Fatalf("removed member syncs: %v", code)
		}
		if code := alice.call(imapi.OpGroupLeave, &imapi.GroupRef{GroupID: g.GroupID}, nil); code != imapi.ErrForbidden {
			t.Fatalf("owner leaves: %v", code)
		}
		if code := bob.call(imapi.OpGroupLeave, &imapi.GroupRef{GroupID: g.GroupID}, nil); code != imapi.OK {
			t.Fatalf("leave: %v", code)
		}
		var gl imapi.GroupListResp
		if code := alice.call(imapi.OpGroupList, nil, &gl); code != imapi.OK || len(gl.Groups) != 1 || !slices.Equal(gl.Groups[0].Members, []string{"alice"}) {
			t.Fatalf("list %v %+v", code, gl)
		}
		if code := bob.call(imapi.OpGroupList, nil, &gl); code != imapi.OK || len(gl.Groups) != 0 {
			t.Fatalf("bob's list %v %+v", code, gl)
		}
		// Size limit (5 in this env).
		if code := alice.call(imapi.OpGroupCreate, &imapi.GroupCreateReq{Members: []string{"a1", "a2", "a3", "a4", "a5"}}, nil); code != imapi.ErrTooLarge {
			t.Fatalf("oversize group: %v", code)
		}
		if code := alice.call(imapi.OpGroupDismiss, &imapi.GroupRef{GroupID: g.GroupID}, nil); code != imapi.OK {
			t.Fatalf("dismiss: %v", code)
		}
		if code := alice.call(imapi.OpGroupInfo, &imapi.GroupRef{GroupID: g.GroupID}, nil); code != imapi.ErrNotFound {
			t.Fatalf("info after dismiss: %v", code)
		}
	})
}

func TestSendValidation(t *testing.T) {
	e := newEnv(t, store.DriverSQLite)
	alice := e.login("alice", "phone")
	big := make([]byte, 17<<10)
	for i := range big {
		big[i] = 'a'
	}
	bigBody, _ := json.Marshal(string(big))
	for _, tc := range []struct {
		name string
		req  any
		want imapi.Code
	}{
		{"not json", "garbage", imapi.ErrBadRequest},
		{"bad conv type", imapi.SendReq{ConvType: 9, To: "bob", ClientMsgID: "1", Body: json.RawMessage(`1`)}, imapi.ErrBadRequest},
		{"room", imapi.SendReq{ConvType: imapi.ConvRoom, To: "r", ClientMsgID: "1", Body: json.RawMessage(`1`)}, imapi.ErrBadRequest},
		{"bad recipient", imapi.SendReq{ConvType: 1, To: "bob.x", ClientMsgID: "1", Body: json.RawMessage(`1`)}, imapi.ErrBadRequest},
		{"no client msg id", imapi.SendReq{ConvType: 1, To: "bob", Body: json.RawMessage(`1`)}, imapi.ErrBadRequest},
		{"no body", imapi.SendReq{ConvType: 1, To: "bob", ClientMsgID: "1"}, imapi.ErrBadRequest},
		{"body too large", imapi.SendReq{ConvType: 1, To: "bob", ClientMsgID: "1", Body: bigBody}, imapi.ErrTooLarge},
		{"bad mention", imapi.SendReq{ConvType: 1, To: "bob", ClientMsgID: "1", Body: json.RawMessage(`1`), Mentions: []string{"*"}}, imapi.ErrBadRequest},
		{"unknown recipient", imapi.SendReq{ConvType: 1, To: "ghost", ClientMsgID: "1", Body: json.RawMessage(`1`)}, imapi.ErrNotFound},
		{"unknown group", imapi.SendReq{ConvType: 2, To: "gnope", ClientMsgID: "1", Body: json.RawMessage(`1`)}, imapi.ErrForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code := alice.call(imapi.OpSend, tc.req, nil); code != tc.want {
				t.Fatalf("code %v, want %v", code, tc.want)
			}
		})
	}
	// A request larger than max_request_bytes never reaches a handler.
	if code := alice.call(imapi.OpSend, map[string]string{"pad": string(make([]byte, 70<<10))}, nil); code != imapi.ErrTooLarge {
		t.Fatalf("oversize request: %v", code)
	}
}

func TestShutdownStopsServing(t *testing.T) {
	e := newEnv(t, store.DriverSQLite)
	alice := e.login("alice", "phone")
	alice.send("bob", "1", "x")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.svc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(&buswire.Request{Session: alice.sess})
	if _, err := e.nc.Request(buswire.ServiceSubject(buswire.DefaultCluster, imapi.OpConvList), data, 200*time.Millisecond); err == nil {
		t.Fatal("a request was answered after shutdown")
	}
}
