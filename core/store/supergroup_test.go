package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/store"
)

func sup(from, group, cmid string, mentions ...string) *store.Append {
	return &store.Append{Message: store.Message{
		AppKey: app, ConvID: imapi.SuperConvID(group), ConvType: imapi.ConvSuper, MsgID: nextID(), Sender: from,
		To: group, ClientMsgID: cmid, Type: "text", Body: []byte(`{"text":"hi"}`), Mentions: mentions, Time: time.Now().UnixMilli(),
	}, GroupID: group, Super: true}
}

func TestSuperGroups(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		g := store.SuperGroup{AppKey: app, GroupID: "big", Name: "Big", Owner: "owner"}
		if err := st.CreateSuperGroup(ctx, g, []string{"owner", "a", "b"}, 1000); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateSuperGroup(ctx, g, []string{"owner"}, 1000); !errors.Is(err, store.ErrExists) {
			t.Fatalf("second create: %v, want ErrExists", err)
		}
		// One batch of 600 members: one transaction, chunked statements.
		var batch []string
		for i := range 600 {
			batch = append(batch, fmt.Sprintf("u%04d", i))
		}
		added, n, err := st.AddSuperMembers(ctx, app, "big", append(batch, "a"), 1000)
		if err != nil || len(added) != 600 || n != 603 {
			t.Fatalf("add: %d added, count %d, %v", len(added), n, err)
		}
		if _, _, err := st.AddSuperMembers(ctx, app, "big", []string{"x1", "x2", "x3", "x4", "x5"}, 605); !errors.Is(err, store.ErrGroupFull) {
			t.Fatalf("over the limit: %v, want ErrGroupFull", err)
		}
		if info, err := st.SuperGroup(ctx, app, "big"); err != nil || info.Count != 603 || info.Owner != "owner" {
			t.Fatalf("info after refused batch: %+v %v", info, err)
		}
		// Paging in account order.
		var all []string
		after := ""
		for {
			page, more, err := st.SuperMembers(ctx, app, "big", after, 250)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, page...)
			if !more {
				break
			}
			after = page[len(page)-1]
		}
		if len(all) != 603 || !slices.IsSorted(all) {
			t.Fatalf("paged %d members (sorted %v)", len(all), slices.IsSorted(all))
		}

		// Messages: one row each; the sender's read position follows its sends.
		for i := range 3 {
			if _, err := st.AppendMessage(ctx, sup("a", "big", fmt.Sprintf("c%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		r, err := st.AppendMessage(ctx, sup("b", "big", "c9", "u0001", "nobody", "a"))
		if err != nil || r.Seq != 4 || len(r.Members) != 0 {
			t.Fatalf("append: %+v %v", r, err)
		}
		if _, err := st.AppendMessage(ctx, sup("stranger", "big", "c10")); !errors.Is(err, store.ErrForbidden) {
			t.Fatalf("non-member send: %v", err)
		}
		if err := st.AddSuperMentions(ctx, app, "big", 4, []string{"u0001", "nobody", "a"}); err != nil {
			t.Fatal(err)
		}
		if err := st.AddSuperMentions(ctx, app, "big", 4, []string{"u0001"}); err != nil { // redelivered: idempotent
			t.Fatal(err)
		}
		conv := func(account string) store.ConvState {
			t.Helper()
			cs, err := st.SuperConversations(ctx, app, account, 10)
			if err != nil || len(cs) != 1 {
				t.Fatalf("conversations of %s: %+v %v", account, cs, err)
			}
			return cs[0]
		}
		if c := conv("u0001"); c.Unread != 4 || c.Mentions != 1 || c.LastSeq != 4 || c.Last == nil || c.Last.Sender != "b" {
			t.Fatalf("u0001: %+v", c)
		}
		if c := conv("a"); c.Unread != 1 || c.Mentions != 1 || c.ReadSeq != 3 {
			t.Fatalf("a (sent 1-3): %+v", c)
		}
		if c := conv("b"); c.Unread != 0 || c.Mentions != 0 {
			t.Fatalf("b (sent 4): %+v", c)
		}
		// @all: one row, counted for everyone who has not read it.
		if _, err := st.AppendMessage(ctx, sup("owner", "big", "c11", store.MentionAll)); err != nil {
			t.Fatal(err)
		}
		if err := st.AddSuperMentions(ctx, app, "big", 5, []string{store.MentionAll}); err != nil {
			t.Fatal(err)
		}
		if c := conv("u0001"); c.Unread != 5 || c.Mentions != 2 {
			t.Fatalf("u0001 after @all: %+v", c)
		}
		if c := conv("owner"); c.Unread != 0 || c.Mentions != 0 {
			t.Fatalf("owner after its @all: %+v", c)
		}
		if seq, err := st.MarkSuperRead(ctx, app, "big", "u0001", 4); err != nil || seq != 4 {
			t.Fatalf("read: %d %v", seq, err)
		}
		if seq, err := st.MarkSuperRead(ctx, app, "big", "u0001", 99); err != nil || seq != 5 {
			t.Fatalf("read past the end: %d %v", seq, err)
		}
		if c := conv("u0001"); c.Unread != 0 || c.Mentions != 0 {
			t.Fatalf("u0001 after reading: %+v", c)
		}
		if _, err := st.MarkSuperRead(ctx, app, "big", "stranger", 1); !errors.Is(err, store.ErrForbidden) {
			t.Fatalf("stranger read: %v", err)
		}
		// A member joining now has read what came before.
		if _, _, err := st.AddSuperMembers(ctx, app, "big", []string{"late"}, 1000); err != nil {
			t.Fatal(err)
		}
		if c := conv("late"); c.Unread != 0 || c.ReadSeq != 5 {
			t.Fatalf("late joiner: %+v", c)
		}
		ms, _, err := st.Messages(ctx, app, imapi.SuperConvID("big"), 0, 10)
		if err != nil || len(ms) != 5 {
			t.Fatalf("timeline: %d %v", len(ms), err)
		}

		removed, n, err := st.RemoveSuperMembers(ctx, app, "big", []string{"u0001", "nobody"})
		if err != nil || !slices.Equal(removed, []string{"u0001"}) || n != 603 {
			t.Fatalf("remove: %v %d %v", removed, n, err)
		}
		if ok, _ := st.IsSuperMember(ctx, app, "big", "u0001"); ok {
			t.Fatal("removed member still a member")
		}
		if gs, err := st.SuperGroupsOf(ctx, app, "a"); err != nil || len(gs) != 1 || gs[0].LastSeq != 5 {
			t.Fatalf("groups of a: %+v %v", gs, err)
		}
		if err := st.DismissSuperGroup(ctx, app, "big"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.SuperGroup(ctx, app, "big"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("dismissed: %v", err)
		}
		if gs, _ := st.SuperGroupsOf(ctx, app, "a"); len(gs) != 0 {
			t.Fatalf("groups of a after dismiss: %+v", gs)
		}
		if _, err := st.AppendMessage(ctx, sup("a", "big", "c12")); !errors.Is(err, store.ErrForbidden) {
			t.Fatalf("send to dismissed: %v", err)
		}
	})
}

// TestSuperAddBatchSpeed adds 100,000 members in batches of 1,000, one
// transaction each, as the server API does.
func TestSuperAddBatchSpeed(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		if err := st.CreateSuperGroup(ctx, store.SuperGroup{AppKey: app, GroupID: "huge", Owner: "o"}, []string{"o"}, 100_001); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for b := range 100 {
			batch := make([]string, 1000)
			for i := range batch {
				batch[i] = fmt.Sprintf("m%06d", b*1000+i)
			}
			if _, _, err := st.AddSuperMembers(ctx, app, "huge", batch, 100_001); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("100,000 members in 100 batches: %v", time.Since(start))
		if g, err := st.SuperGroup(ctx, app, "huge"); err != nil || g.Count != 100_001 {
			t.Fatalf("%+v %v", g, err)
		}
		if _, _, err := st.AddSuperMembers(ctx, app, "huge", []string{"one-more"}, 100_001); !errors.Is(err, store.ErrGroupFull) {
			t.Fatalf("limit: %v", err)
		}
	})
}
