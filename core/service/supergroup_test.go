package service_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service"
)

func withSuper(maxMembers, maxBatch int) envOpt {
	return func(c *service.Config) { c.Super.MaxMembers, c.Super.MaxBatch = maxMembers, maxBatch }
}

// TestSuperGroupRules: who may do what, the batch and member limits, the
// one push per send on the group's subject, unread by read position, and
// the login answer listing the account's super-groups. (JetStream side work
// and gateways: core/e2e TestSuperGroup100k, TestSuperGroupWorkerCrash.)
func TestSuperGroupRules(t *testing.T) {
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, withSuper(3, 2))
		alice, bob, carol := e.login("alice", "phone"), e.login("bob", "phone"), e.login("carol", "phone")

		var g imapi.SuperGroup
		if code := alice.call(imapi.OpSuperCreate, &imapi.SuperCreateReq{Name: "big", Members: []string{"bob", "carol"}}, &g); code != imapi.ErrTooLarge {
			t.Fatalf("create with owner + 2 > batch of 2: %v", code)
		}
		if code := alice.call(imapi.OpSuperCreate, &imapi.SuperCreateReq{Name: "big", Members: []string{"bob"}}, &g); code != imapi.OK {
			t.Fatalf("create: %v", code)
		}
		if g.Count != 2 || g.Owner != "alice" || g.MaxMembers != 3 {
			t.Fatalf("group: %+v", g)
		}
		if ev := decodePush[imapi.SuperEvent](t, bob.waitPushes(imapi.OpSuperEvent, 1)[0]); ev.Kind != imapi.SuperJoined || ev.GroupID != g.GroupID {
			t.Fatalf("bob's event: %+v", ev)
		}
		if code := bob.call(imapi.OpSuperAdd, &imapi.SuperMembersReq{GroupID: g.GroupID, Members: []string{"carol"}}, nil); code != imapi.ErrForbidden {
			t.Fatalf("add by a member: %v", code)
		}
		if code := carol.call(imapi.OpSuperInfo, &imapi.GroupRef{GroupID: g.GroupID}, nil); code != imapi.ErrForbidden {
			t.Fatalf("info by a non-member: %v", code)
		}
		if code := alice.call(imapi.OpSuperAdd, &imapi.SuperMembersReq{GroupID: g.GroupID, Members: []string{"carol", "dave"}}, nil); code != imapi.ErrGroupFull {
			t.Fatalf("4 members with a limit of 3: %v", code)
		}
		var ch imapi.SuperMembersResp
		if code := alice.call(imapi.OpSuperAdd, &imapi.SuperMembersReq{GroupID: g.GroupID, Members: []string{"carol", "bob"}}, &ch); code != imapi.OK || !slices.Equal(ch.Changed, []string{"carol"}) || ch.Count != 3 {
			t.Fatalf("add: %v %+v", code, ch)
		}
		var page imapi.SuperPage
		if code := carol.call(imapi.OpSuperMembers, &imapi.SuperPageReq{GroupID: g.GroupID, Limit: 2}, &page); code != imapi.OK ||
			!slices.Equal(page.Members, []string{"alice", "bob"}) || page.Next != "bob" {
			t.Fatalf("page 1: %v %+v", code, page)
		}
		var page2 imapi.SuperPage
		if code := carol.call(imapi.OpSuperMembers, &imapi.SuperPageReq{GroupID: g.GroupID, After: page.Next}, &page2); code != imapi.OK ||
			!slices.Equal(page2.Members, []string{"carol"}) || page2.Next != "" {
			t.Fatalf("page 2: %v %+v", code, page2)
		}

		// One push per send, on the group's subject, not on members' subjects.
		groupPushes := make(chan *nats.Msg, 16)
		sub, err := e.nc.ChanSubscribe(buswire.SuperSubject(appKey, g.GroupID), groupPushes)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		_ = e.nc.Flush()
		body, _ := json.Marshal(map[string]string{"text": "hi all"})
		var ack imapi.SendAck
		if code := bob.call(imapi.OpSend, &imapi.SendReq{ConvType: imapi.ConvSuper, To: g.GroupID, ClientMsgID: "s1", Body: body}, &ack); code != imapi.OK {
			t.Fatalf("send: %v", code)
		}
		if ack.ConvID != imapi.SuperConvID(g.GroupID) || ack.Seq != 1 {
			t.Fatalf("ack: %+v", ack)
		}
		select {
		case m := <-groupPushes:
			var p buswire.Push
			_ = json.Unmarshal(m.Data, &p)
			if p.Op != imapi.OpPush || p.ExceptSession != bob.sess.SessionID {
				t.Fatalf("group push: %+v", p)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no push on the group subject")
		}
		carol.quiet(imapi.OpPush, 0)
		// A recall is one push on the group's subject too.
		if code := bob.call(imapi.OpRecall, &imapi.RecallReq{ConvID: ack.ConvID, MsgID: ack.MsgID}, nil); code != imapi.OK {
			t.Fatalf("recall: %v", code)
		}
		select {
		case m := <-groupPushes:
			var p buswire.Push
			_ = json.Unmarshal(m.Data, &p)
			if r := decodePush[imapi.Recalled](t, p); p.Op != imapi.OpRecalled || r.MsgID != ack.MsgID || r.Seq != 1 {
				t.Fatalf("recall push: %+v %+v", p, r)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no recall push on the group subject")
		}
		if code := bob.call(imapi.OpSend, &imapi.SendReq{ConvType: imapi.ConvSuper, To: g.GroupID, ClientMsgID: "s2", Body: body, Mentions: []string{imapi.MentionAll}}, nil); code != imapi.ErrForbidden {
			t.Fatalf("@all by a member: %v", code)
		}
		if code := bob.call(imapi.OpSend, &imapi.SendReq{ConvType: imapi.ConvGroup, To: g.GroupID, ClientMsgID: "s3", Body: body}, nil); code != imapi.ErrForbidden {
			t.Fatalf("a super-group is not an ordinary group: %v", code)
		}

		var cl imapi.ConvListResp
		if code := carol.call(imapi.OpConvList, nil, &cl); code != imapi.OK || len(cl.Conversations) != 1 {
			t.Fatalf("carol's conversations: %v %+v", code, cl)
		}
		if c := cl.Conversations[0]; c.ConvType != imapi.ConvSuper || c.Unread != 1 || c.LastSeq != 1 || c.Last == nil || c.Last.From != "bob" {
			t.Fatalf("carol's conversation: %+v", c)
		}
		if code := carol.call(imapi.OpRead, &imapi.ReadReq{ConvID: ack.ConvID, Seq: 1}, nil); code != imapi.OK {
			t.Fatalf("read: %v", code)
		}
		if carol.call(imapi.OpConvList, nil, &cl); cl.Conversations[0].Unread != 0 {
			t.Fatalf("after read: %+v", cl.Conversations[0])
		}
		var sr imapi.SyncResp
		if code := carol.call(imapi.OpSync, &imapi.SyncReq{ConvID: ack.ConvID}, &sr); code != imapi.OK || len(sr.Messages) != 1 {
			t.Fatalf("sync: %v %+v", code, sr)
		}

		// A new login lists the account's super-groups for its gateway.
		var lr buswire.LoginReply
		if code := carol.call(imapi.OpLogin, &imapi.LoginReq{AppKey: appKey, Account: "carol", Token: e.tokens["carol"], DeviceType: "pc"}, &lr); code != imapi.OK ||
			!slices.Equal(lr.SuperGroups, []string{g.GroupID}) {
			t.Fatalf("login: %v %+v", code, lr)
		}

		if code := alice.call(imapi.OpSuperLeave, &imapi.GroupRef{GroupID: g.GroupID}, nil); code != imapi.ErrForbidden {
			t.Fatalf("owner leaves: %v", code)
		}
		if code := carol.call(imapi.OpSuperLeave, &imapi.GroupRef{GroupID: g.GroupID}, nil); code != imapi.OK {
			t.Fatalf("leave: %v", code)
		}
		if code := carol.call(imapi.OpSync, &imapi.SyncReq{ConvID: ack.ConvID}, nil); code != imapi.ErrForbidden {
			t.Fatalf("sync after leaving: %v", code)
		}
		if code := bob.call(imapi.OpSuperDismiss, &imapi.GroupRef{GroupID: g.GroupID}, nil); code != imapi.ErrForbidden {
			t.Fatalf("dismiss by a member: %v", code)
		}
		if code := alice.call(imapi.OpSuperDismiss, &imapi.GroupRef{GroupID: g.GroupID}, nil); code != imapi.OK {
			t.Fatalf("dismiss: %v", code)
		}
		var list imapi.SuperListResp
		if code := bob.call(imapi.OpSuperList, nil, &list); code != imapi.OK || len(list.Groups) != 0 {
			t.Fatalf("list after dismiss: %v %+v", code, list)
		}
	})
}
