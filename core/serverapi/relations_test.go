package serverapi_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/serverapi"
)

// notices collects the notice pushes published to an account's subject
// (what its gateways would deliver to every device).
func (e *env) notices(account string) func(kind string) imapi.Notice {
	e.t.Helper()
	ch := make(chan imapi.Notice, 64)
	sub, err := e.nc.Subscribe(buswire.UserSubject(appKey, account), func(m *nats.Msg) {
		var p buswire.Push
		var n imapi.Notice
		if json.Unmarshal(m.Data, &p) == nil && p.Op == imapi.OpNotice && json.Unmarshal(p.Body, &n) == nil {
			ch <- n
		}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return func(kind string) imapi.Notice {
		e.t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case n := <-ch:
				if n.Kind == kind {
					return n
				}
			case <-deadline:
				e.t.Fatalf("%s: no %s notice", account, kind)
			}
		}
	}
}

func (e *env) fails(method, target string, body any, want imapi.Code) {
	e.t.Helper()
	status, b := e.do(method, target, body, nil)
	if c := errCode(e.t, b); status == http.StatusOK || c != want {
		e.t.Fatalf("%s %s: %d %s, want code %d", method, target, status, b, want)
	}
}

func TestProfilesFriendsBlacklist(t *testing.T) {
	e := newEnv(t)
	for _, a := range []string{"alice", "bob", "carol"} {
		e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: a}, nil)
	}
	aliceNotices, bobNotices := e.notices("alice"), e.notices("bob")

	var p imapi.Profile
	e.ok(http.MethodPatch, "/v1/users/alice/profile", map[string]any{"name": "Alice", "avatar": "https://img.example/a.png", "ext": map[string]any{"vip": true}}, &p)
	if p.Name != "Alice" || string(p.Ext) != `{"vip":true}` {
		t.Fatalf("profile %+v", p)
	}
	if n := aliceNotices(imapi.NoticeProfile); n.Profile == nil || n.Profile.Name != "Alice" || n.Seq != 1 {
		t.Fatalf("profile notice %+v", n)
	}
	var ps imapi.ProfilesResp
	e.ok(http.MethodGet, "/v1/profiles?accounts=bob,alice,nobody", nil, &ps)
	if len(ps.Profiles) != 2 || ps.Profiles[0].Account != "bob" || ps.Profiles[1].Avatar != "https://img.example/a.png" {
		t.Fatalf("profiles %+v", ps)
	}
	e.fails(http.MethodPatch, "/v1/users/alice/profile", map[string]any{"ext": map[string]any{"x": strings.Repeat("y", imapi.MaxProfileExt)}}, imapi.ErrTooLarge)
	e.fails(http.MethodPatch, "/v1/users/alice/profile", map[string]any{"ext": "not an object"}, imapi.ErrBadRequest)
	e.fails(http.MethodPatch, "/v1/users/nobody/profile", map[string]any{"name": "x"}, imapi.ErrNotFound)
	e.fails(http.MethodGet, "/v1/profiles", nil, imapi.ErrBadRequest)

	// Import: both sides of each new friendship are told.
	var imp serverapi.FriendsImportResp
	e.ok(http.MethodPost, "/v1/users/alice/friends", serverapi.FriendsImportReq{Friends: []string{"bob", "carol"}}, &imp)
	if !slices.Equal(imp.Added, []string{"bob", "carol"}) {
		t.Fatalf("import %+v", imp)
	}
	if n := bobNotices(imapi.NoticeFriendAdded); n.From != "alice" || n.To != "bob" {
		t.Fatalf("bob's notice %+v", n)
	}
	e.ok(http.MethodPost, "/v1/users/alice/friends", serverapi.FriendsImportReq{Friends: []string{"bob"}}, &imp)
	if len(imp.Added) != 0 {
		t.Fatalf("second import added %v", imp.Added)
	}
	var fl imapi.FriendListResp
	e.ok(http.MethodGet, "/v1/users/bob/friends", nil, &fl)
	if len(fl.Friends) != 1 || fl.Friends[0].Account != "alice" {
		t.Fatalf("bob's friends %+v", fl)
	}
	e.fails(http.MethodPost, "/v1/users/alice/friends", serverapi.FriendsImportReq{Friends: []string{"ghost"}}, imapi.ErrNotFound)
	e.fails(http.MethodGet, "/v1/users/nobody/friends", nil, imapi.ErrNotFound)

	// Blacklist: bob blocks alice; her messages to him are refused with 1101.
	e.ok(http.MethodPost, "/v1/users/bob/blacklist", imapi.AccountRef{Account: "alice"}, nil)
	bobNotices(imapi.NoticeBlockAdded)
	var bl imapi.AccountsResp
	e.ok(http.MethodGet, "/v1/users/bob/blacklist", nil, &bl)
	if !slices.Equal(bl.Accounts, []string{"alice"}) {
		t.Fatalf("blacklist %+v", bl)
	}
	send := serverapi.SendMessageReq{From: "alice", SendReq: imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", ClientMsgID: "b1", Body: json.RawMessage(`{"text":"hi"}`)}}
	status, b := e.do(http.MethodPost, "/v1/messages", send, nil)
	if c := errCode(t, b); status != http.StatusForbidden || c != imapi.ErrBlocked {
		t.Fatalf("blocked send: %d %s", status, b)
	}
	e.ok(http.MethodPost, "/v1/users/bob/blacklist/remove", imapi.AccountRef{Account: "alice"}, nil)
	e.ok(http.MethodPost, "/v1/messages", send, nil)
	e.fails(http.MethodPost, "/v1/users/bob/blacklist", imapi.AccountRef{Account: "bob"}, imapi.ErrBadRequest)
}

func TestGroupUpdateRolesTransfer(t *testing.T) {
	e := newEnv(t)
	for _, a := range []string{"alice", "bob", "carol"} {
		e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: a}, nil)
	}
	var g imapi.Group
	e.ok(http.MethodPost, "/v1/groups", serverapi.GroupCreateReq{Owner: "alice", Name: "team", Members: []string{"bob", "carol"}}, &g)
	base := "/v1/groups/" + g.GroupID
	name := "renamed"
	e.fails(http.MethodPatch, base, serverapi.GroupUpdateReq{As: "bob", Name: &name}, imapi.ErrForbidden)
	e.fails(http.MethodPost, base+"/roles", serverapi.GroupRoleReq{As: "bob", Account: "bob", Role: "manager"}, imapi.ErrForbidden)
	e.ok(http.MethodPost, base+"/roles", serverapi.GroupRoleReq{As: "alice", Account: "bob", Role: "manager"}, nil)
	var up imapi.Group
	e.ok(http.MethodPatch, base, serverapi.GroupUpdateReq{As: "bob", Name: &name}, &up)
	if up.Name != name || !slices.Equal(up.Managers, []string{"bob"}) {
		t.Fatalf("updated %+v", up)
	}
	e.fails(http.MethodPost, base+"/transfer", serverapi.GroupTransferReq{As: "bob", Account: "carol"}, imapi.ErrForbidden)
	e.ok(http.MethodPost, base+"/transfer", serverapi.GroupTransferReq{As: "alice", Account: "carol"}, nil)
	var info imapi.Group
	e.ok(http.MethodGet, base+"?as=alice", nil, &info)
	if info.Owner != "carol" || info.Name != name {
		t.Fatalf("after transfer %+v", info)
	}
	// A manager removes a plain member (alice, the old owner).
	e.ok(http.MethodPost, base+"/members/remove", serverapi.GroupMembersReq{As: "bob", Members: []string{"alice"}}, nil)
	e.fails(http.MethodPost, base+"/dismiss", serverapi.GroupActReq{As: "bob"}, imapi.ErrForbidden)
	e.ok(http.MethodPost, base+"/dismiss", serverapi.GroupActReq{As: "carol"}, nil)
}

// PATCH /v1/users/{account} renames through the profile: the user's
// devices get a profile.updated notice and its online friends a
// user.profile_changed push, the rest of the profile stays, and the
// profile's name limit applies; disabling in the same call still works.
func TestUserRenameTellsDevicesAndFriends(t *testing.T) {
	e := newEnv(t)
	for _, a := range []string{"alice", "bob"} {
		e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: a}, nil)
	}
	e.ok(http.MethodPost, "/v1/users/alice/friends", map[string]any{"friends": []string{"bob"}}, nil)
	e.ok(http.MethodPatch, "/v1/users/alice/profile", map[string]any{"avatar": "https://img.example/a.png"}, nil)
	aliceNotices := e.notices("alice")
	changed := make(chan imapi.Profile, 4)
	sub, err := e.nc.Subscribe(buswire.UserSubject(appKey, "bob"), func(m *nats.Msg) {
		var p buswire.Push
		var prof imapi.Profile
		if json.Unmarshal(m.Data, &p) == nil && p.Op == imapi.OpProfileChanged && json.Unmarshal(p.Body, &prof) == nil {
			changed <- prof
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = e.nc.Flush()

	var u serverapi.UserResp
	e.ok(http.MethodPatch, "/v1/users/alice", serverapi.UserUpdateReq{Name: ptr("Alicia")}, &u)
	if u.Name != "Alicia" {
		t.Fatalf("renamed %+v", u)
	}
	if n := aliceNotices(imapi.NoticeProfile); n.Profile == nil || n.Profile.Name != "Alicia" || n.Profile.Avatar != "https://img.example/a.png" {
		t.Fatalf("rename notice %+v", n)
	}
	select {
	case p := <-changed:
		if p.Account != "alice" || p.Name != "Alicia" {
			t.Fatalf("friend told %+v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the friend was not told of the rename")
	}
	e.fails(http.MethodPatch, "/v1/users/alice", serverapi.UserUpdateReq{Name: ptr(strings.Repeat("n", imapi.MaxProfileName+1))}, imapi.ErrTooLarge)
	e.fails(http.MethodPatch, "/v1/users/nobody", serverapi.UserUpdateReq{Name: ptr("x")}, imapi.ErrNotFound)
	yes := true
	e.ok(http.MethodPatch, "/v1/users/alice", serverapi.UserUpdateReq{Name: ptr("A."), Disabled: &yes}, &u)
	if u.Name != "A." || !u.Disabled {
		t.Fatalf("rename and disable %+v", u)
	}
}

func ptr[T any](v T) *T { return &v }
