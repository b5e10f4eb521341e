package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/longlink/longlink/core/store"
)

func TestGroupRolesStore(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		mustUsers(t, st, "alice", "bob", "carol")
		if err := st.CreateGroup(ctx, store.Group{AppKey: app, GroupID: "g1", Name: "team", Owner: "alice", Members: []string{"alice", "bob", "carol"}, Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
		name, ann := "renamed", "hello"
		if err := st.UpdateGroup(ctx, app, "g1", store.GroupUpdate{Name: &name, Announcement: &ann, AnyoneUpdates: new(bool)}); err != nil {
			t.Fatal(err)
		}
		g, _ := st.Group(ctx, app, "g1")
		if g.Name != name {
			t.Fatalf("group %+v", g)
		}
		if changed, err := st.SetGroupRole(ctx, app, "g1", "bob", store.RoleManager); err != nil || !changed {
			t.Fatal(changed, err)
		}
		if changed, _ := st.SetGroupRole(ctx, app, "g1", "bob", store.RoleManager); changed {
			t.Fatal("same role changed")
		}
		if _, err := st.SetGroupRole(ctx, app, "g1", "nobody", store.RoleManager); !errors.Is(err, store.ErrForbidden) {
			t.Fatalf("role of a non-member: %v", err)
		}
		m, err := st.GroupMeta(ctx, app, "g1")
		if err != nil || m.Announcement != ann || !slices.Equal(m.Managers, []string{"bob"}) || m.AnyoneUpdates {
			t.Fatalf("meta %+v %v", m, err)
		}
		if err := st.TransferGroup(ctx, app, "g1", "bob", "carol"); !errors.Is(err, store.ErrForbidden) {
			t.Fatalf("transfer by a non-owner: %v", err)
		}
		if err := st.TransferGroup(ctx, app, "g1", "alice", "bob"); err != nil {
			t.Fatal(err)
		}
		g, _ = st.Group(ctx, app, "g1")
		m, _ = st.GroupMeta(ctx, app, "g1")
		if g.Owner != "bob" || len(m.Managers) != 0 {
			t.Fatalf("after transfer %+v %+v", g, m)
		}
		if err := st.DismissGroup(ctx, app, "g1"); err != nil {
			t.Fatal(err)
		}
		if err := st.UpdateGroup(ctx, app, "g1", store.GroupUpdate{Name: &name}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("update of a dismissed group: %v", err)
		}
		if _, err := st.GroupMeta(ctx, app, "g1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("meta of a dismissed group: %v", err)
		}
	})
}
