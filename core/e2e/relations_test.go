package e2e

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/service"
)

// hasNotice waits until cl has delivered a notice of kind (from, to).
func (c *client) hasNotice(kind, from, to string) {
	c.t.Helper()
	c.waitUntil(kind+" notice for "+c.Client.SessionID(), 10*time.Second, func(c *client) bool {
		return slices.ContainsFunc(c.notices, func(n imapi.Notice) bool { return n.Kind == kind && n.From == from && n.To == to })
	})
}

// noticeSeqs checks that cl's notices came once each, in stream order.
func (c *client) noticeSeqs(t *testing.T) []string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var kinds []string
	for i, n := range c.notices {
		if i > 0 && n.Seq <= c.notices[i-1].Seq {
			t.Fatalf("notices out of order or repeated: %+v", c.notices)
		}
		kinds = append(kinds, n.Kind)
	}
	return kinds
}

func wantCode(t *testing.T, what string, err error, code imapi.Code) {
	t.Helper()
	var ie *imapi.Error
	if !errors.As(err, &ie) || ie.Code != code {
		t.Fatalf("%s: %v, want code %d", what, err, code)
	}
}

// The friend flow with two devices on each side: every device of both
// users hears of every change; a device that was offline catches up by
// sync after it reconnects.
func TestFriendFlow(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	tok := c.users("alice", "bob", "carol")
	alicePhone := c.client(t, "alice", tok["alice"], "phone")
	alicePC := c.client(t, "alice", tok["alice"], "pc")
	bobPhone := c.client(t, "bob", tok["bob"], "phone")
	bobPC := c.client(t, "bob", tok["bob"], "pc")
	all := []*client{alicePhone, alicePC, bobPhone, bobPC}
	for _, cl := range all {
		cl.connected(t)
	}
	ctx := ctx10(t)

	accepted, err := alicePhone.RequestFriend(ctx, "bob", "hi, it's alice")
	if err != nil || accepted {
		t.Fatalf("request: %v %v", accepted, err)
	}
	for _, cl := range all {
		cl.hasNotice(imapi.NoticeFriendRequest, "alice", "bob")
	}
	reqs, err := bobPhone.FriendRequests(ctx)
	if err != nil || len(reqs) != 1 || reqs[0].From != "alice" || reqs[0].Message != "hi, it's alice" {
		t.Fatalf("bob's requests: %+v %v", reqs, err)
	}

	// bob's PC goes offline; bob accepts on his phone.
	pcSeq := bobPC.LastNoticeSeq()
	if pcSeq != 1 {
		t.Fatalf("bob's pc last notice seq %d, want 1", pcSeq)
	}
	_ = bobPC.Close()
	if err := bobPhone.AcceptFriend(ctx, "alice", "Ali"); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client{alicePhone, alicePC, bobPhone} {
		cl.hasNotice(imapi.NoticeFriendAdded, "bob", "alice")
	}
	// Back online (a new run that saved its notice seq): the accept comes by sync.
	bobPC2 := c.clientWith(t, "bob", tok["bob"], "pc", func(cfg *sdk.Config) { cfg.LastNoticeSeq = pcSeq })
	bobPC2.hasNotice(imapi.NoticeFriendAdded, "bob", "alice")
	if k := bobPC2.noticeSeqs(t); !slices.Equal(k, []string{imapi.NoticeFriendAdded}) {
		t.Fatalf("reconnected pc got %v", k)
	}
	// A fresh install gets the kept stream.
	bobPad := c.client(t, "bob", tok["bob"], "pad")
	bobPad.waitUntil("two notices", 10*time.Second, func(c *client) bool { return len(c.notices) >= 2 })

	fs, err := bobPhone.Friends(ctx)
	if err != nil || len(fs) != 1 || fs[0].Account != "alice" || fs[0].Alias != "Ali" {
		t.Fatalf("bob's friends %+v %v", fs, err)
	}
	if _, err := alicePhone.RequestFriend(ctx, "bob", ""); err == nil {
		t.Fatal("request between friends accepted")
	}

	// Aliases are private: only alice's devices hear of hers.
	if err := alicePC.SetFriendAlias(ctx, "bob", "Bobby"); err != nil {
		t.Fatal(err)
	}
	alicePhone.hasNotice(imapi.NoticeFriendAlias, "alice", "bob")
	fs, _ = alicePhone.Friends(ctx)
	if len(fs) != 1 || fs[0].Alias != "Bobby" {
		t.Fatalf("alice's friends %+v", fs)
	}
	if err := alicePC.SetFriendAlias(ctx, "carol", "C"); err == nil {
		t.Fatal("alias of a non-friend accepted")
	} else {
		wantCode(t, "alias of a non-friend", err, imapi.ErrNotFriends)
	}

	// Delete: both sides, every device.
	if err := alicePhone.DeleteFriend(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client{alicePhone, alicePC, bobPhone, bobPC2} {
		cl.hasNotice(imapi.NoticeFriendDeleted, "alice", "bob")
	}
	wantCode(t, "second delete", alicePhone.DeleteFriend(ctx, "bob"), imapi.ErrNotFriends)

	// Reject: the requester's devices hear of it.
	if _, err := alicePhone.RequestFriend(ctx, "bob", "again?"); err != nil {
		t.Fatal(err)
	}
	if err := bobPC2.RejectFriend(ctx, "alice", "no"); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client{alicePhone, alicePC, bobPhone} {
		cl.hasNotice(imapi.NoticeFriendRejected, "bob", "alice")
	}
	wantCode(t, "accept a rejected request", bobPhone.AcceptFriend(ctx, "alice", ""), imapi.ErrNotFound)
	wantCode(t, "request to an unknown user", func() error { _, err := alicePhone.RequestFriend(ctx, "nobody", ""); return err }(), imapi.ErrNotFound)
	wantCode(t, "request to oneself", func() error { _, err := alicePhone.RequestFriend(ctx, "alice", ""); return err }(), imapi.ErrBadRequest)
	wantCode(t, "long message", func() error {
		_, err := alicePhone.RequestFriend(ctx, "carol", strings.Repeat("x", imapi.MaxFriendMessage+1))
		return err
	}(), imapi.ErrBadRequest)
	for _, cl := range []*client{alicePhone, alicePC, bobPhone, bobPC2} {
		cl.noticeSeqs(t)
	}
}

func TestBlacklist(t *testing.T) {
	for _, mode := range []string{service.BlacklistInbound, service.BlacklistBoth} {
		t.Run(mode, func(t *testing.T) {
			c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{blacklist: mode})
			tok := c.users("alice", "bob", "carol")
			alice := c.client(t, "alice", tok["alice"], "phone")
			bob := c.client(t, "bob", tok["bob"], "phone")
			bobPC := c.client(t, "bob", tok["bob"], "pc")
			ctx := ctx10(t)
			if err := bob.Block(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			bobPC.hasNotice(imapi.NoticeBlockAdded, "bob", "alice")
			if l, err := bobPC.Blacklist(ctx); err != nil || !slices.Equal(l, []string{"alice"}) {
				t.Fatalf("blacklist %v %v", l, err)
			}
			_, err := alice.SendText(ctx, imapi.ConvP2P, "bob", "hello?")
			wantCode(t, "blocked send", err, imapi.ErrBlocked)
			// A friend request to the blocker looks sent (as serious IM
			// apps do, so the block is not revealed) and never reaches it.
			if accepted, err := alice.RequestFriend(ctx, "bob", "hi"); err != nil || accepted {
				t.Fatalf("friend request to a blocker: accepted %v, %v", accepted, err)
			}
			alice.hasNotice(imapi.NoticeFriendRequest, "alice", "bob")
			if rs, err := alice.FriendRequests(ctx); err != nil || len(rs) != 1 || rs[0].To != "bob" {
				t.Fatalf("the requester's requests %+v %v", rs, err)
			}
			if rs, err := bob.FriendRequests(ctx); err != nil || len(rs) != 0 {
				t.Fatalf("the blocker sees %+v %v", rs, err)
			}
			_, err = bob.SendText(ctx, imapi.ConvP2P, "alice", "from the blocker")
			if mode == service.BlacklistBoth {
				wantCode(t, "blocker's send (both)", err, imapi.ErrBlocked)
			} else if err != nil {
				t.Fatalf("blocker's send (inbound): %v", err)
			}
			// Others are not affected.
			if _, err := c.client(t, "carol", tok["carol"], "phone").SendText(ctx, imapi.ConvP2P, "bob", "hi bob"); err != nil {
				t.Fatal(err)
			}
			bob.waitUntil("carol's message", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 1 })
			if m := bob.messages(); len(m) != 1 || m[0].From != "carol" {
				t.Fatalf("bob got %+v", m)
			}
			if err := bobPC.Unblock(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			bob.hasNotice(imapi.NoticeBlockRemoved, "bob", "alice")
			for _, cl := range []*client{bob, bobPC} {
				cl.mu.Lock()
				for _, n := range cl.notices {
					if n.Kind == imapi.NoticeFriendRequest {
						t.Errorf("the blocker was told of the request: %+v", n)
					}
				}
				cl.mu.Unlock()
			}
			if _, err := alice.SendText(ctx, imapi.ConvP2P, "bob", "now?"); err != nil {
				t.Fatalf("after unblock: %v", err)
			}
			bob.waitUntil("alice's message", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 2 })
			wantCode(t, "block an unknown user", bob.Block(ctx, "nobody"), imapi.ErrNotFound)
		})
	}
}

func TestProfilesAndMutes(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	tok := c.users("alice", "bob", "carol")
	alicePhone := c.client(t, "alice", tok["alice"], "phone")
	alicePC := c.client(t, "alice", tok["alice"], "pc")
	bob := c.client(t, "bob", tok["bob"], "phone")
	carol := c.client(t, "carol", tok["carol"], "phone")
	ctx := ctx10(t)
	if _, err := alicePhone.RequestFriend(ctx, "bob", ""); err != nil {
		t.Fatal(err)
	}
	if err := bob.AcceptFriend(ctx, "alice", ""); err != nil {
		t.Fatal(err)
	}
	carol.connected(t)

	name, avatar := "Alice", "https://img.example/alice.png"
	p, err := alicePhone.UpdateProfile(ctx, imapi.ProfileUpdateReq{Name: &name, Avatar: &avatar, Ext: json.RawMessage(`{"city": "Oslo"}`)})
	if err != nil || p.Name != name || string(p.Ext) != `{"city":"Oslo"}` {
		t.Fatalf("update: %+v %v", p, err)
	}
	// Every device of alice: a notice; her friend bob: a push; carol: nothing.
	alicePC.waitUntil("profile notice", 10*time.Second, func(c *client) bool {
		return slices.ContainsFunc(c.notices, func(n imapi.Notice) bool {
			return n.Kind == imapi.NoticeProfile && n.Profile != nil && n.Profile.Name == name
		})
	})
	alicePhone.waitUntil("profile notice", 10*time.Second, func(c *client) bool {
		return slices.ContainsFunc(c.notices, func(n imapi.Notice) bool { return n.Kind == imapi.NoticeProfile })
	})
	bob.waitUntil("friend's profile", 10*time.Second, func(c *client) bool {
		return len(c.profiles) == 1 && c.profiles[0].Account == "alice" && c.profiles[0].Avatar == avatar
	})
	ps, err := carol.Profiles(ctx, "alice", "bob", "nobody")
	if err != nil || len(ps) != 2 || ps[0].Name != name || ps[1].Account != "bob" {
		t.Fatalf("profiles %+v %v", ps, err)
	}
	time.Sleep(100 * time.Millisecond)
	carol.mu.Lock()
	if len(carol.profiles) != 0 {
		t.Fatalf("carol (not a friend) got %+v", carol.profiles)
	}
	carol.mu.Unlock()

	// Limits.
	big := json.RawMessage(`{"x":"` + strings.Repeat("a", imapi.MaxProfileExt) + `"}`)
	_, err = alicePhone.UpdateProfile(ctx, imapi.ProfileUpdateReq{Ext: big})
	wantCode(t, "ext too large", err, imapi.ErrTooLarge)
	_, err = alicePhone.UpdateProfile(ctx, imapi.ProfileUpdateReq{Ext: json.RawMessage(`[1,2]`)})
	wantCode(t, "ext not an object", err, imapi.ErrBadRequest)
	bad := "ftp://x/y.png"
	_, err = alicePhone.UpdateProfile(ctx, imapi.ProfileUpdateReq{Avatar: &bad})
	wantCode(t, "avatar not http", err, imapi.ErrBadRequest)
	long := strings.Repeat("n", imapi.MaxProfileName+1)
	_, err = alicePhone.UpdateProfile(ctx, imapi.ProfileUpdateReq{Name: &long})
	wantCode(t, "long name", err, imapi.ErrTooLarge)
	_, err = carol.Profiles(ctx, make([]string, imapi.MaxProfilesAsked+1)...)
	wantCode(t, "too many profiles", err, imapi.ErrTooLarge)

	// Mutes: still delivered, reported muted for offline push.
	if err := bob.Mute(ctx, imapi.MuteReq{Account: "alice"}); err != nil {
		t.Fatal(err)
	}
	conv := imapi.P2PConvID("alice", "bob")
	bob.waitUntil("mute notice", 10*time.Second, func(c *client) bool {
		return slices.ContainsFunc(c.notices, func(n imapi.Notice) bool { return n.Kind == imapi.NoticeMuteAdded && n.ConvID == conv })
	})
	if l, err := bob.Mutes(ctx); err != nil || !slices.Equal(l, []string{conv}) {
		t.Fatalf("mutes %v %v", l, err)
	}
	if !c.svc.Muted(ctx, appKey, "bob", conv) || c.svc.Muted(ctx, appKey, "alice", conv) {
		t.Fatal("Muted: wrong answer")
	}
	if m := c.svc.MutedAmong(ctx, appKey, conv, []string{"alice", "bob", "carol"}); len(m) != 1 || !m["bob"] {
		t.Fatalf("MutedAmong: %v", m)
	}
	if _, err := alicePhone.SendText(ctx, imapi.ConvP2P, "bob", "muted but delivered"); err != nil {
		t.Fatal(err)
	}
	bob.waitUntil("muted message", 10*time.Second, func(c *client) bool { return len(c.msgs) >= 1 })
	var cl imapi.ConvListResp
	if err := bob.Request(ctx, imapi.OpConvList, nil, &cl); err != nil || len(cl.Conversations) != 1 || !cl.Conversations[0].Muted {
		t.Fatalf("bob's conversation list %+v %v", cl, err)
	}
	wantCode(t, "mute another's conversation", carol.Mute(ctx, imapi.MuteReq{ConvID: conv}), imapi.ErrForbidden)
	if err := bob.Unmute(ctx, imapi.MuteReq{ConvID: conv}); err != nil {
		t.Fatal(err)
	}
	if c.svc.Muted(ctx, appKey, "bob", conv) {
		t.Fatal("still muted")
	}
}
