package service_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/store"
)

func withBlacklist(mode string) envOpt {
	return func(c *service.Config) { c.Apps[0].Blacklist = mode }
}

// The relationship ops on both backends: each change is one notice per
// account concerned, with gap-free per-account sequences, pushed to every
// session of the account (the acting one included) and synced by
// notice.sync; the blacklist refuses sends as the app's mode says.
func TestRelationsOnBothBackends(t *testing.T) {
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, withBlacklist(service.BlacklistBoth))
		alice, bob := e.login("alice", "phone"), e.login("bob", "phone")
		alicePC := e.login("alice", "pc")
		if code := alice.call(imapi.OpFriendRequest, &imapi.FriendRequestReq{Account: "bob", Message: "hi"}, nil); code != imapi.OK {
			t.Fatal(code)
		}
		if code := bob.call(imapi.OpFriendAccept, &imapi.FriendAnswerReq{Account: "alice", Alias: "A"}, nil); code != imapi.OK {
			t.Fatal(code)
		}
		name := "Alice"
		if code := alicePC.call(imapi.OpProfileUpdate, &imapi.ProfileUpdateReq{Name: &name}, nil); code != imapi.OK {
			t.Fatal(code)
		}
		// alice: request, added, profile — on both of her sessions.
		for _, c := range []*client{alice, alicePC} {
			ps := c.waitPushes(imapi.OpNotice, 3)
			for i, p := range ps {
				if n := decodePush[imapi.Notice](t, p); n.Seq != int64(i+1) {
					t.Fatalf("%s notice %d: %+v", c.sess.DeviceType, i, n)
				}
			}
		}
		bob.waitPushes(imapi.OpProfileChanged, 1)
		// A device that was offline syncs the stream.
		var sync imapi.NoticeSyncResp
		if code := e.offline("alice").call(imapi.OpNoticeSync, &imapi.NoticeSyncReq{AfterSeq: 1, Limit: 1}, &sync); code != imapi.OK {
			t.Fatal(code)
		}
		if len(sync.Notices) != 1 || !sync.HasMore || sync.Notices[0].Kind != imapi.NoticeFriendAdded || sync.Notices[0].Time == 0 {
			t.Fatalf("sync %+v", sync)
		}
		var fl imapi.FriendListResp
		bob.call(imapi.OpFriendList, nil, &fl)
		if len(fl.Friends) != 1 || fl.Friends[0].Alias != "A" {
			t.Fatalf("bob's friends %+v", fl)
		}

		// Both ways: neither can write once alice blocks bob.
		if code := alice.call(imapi.OpBlockAdd, &imapi.AccountRef{Account: "bob"}, nil); code != imapi.OK {
			t.Fatal(code)
		}
		for _, tc := range []struct {
			c  *client
			to string
		}{{bob, "alice"}, {alice, "bob"}} {
			if code, _ := tc.c.callMsg(imapi.OpSend, &imapi.SendReq{ConvType: imapi.ConvP2P, To: tc.to, ClientMsgID: "x-" + tc.to, Body: []byte(`{"text":"x"}`)}, nil); code != imapi.ErrBlocked {
				t.Fatalf("%s → %s: code %v, want %v", tc.c.sess.Account, tc.to, code, imapi.ErrBlocked)
			}
		}
		var bl imapi.AccountsResp
		alice.call(imapi.OpBlockList, nil, &bl)
		if !slices.Equal(bl.Accounts, []string{"bob"}) {
			t.Fatalf("blacklist %+v", bl)
		}
		// The blocked account hears nothing of it.
		bob.quiet(imapi.OpNotice, 2)

		// Mutes, and the limits' codes.
		if code := bob.call(imapi.OpMuteAdd, &imapi.MuteReq{ConvID: "g:team"}, nil); code != imapi.OK {
			t.Fatal(code)
		}
		var ml imapi.MuteListResp
		bob.call(imapi.OpMuteList, nil, &ml)
		if !slices.Equal(ml.ConvIDs, []string{"g:team"}) {
			t.Fatalf("mutes %+v", ml)
		}
		for _, tc := range []struct {
			op   imapi.Op
			req  any
			want imapi.Code
		}{
			{imapi.OpMuteAdd, &imapi.MuteReq{ConvID: "nonsense"}, imapi.ErrBadRequest},
			{imapi.OpMuteAdd, &imapi.MuteReq{ConvID: "p:carol:dave"}, imapi.ErrForbidden},
			{imapi.OpFriendAlias, &imapi.FriendAliasReq{Account: "carol", Alias: "c"}, imapi.ErrNotFriends},
			{imapi.OpFriendReject, &imapi.FriendAnswerReq{Account: "carol"}, imapi.ErrNotFound},
			{imapi.OpProfileGet, &imapi.ProfilesReq{}, imapi.ErrBadRequest},
			{imapi.OpNoticeSync, &imapi.NoticeSyncReq{AfterSeq: -1}, imapi.ErrBadRequest},
		} {
			if code := bob.call(tc.op, tc.req, nil); code != tc.want {
				t.Errorf("%s %+v: code %v, want %v", tc.op, tc.req, code, tc.want)
			}
		}
	})
}

// Group roles on both backends.
func TestGroupRolesOnBothBackends(t *testing.T) {
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		alice, bob, carol := e.login("alice", "phone"), e.login("bob", "phone"), e.login("carol", "phone")
		var g imapi.Group
		if code := alice.call(imapi.OpGroupCreate, &imapi.GroupCreateReq{Name: "team", Members: []string{"bob", "carol", "dave"}}, &g); code != imapi.OK {
			t.Fatal(code)
		}
		name := "renamed"
		if code := bob.call(imapi.OpGroupUpdate, &imapi.GroupUpdateReq{GroupID: g.GroupID, Name: &name}, nil); code != imapi.ErrForbidden {
			t.Fatalf("member rename: %v", code)
		}
		if code := alice.call(imapi.OpGroupRole, &imapi.GroupRoleReq{GroupID: g.GroupID, Account: "bob", Role: imapi.GroupRoleManager}, nil); code != imapi.OK {
			t.Fatal(code)
		}
		if code := bob.call(imapi.OpGroupUpdate, &imapi.GroupUpdateReq{GroupID: g.GroupID, Name: &name}, nil); code != imapi.OK {
			t.Fatalf("manager rename: %v", code)
		}
		ev := decodePush[imapi.GroupEvent](t, carol.waitPushes(imapi.OpGroupEvent, 3)[2])
		if ev.Kind != "updated" || ev.Group == nil || ev.Group.Name != name {
			t.Fatalf("event %+v", ev)
		}
		if code := bob.call(imapi.OpGroupRemove, &imapi.GroupMembersReq{GroupID: g.GroupID, Members: []string{"dave"}}, nil); code != imapi.OK {
			t.Fatalf("manager removes a member: %v", code)
		}
		if code := carol.call(imapi.OpGroupRemove, &imapi.GroupMembersReq{GroupID: g.GroupID, Members: []string{"bob"}}, nil); code != imapi.ErrForbidden {
			t.Fatalf("member removes: %v", code)
		}
		if code := alice.call(imapi.OpGroupTransfer, &imapi.GroupTransferReq{GroupID: g.GroupID, Account: "carol"}, nil); code != imapi.OK {
			t.Fatal(code)
		}
		var info imapi.Group
		bob.call(imapi.OpGroupInfo, &imapi.GroupRef{GroupID: g.GroupID}, &info)
		if info.Owner != "carol" || !slices.Equal(info.Managers, []string{"bob"}) || info.Name != name {
			t.Fatalf("info %+v", info)
		}
		if code := alice.call(imapi.OpGroupDismiss, &imapi.GroupRef{GroupID: g.GroupID}, nil); code != imapi.ErrForbidden {
			t.Fatalf("old owner dismisses: %v", code)
		}
	})
}

// The group invite mode: "all" (the default) lets any member add,
// "managers" only the owner and managers (ErrInviteForbidden otherwise);
// only they change the mode, even where anyone_updates lets members
// rename; bad modes are refused.
func TestGroupInviteModeOnBothBackends(t *testing.T) {
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		alice, bob, carol := e.login("alice", "phone"), e.login("bob", "phone"), e.login("carol", "phone")
		var open, closed imapi.Group
		if code := alice.call(imapi.OpGroupCreate, &imapi.GroupCreateReq{Name: "open", Members: []string{"bob"}}, &open); code != imapi.OK || open.InviteMode != imapi.GroupInviteAll {
			t.Fatalf("create: %v %+v", code, open)
		}
		if code := bob.call(imapi.OpGroupAdd, &imapi.GroupMembersReq{GroupID: open.GroupID, Members: []string{"carol"}}, nil); code != imapi.OK {
			t.Fatalf("member adds in an open group: %v", code)
		}
		if code := alice.call(imapi.OpGroupCreate, &imapi.GroupCreateReq{Name: "x", InviteMode: "friends"}, nil); code != imapi.ErrBadRequest {
			t.Fatalf("bad mode: %v", code)
		}
		if code := alice.call(imapi.OpGroupCreate, &imapi.GroupCreateReq{Name: "closed", Members: []string{"bob", "carol"}, InviteMode: imapi.GroupInviteManagers}, &closed); code != imapi.OK {
			t.Fatal(code)
		}
		add := func(who *client, account string) imapi.Code {
			return who.call(imapi.OpGroupAdd, &imapi.GroupMembersReq{GroupID: closed.GroupID, Members: []string{account}}, nil)
		}
		if code := add(bob, "dave"); code != imapi.ErrInviteForbidden {
			t.Fatalf("member adds in a managers-only group: %v", code)
		}
		var info imapi.Group
		alice.call(imapi.OpGroupInfo, &imapi.GroupRef{GroupID: closed.GroupID}, &info)
		if len(info.Members) != 3 || info.InviteMode != imapi.GroupInviteManagers {
			t.Fatalf("after a refused add: %+v", info)
		}
		// Members may rename (anyone_updates) but not open the group.
		yes, all := true, imapi.GroupInviteAll
		if code := alice.call(imapi.OpGroupUpdate, &imapi.GroupUpdateReq{GroupID: closed.GroupID, AnyoneUpdates: &yes}, nil); code != imapi.OK {
			t.Fatal(code)
		}
		if code := carol.call(imapi.OpGroupUpdate, &imapi.GroupUpdateReq{GroupID: closed.GroupID, InviteMode: &all}, nil); code != imapi.ErrForbidden {
			t.Fatalf("member changes the invite mode: %v", code)
		}
		if code := alice.call(imapi.OpGroupRole, &imapi.GroupRoleReq{GroupID: closed.GroupID, Account: "bob", Role: imapi.GroupRoleManager}, nil); code != imapi.OK {
			t.Fatal(code)
		}
		if code := add(bob, "dave"); code != imapi.OK {
			t.Fatalf("manager adds: %v", code)
		}
		bad := "everyone"
		if code := bob.call(imapi.OpGroupUpdate, &imapi.GroupUpdateReq{GroupID: closed.GroupID, InviteMode: &bad}, nil); code != imapi.ErrBadRequest {
			t.Fatalf("bad mode update: %v", code)
		}
		var upd imapi.Group
		if code := bob.call(imapi.OpGroupUpdate, &imapi.GroupUpdateReq{GroupID: closed.GroupID, InviteMode: &all}, &upd); code != imapi.OK || upd.InviteMode != imapi.GroupInviteAll {
			t.Fatalf("manager opens the group: %v %+v", code, upd)
		}
	})
}

// notice.sync tells a caller that fell behind the kept stream (more than
// store.NoticeKeep notices since its position) or is ahead of its newest
// notice (the server's data was wiped or restored) to reload: reset, with
// the page starting at the oldest kept notice; one within the kept window
// gets no reset.
func TestNoticeSyncResetOnBothBackends(t *testing.T) {
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		const n = store.NoticeKeep + 100
		notes := make([]store.Notice, n)
		for i := range notes {
			b, _ := json.Marshal(imapi.Notice{Kind: imapi.NoticeSystem, Body: json.RawMessage(`{}`)})
			notes[i] = store.Notice{Account: "alice", Body: b}
		}
		if _, err := e.st.AddNotices(context.Background(), appKey, notes); err != nil {
			t.Fatal(err)
		}
		alice := e.offline("alice")
		oldest := int64(0)
		for _, tc := range []struct {
			after int64
			reset bool
		}{{0, true}, {50, true}, {n - store.NoticeKeep, false}, {n - 10, false}, {n, false}, {n + 1, true}, {n + 5000, true}} {
			var sync imapi.NoticeSyncResp
			if code := alice.call(imapi.OpNoticeSync, &imapi.NoticeSyncReq{AfterSeq: tc.after, Limit: 10}, &sync); code != imapi.OK {
				t.Fatal(code)
			}
			if sync.Reset != tc.reset {
				t.Fatalf("after %d: reset %v, want %v", tc.after, sync.Reset, tc.reset)
			}
			if tc.after < n && (len(sync.Notices) == 0 || tc.reset == (sync.Notices[0].Seq == tc.after+1)) {
				t.Fatalf("after %d: first notice %+v", tc.after, sync.Notices)
			}
			if tc.after == 0 {
				oldest = sync.Notices[0].Seq
			}
			// Ahead of the stream: the same page as a fresh start.
			if tc.after > n && (len(sync.Notices) != 10 || sync.Notices[0].Seq != oldest || !sync.HasMore) {
				t.Fatalf("after %d: %d notices from %+v, more %v; want 10 from %d", tc.after, len(sync.Notices), sync.Notices, sync.HasMore, oldest)
			}
		}
		// A fresh stream (nothing trimmed) never resets.
		var sync imapi.NoticeSyncResp
		e.offline("bob").call(imapi.OpNoticeSync, &imapi.NoticeSyncReq{}, &sync)
		if sync.Reset {
			t.Fatal("reset on an untrimmed stream")
		}
		// A position on a stream that has no notice at all (wiped): reset,
		// nothing to replay.
		sync = imapi.NoticeSyncResp{}
		e.offline("bob").call(imapi.OpNoticeSync, &imapi.NoticeSyncReq{AfterSeq: 7}, &sync)
		if !sync.Reset || len(sync.Notices) != 0 {
			t.Fatalf("after 7 on an empty stream: %+v", sync)
		}
	})
}
