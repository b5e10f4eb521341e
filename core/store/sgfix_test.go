package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/pkg/waittest"
)

// rawCount runs a COUNT(*) query on the store's database directly (for rows
// that no Store method shows).
func rawCount(t *testing.T, cfg store.Config, query string) int {
	t.Helper()
	db := rawDB(t, cfg)
	defer db.Close()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// rawExec runs a statement on the store's database directly.
func rawExec(t *testing.T, cfg store.Config, query string) {
	t.Helper()
	db := rawDB(t, cfg)
	defer db.Close()
	if _, err := db.Exec(query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// rawDB opens the store's database beside the store.
func rawDB(t *testing.T, cfg store.Config) *sql.DB {
	t.Helper()
	driver, dsn := "sqlite", cfg.Path
	if cfg.Driver == store.DriverPostgres {
		driver, dsn = "pgx", cfg.DSN.Reveal()
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// The badge counts super-group unread (last seq − read seq) beside the
// ordinary conversations' counters, and forgets dismissed groups.
func TestUnreadTotalWithSuperGroups(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		mustUsers(t, st, "ua", "ub")
		total := func(account string, want int64) {
			t.Helper()
			if n, err := st.UnreadTotal(ctx, app, account); err != nil || n != want {
				t.Fatalf("unread total of %s: %d %v, want %d", account, n, err, want)
			}
		}
		// Two ordinary messages to ua.
		for i := range 2 {
			if _, err := st.AppendMessage(ctx, p2p("ub", "ua", fmt.Sprintf("p%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		total("ua", 2)
		for _, gid := range []string{"bg1", "bg2"} {
			if err := st.CreateSuperGroup(ctx, store.SuperGroup{AppKey: app, GroupID: gid, Name: gid, Owner: "ub"}, []string{"ub", "ua"}, 100); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 3 {
			if _, err := st.AppendMessage(ctx, sup("ub", "bg1", fmt.Sprintf("s1-%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 4 {
			if _, err := st.AppendMessage(ctx, sup("ub", "bg2", fmt.Sprintf("s2-%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		total("ua", 2+3+4)
		total("ub", 0) // its own sends are read
		if _, err := st.MarkSuperRead(ctx, app, "bg1", "ua", 2); err != nil {
			t.Fatal(err)
		}
		total("ua", 2+1+4)
		// A member added now starts with everything read.
		if _, _, err := st.AddSuperMembers(ctx, app, "bg2", []string{"late"}, 100); err != nil {
			t.Fatal(err)
		}
		total("late", 0)
		if _, err := st.AppendMessage(ctx, sup("ub", "bg2", "s2-late")); err != nil {
			t.Fatal(err)
		}
		total("late", 1)
		total("ua", 2+1+5)
		if err := st.DismissSuperGroup(ctx, app, "bg2"); err != nil {
			t.Fatal(err)
		}
		total("ua", 2+1)
		total("late", 0)
	})
}

// Dismissing a super-group removes its per-member rows: members and the
// mention rows (named and @all), not those of other groups.
func TestDismissSuperGroupDropsMentions(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, cfg store.Config) {
		ctx := context.Background()
		for _, gid := range []string{"gone", "kept"} {
			if err := st.CreateSuperGroup(ctx, store.SuperGroup{AppKey: app, GroupID: gid, Name: gid, Owner: "o"}, []string{"o", "m1", "m2"}, 100); err != nil {
				t.Fatal(err)
			}
			if _, err := st.AppendMessage(ctx, sup("o", gid, "c1", "m1", "m2")); err != nil {
				t.Fatal(err)
			}
			if err := st.AddSuperMentions(ctx, app, gid, 1, []string{"m1", "m2"}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.AppendMessage(ctx, sup("o", gid, "c2", store.MentionAll)); err != nil {
				t.Fatal(err)
			}
			if err := st.AddSuperMentions(ctx, app, gid, 2, []string{store.MentionAll}); err != nil {
				t.Fatal(err)
			}
		}
		count := func(table, gid string) int {
			return rawCount(t, cfg, fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE appkey = '%s' AND group_id = '%s'", table, app, gid))
		}
		if n := count("super_mentions", "gone"); n != 3 {
			t.Fatalf("mention rows before dismiss: %d, want 3", n)
		}
		if err := st.DismissSuperGroup(ctx, app, "gone"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.SuperGroup(ctx, app, "gone"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("dismissed group: %v", err)
		}
		// The purger deletes them after the dismissal returned.
		waittest.Until(t, 10*time.Second, "the dismissed group's rows purged", func() bool {
			return count("super_mentions", "gone") == 0 && count("super_members", "gone") == 0
		})
		if n := count("super_mentions", "kept"); n != 3 {
			t.Fatalf("the other group's mention rows: %d, want 3", n)
		}
	})
}

// A store that stopped between marking a group dismissed and purging its
// rows purges them when it starts again.
func TestDismissedSuperGroupPurgedAtStart(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, cfg store.Config) {
		ctx := context.Background()
		members := make([]string, 2*2000+7) // more than two purge chunks
		for i := range members {
			members[i] = fmt.Sprintf("u%05d", i)
		}
		if err := st.CreateSuperGroup(ctx, store.SuperGroup{AppKey: app, GroupID: "left", Name: "left", Owner: members[0]}, members, len(members)); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		// As the store leaves it when it stops right after the mark.
		rawExec(t, cfg, fmt.Sprintf("UPDATE super_groups SET dismissed = 1, members = 0 WHERE appkey = '%s' AND group_id = 'left'", app))
		count := func() int {
			return rawCount(t, cfg, fmt.Sprintf("SELECT COUNT(*) FROM super_members WHERE appkey = '%s' AND group_id = 'left'", app))
		}
		if n := count(); n != len(members) {
			t.Fatalf("member rows before the restart: %d, want %d", n, len(members))
		}
		st2, err := store.Open(ctx, cfg, store.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		defer st2.Close()
		waittest.Until(t, 20*time.Second, "rows purged after the restart", func() bool { return count() == 0 })
	})
}
