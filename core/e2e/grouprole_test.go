package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

func (c *client) hasGroupEvent(kind string, ok func(imapi.GroupEvent) bool) {
	c.t.Helper()
	c.waitUntil("group event "+kind, 10*time.Second, func(c *client) bool {
		return slices.ContainsFunc(c.groups, func(e imapi.GroupEvent) bool { return e.Kind == kind && (ok == nil || ok(e)) })
	})
}

func ptr[T any](v T) *T { return &v }

// Group rename, roles and ownership: who may do what, and every member
// hears of each change.
func TestGroupRoles(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	tok := c.users("alice", "bob", "carol", "dan", "eve")
	cl := map[string]*client{}
	for _, a := range []string{"alice", "bob", "carol", "dan", "eve"} {
		cl[a] = c.client(t, a, tok[a], "phone")
		cl[a].connected(t)
	}
	alice, bob, carol, dan, eve := cl["alice"], cl["bob"], cl["carol"], cl["dan"], cl["eve"]
	ctx := ctx10(t)
	var g imapi.Group
	if err := alice.Request(ctx, imapi.OpGroupCreate, imapi.GroupCreateReq{Name: "team", Members: []string{"bob", "carol", "dan", "eve"}}, &g); err != nil {
		t.Fatal(err)
	}
	gid := g.GroupID
	update := func(who *client, req imapi.GroupUpdateReq) error {
		req.GroupID = gid
		_, err := who.UpdateGroup(ctx, req)
		return err
	}
	role := func(who *client, account, role string) error {
		return who.SetGroupRole(ctx, gid, account, role)
	}
	remove := func(who *client, accounts ...string) error {
		return who.Request(ctx, imapi.OpGroupRemove, imapi.GroupMembersReq{GroupID: gid, Members: accounts}, nil)
	}

	// A plain member cannot rename (the group does not allow it).
	wantCode(t, "member rename", update(bob, imapi.GroupUpdateReq{Name: ptr("bob's")}), imapi.ErrForbidden)
	wantCode(t, "member names a manager", role(bob, "carol", imapi.GroupRoleManager), imapi.ErrForbidden)
	wantCode(t, "member removes", remove(bob, "dan"), imapi.ErrForbidden)

	// The owner names bob and carol managers; everyone hears.
	if err := role(alice, "bob", imapi.GroupRoleManager); err != nil {
		t.Fatal(err)
	}
	if err := role(alice, "carol", imapi.GroupRoleManager); err != nil {
		t.Fatal(err)
	}
	eve.hasGroupEvent(GroupRoleKind, func(e imapi.GroupEvent) bool {
		return slices.Equal(e.Members, []string{"bob"}) && e.Role == imapi.GroupRoleManager && e.By == "alice"
	})
	wantCode(t, "role of a non-member", role(alice, "nobody", imapi.GroupRoleManager), imapi.ErrNotFound)
	wantCode(t, "bad role", role(alice, "dan", "owner"), imapi.ErrBadRequest)

	// A manager renames; every member gets the event with the new name.
	if err := update(bob, imapi.GroupUpdateReq{Name: ptr("renamed"), Announcement: ptr("meet at 10"), Avatar: ptr("https://img.example/g.png")}); err != nil {
		t.Fatal(err)
	}
	for _, who := range []*client{alice, carol, dan, eve} {
		who.hasGroupEvent("updated", func(e imapi.GroupEvent) bool { return e.Group != nil && e.Group.Name == "renamed" && e.By == "bob" })
	}
	var info imapi.Group
	if err := dan.Request(ctx, imapi.OpGroupInfo, imapi.GroupRef{GroupID: gid}, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "renamed" || info.Announcement != "meet at 10" || !slices.Equal(info.Managers, []string{"bob", "carol"}) || info.Owner != "alice" {
		t.Fatalf("info %+v", info)
	}
	wantCode(t, "bad avatar", update(bob, imapi.GroupUpdateReq{Avatar: ptr("javascript:alert(1)")}), imapi.ErrBadRequest)

	// Managers remove plain members, not other managers; only the owner dismisses.
	wantCode(t, "manager removes a manager", remove(bob, "carol"), imapi.ErrForbidden)
	if err := remove(bob, "dan"); err != nil {
		t.Fatal(err)
	}
	dan.hasGroupEvent(GroupRemovedKind, nil)
	wantCode(t, "manager dismisses", bob.Request(ctx, imapi.OpGroupDismiss, imapi.GroupRef{GroupID: gid}, nil), imapi.ErrForbidden)
	wantCode(t, "manager transfers", bob.Request(ctx, imapi.OpGroupTransfer, imapi.GroupTransferReq{GroupID: gid, Account: "bob"}, nil), imapi.ErrForbidden)

	// Letting members update: only managers may open it; then eve can.
	wantCode(t, "member opens updates", update(eve, imapi.GroupUpdateReq{AnyoneUpdates: ptr(true)}), imapi.ErrForbidden)
	if err := update(carol, imapi.GroupUpdateReq{AnyoneUpdates: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if err := update(eve, imapi.GroupUpdateReq{Announcement: ptr("eve was here")}); err != nil {
		t.Fatalf("member update when allowed: %v", err)
	}

	// Transfer: bob owns the group, alice is a plain member.
	wantCode(t, "transfer to a non-member", alice.Request(ctx, imapi.OpGroupTransfer, imapi.GroupTransferReq{GroupID: gid, Account: "dan"}, nil), imapi.ErrNotFound)
	if err := alice.TransferGroup(ctx, gid, "bob"); err != nil {
		t.Fatal(err)
	}
	eve.hasGroupEvent("transferred", func(e imapi.GroupEvent) bool { return slices.Equal(e.Members, []string{"bob"}) })
	if err := eve.Request(ctx, imapi.OpGroupInfo, imapi.GroupRef{GroupID: gid}, &info); err != nil {
		t.Fatal(err)
	}
	if info.Owner != "bob" || !slices.Equal(info.Managers, []string{"carol"}) {
		t.Fatalf("after transfer %+v", info)
	}
	wantCode(t, "old owner removes", remove(alice, "eve"), imapi.ErrForbidden)
	wantCode(t, "old owner dismisses", alice.Request(ctx, imapi.OpGroupDismiss, imapi.GroupRef{GroupID: gid}, nil), imapi.ErrForbidden)
	if err := alice.Request(ctx, imapi.OpGroupLeave, imapi.GroupRef{GroupID: gid}, nil); err != nil {
		t.Fatalf("old owner leaves: %v", err)
	}
	if err := bob.Request(ctx, imapi.OpGroupDismiss, imapi.GroupRef{GroupID: gid}, nil); err != nil {
		t.Fatal(err)
	}
	carol.hasGroupEvent("dismissed", nil)
}

const (
	GroupRoleKind    = "role"
	GroupRemovedKind = "removed"
)

// The group invite mode through the SDK: in a managers-only group a plain
// member's add is refused with 1202 and nobody hears of it; once a manager,
// the same add goes through and the other members get the added event.
func TestGroupInviteMode(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	tok := c.users("alice", "bob", "carol")
	cl := map[string]*client{}
	for _, a := range []string{"alice", "bob", "carol"} {
		cl[a] = c.client(t, a, tok[a], "phone")
		cl[a].connected(t)
	}
	alice, bob, carol := cl["alice"], cl["bob"], cl["carol"]
	ctx := ctx10(t)
	g, err := alice.CreateGroup(ctx, imapi.GroupCreateReq{Name: "closed", Members: []string{"bob"}, InviteMode: imapi.GroupInviteManagers})
	if err != nil || g.InviteMode != imapi.GroupInviteManagers {
		t.Fatalf("create: %+v %v", g, err)
	}
	wantCode(t, "member adds", bob.AddGroupMembers(ctx, g.GroupID, "carol"), imapi.ErrInviteForbidden)
	if err := alice.SetGroupRole(ctx, g.GroupID, "bob", imapi.GroupRoleManager); err != nil {
		t.Fatal(err)
	}
	if err := bob.AddGroupMembers(ctx, g.GroupID, "carol"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*client{alice, carol} { // the acting session is not told
		m.hasGroupEvent("added", func(e imapi.GroupEvent) bool { return slices.Equal(e.Members, []string{"carol"}) && e.By == "bob" })
	}
	alice.mu.Lock()
	defer alice.mu.Unlock()
	added := 0
	for _, e := range alice.groups {
		if e.Kind == "added" {
			added++
		}
	}
	if added != 1 {
		t.Fatalf("%d added events, want 1 (the refused add must not be told)", added)
	}
}
