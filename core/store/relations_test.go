package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
)

func notes(body string, accounts ...string) []store.Notice {
	var out []store.Notice
	for _, a := range accounts {
		out = append(out, store.Notice{Account: a, Body: []byte(body)})
	}
	return out
}

func TestProfiles(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		mustUsers(t, st, "alice", "bob")
		name, avatar := "Alice A.", "https://img.example/a.png"
		p, ns, err := st.UpdateProfile(ctx, app, "alice", store.ProfileUpdate{Name: &name, Avatar: &avatar, Ext: []byte(`{"level":3}`)}, func(p store.Profile) []store.Notice {
			return notes(`{"name":"`+p.Name+`"}`, "alice")
		})
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != name || p.Avatar != avatar || string(p.Ext) != `{"level":3}` || p.Updated == 0 {
			t.Fatalf("profile %+v", p)
		}
		if len(ns) != 1 || ns[0].Seq != 1 || ns[0].Account != "alice" || string(ns[0].Body) != `{"name":"Alice A."}` {
			t.Fatalf("notices %+v", ns)
		}
		// Only the given fields change.
		p, _, err = st.UpdateProfile(ctx, app, "alice", store.ProfileUpdate{Ext: []byte{}}, func(store.Profile) []store.Notice { return nil })
		if err != nil || p.Name != name || p.Ext != nil {
			t.Fatalf("profile %+v %v", p, err)
		}
		ps, err := st.Profiles(ctx, app, []string{"bob", "nobody", "alice"})
		if err != nil || len(ps) != 2 || ps[0].Account != "bob" || ps[0].Name != "bob" || ps[1].Avatar != avatar {
			t.Fatalf("profiles %+v %v", ps, err)
		}
		if _, _, err := st.UpdateProfile(ctx, app, "nobody", store.ProfileUpdate{Name: &name}, func(store.Profile) []store.Notice { return nil }); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown account: %v", err)
		}
	})
}

func TestFriendsAndNotices(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		mustUsers(t, st, "alice", "bob", "carol")
		both := func(store.RequestOutcome) []store.Notice { return notes(`{"kind":"x"}`, "alice", "bob") }
		acc, ns, err := st.RequestFriend(ctx, app, "alice", "bob", "hi", both)
		if err != nil || acc != store.RequestPending || len(ns) != 2 {
			t.Fatalf("request: %v %v %+v", acc, err, ns)
		}
		rs, err := st.FriendRequests(ctx, app, "bob")
		if err != nil || len(rs) != 1 || rs[0].From != "alice" || rs[0].Message != "hi" {
			t.Fatalf("requests %+v %v", rs, err)
		}
		if _, err := st.AnswerFriend(ctx, app, "alice", "bob", true, "", nil); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("accepting one's own request: %v", err)
		}
		if _, err := st.AnswerFriend(ctx, app, "bob", "alice", true, "Ali", notes(`{}`, "alice", "bob")); err != nil {
			t.Fatal(err)
		}
		fs, _ := st.Friends(ctx, app, "bob")
		if len(fs) != 1 || fs[0].Account != "alice" || fs[0].Alias != "Ali" {
			t.Fatalf("bob's friends %+v", fs)
		}
		if n, _ := st.FriendCount(ctx, app, "alice"); n != 1 {
			t.Fatalf("alice has %d friends", n)
		}
		if _, _, err := st.RequestFriend(ctx, app, "bob", "alice", "", both); !errors.Is(err, store.ErrExists) {
			t.Fatalf("request between friends: %v", err)
		}
		if _, err := st.SetAlias(ctx, app, "alice", "bob", "Bobby", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := st.SetAlias(ctx, app, "alice", "carol", "C", nil); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("alias of a non-friend: %v", err)
		}
		// Crossed requests make friends at once.
		if _, _, err := st.RequestFriend(ctx, app, "carol", "alice", "", both); err != nil {
			t.Fatal(err)
		}
		acc, _, err = st.RequestFriend(ctx, app, "alice", "carol", "", both)
		if err != nil || acc != store.RequestAccepted {
			t.Fatalf("crossed request: %v %v", acc, err)
		}
		if rs, _ := st.FriendRequests(ctx, app, "alice"); len(rs) != 0 {
			t.Fatalf("requests left: %+v", rs)
		}
		// A request to an account that blocks the requester is kept but
		// hidden from the blocker, and never makes friends at once.
		if _, _, err := st.SetBlocked(ctx, app, "bob", "carol", true, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.RequestFriend(ctx, app, "bob", "carol", "", both); err != nil {
			t.Fatal(err)
		}
		acc, _, err = st.RequestFriend(ctx, app, "carol", "bob", "", both)
		if err != nil || acc != store.RequestHidden {
			t.Fatalf("request to a blocker: %v %v", acc, err)
		}
		if rs, _ := st.FriendRequests(ctx, app, "bob"); len(rs) != 1 || rs[0].From != "bob" {
			t.Fatalf("the blocker's requests: %+v", rs)
		}
		if rs, _ := st.FriendRequests(ctx, app, "carol"); len(rs) != 2 {
			t.Fatalf("the requester's requests: %+v", rs)
		}
		if _, err := st.DeleteFriend(ctx, app, "bob", "alice", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := st.DeleteFriend(ctx, app, "bob", "alice", nil); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		added, ns, err := st.AddFriends(ctx, app, "bob", []string{"alice", "carol"}, func(a []string) []store.Notice { return notes(`{}`, a...) })
		if err != nil || len(added) != 2 || len(ns) != 2 {
			t.Fatalf("import: %v %v %+v", added, err, ns)
		}
		// alice's stream: request, accept, request (carol), accepted …
		all, more, err := st.Notices(ctx, app, "alice", 0, 100)
		if err != nil || more {
			t.Fatal(err, more)
		}
		for i, n := range all {
			if n.Seq != int64(i+1) || n.Time == 0 {
				t.Fatalf("notice %d: %+v", i, n)
			}
		}
		page, more, _ := st.Notices(ctx, app, "alice", 1, 2)
		if len(page) != 2 || !more || page[0].Seq != 2 {
			t.Fatalf("page %+v more %v", page, more)
		}
		if last, err := st.LastNoticeSeq(ctx, app, "alice"); err != nil || last != all[len(all)-1].Seq {
			t.Fatalf("LastNoticeSeq %d, %v; want %d", last, err, all[len(all)-1].Seq)
		}
		if last, err := st.LastNoticeSeq(ctx, app, "nobody"); err != nil || last != 0 {
			t.Fatalf("LastNoticeSeq of an account without notices: %d, %v", last, err)
		}
	})
}

func TestBlacklistInCommit(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		mustUsers(t, st, "alice", "bob", "carol")
		changed, ns, err := st.SetBlocked(ctx, app, "bob", "alice", true, notes(`{}`, "bob"))
		if err != nil || !changed || len(ns) != 1 {
			t.Fatalf("block: %v %v", changed, err)
		}
		if changed, ns, _ := st.SetBlocked(ctx, app, "bob", "alice", true, notes(`{}`, "bob")); changed || ns != nil {
			t.Fatal("blocking twice changed something")
		}
		if ok, _ := st.Blocks(ctx, app, "bob", "alice"); !ok {
			t.Fatal("Blocks: false")
		}
		if l, _ := st.Blacklist(ctx, app, "bob"); !slices.Equal(l, []string{"alice"}) {
			t.Fatalf("blacklist %v", l)
		}
		// Concurrent appends share batches: each is judged on its own.
		type res struct {
			name string
			err  error
		}
		cases := []struct {
			name string
			a    *store.Append
			want error
		}{
			{"alice→bob inbound", p2p("alice", "bob", "c1"), store.ErrBlocked},
			{"bob→alice inbound", p2p("bob", "alice", "c2"), nil},
			{"alice→carol", p2p("alice", "carol", "c3"), nil},
			{"bob→alice both", withMode(p2p("bob", "alice", "c4"), store.BlockBoth), store.ErrBlocked},
			{"alice→bob both", withMode(p2p("alice", "bob", "c5"), store.BlockBoth), store.ErrBlocked},
			{"carol→bob both", withMode(p2p("carol", "bob", "c6"), store.BlockBoth), nil},
		}
		var wg sync.WaitGroup
		out := make([]res, len(cases))
		for i, c := range cases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := st.AppendMessage(ctx, c.a)
				out[i] = res{c.name, err}
			}()
		}
		wg.Wait()
		for i, c := range cases {
			if !errors.Is(out[i].err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, out[i].err, c.want)
			}
		}
		if _, _, err := st.SetBlocked(ctx, app, "bob", "alice", false, notes(`{}`, "bob")); err != nil {
			t.Fatal(err)
		}
		if _, err := st.AppendMessage(ctx, p2p("alice", "bob", "c7")); err != nil {
			t.Fatalf("after unblocking: %v", err)
		}
	})
}

// One unit of 300 sends to one recipient from 300 senders: the blacklist
// lookups run in chunks of several sizes (256 + 32 + 8 + 4 pairs), and an
// entry in each is found.
func TestBlacklistInLargeCommit(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		const n = 300
		senders := make([]string, n)
		for i := range senders {
			senders[i] = fmt.Sprintf("s%d", i)
		}
		mustUsers(t, st, append(senders, "bob")...)
		blocked := map[string]bool{"s7": true, "s260": true, "s290": true, "s299": true}
		for s := range blocked {
			if _, _, err := st.SetBlocked(ctx, app, "bob", s, true, nil); err != nil {
				t.Fatal(err)
			}
		}
		as := make([]*store.Append, n)
		for i, s := range senders {
			as[i] = p2p(s, "bob", "c"+s)
		}
		rs, err := st.AppendMessages(ctx, as)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range senders {
			if want := blocked[s]; errors.Is(rs[i].Err, store.ErrBlocked) != want || (!want && rs[i].Err != nil) {
				t.Errorf("%s: %v, blocked %v", s, rs[i].Err, want)
			}
		}
	})
}

// Two users asking each other at the same moment end up friends, with no
// request left pending (PostgreSQL runs the two transactions at once).
func TestCrossingRequests(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		for round := range 5 {
			a, b := fmt.Sprintf("a%d", round), fmt.Sprintf("b%d", round)
			mustUsers(t, st, a, b)
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, pair := range [][2]string{{a, b}, {b, a}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _, errs[i] = st.RequestFriend(ctx, app, pair[0], pair[1], "", func(store.RequestOutcome) []store.Notice { return notes(`{}`, pair[0], pair[1]) })
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			fs, _ := st.Friends(ctx, app, a)
			rs, _ := st.FriendRequests(ctx, app, a)
			if len(fs) != 1 || len(rs) != 0 {
				t.Fatalf("round %d: friends %+v, pending %+v", round, fs, rs)
			}
		}
	})
}

func withMode(a *store.Append, mode int) *store.Append {
	a.BlockMode = mode
	return a
}

func TestMutes(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		mustUsers(t, st, "alice")
		if changed, _, err := st.SetMuted(ctx, app, "alice", "g:team", true, nil); err != nil || !changed {
			t.Fatal(changed, err)
		}
		if m, _ := st.Muted(ctx, app, "alice", "g:team"); !m {
			t.Fatal("not muted")
		}
		if m, _ := st.Muted(ctx, app, "alice", "g:other"); m {
			t.Fatal("other muted")
		}
		if l, _ := st.Mutes(ctx, app, "alice"); !slices.Equal(l, []string{"g:team"}) {
			t.Fatalf("mutes %v", l)
		}
		if m, err := st.MutedAmong(ctx, app, "g:team", []string{"alice", "bob"}); err != nil || len(m) != 1 || !m["alice"] {
			t.Fatalf("muted among %v %v", m, err)
		}
		if changed, _, _ := st.SetMuted(ctx, app, "alice", "g:team", false, nil); !changed {
			t.Fatal("unmute changed nothing")
		}
		if m, _ := st.Muted(ctx, app, "alice", "g:team"); m {
			t.Fatal("still muted")
		}
	})
}

// BenchmarkAppendP2PBlacklist is BenchmarkAppendP2P (SQLite) with the
// blacklist check at work: every one of 1,000 users blocks 50 others (none
// of them its correspondents) and the app blocks both ways, so each batch's
// blacklist query finds rows and every append is judged. Compare its
// msgs/s with store_append_sqlite_msgs_per_s of the same run.
func BenchmarkAppendP2PBlacklist(b *testing.B) {
	for _, tc := range []struct {
		name    string
		blocked int
	}{{"none", 0}, {"50_each", 50}} {
		b.Run(tc.name, func(b *testing.B) {
			st, _ := storetest.Open(b, store.DriverSQLite)
			ctx := context.Background()
			const users = 1000
			for i := range users {
				if err := st.CreateUser(ctx, store.User{AppKey: app, Account: fmt.Sprintf("u%d", i)}); err != nil {
					b.Fatal(err)
				}
			}
			for i := range users {
				for k, n := 0, 0; n < tc.blocked; k++ {
					// u_i writes to u_(7i+1); neither it nor those who
					// write to u_i are blocked.
					t := (i + 500 + k) % users
					if t == (7*i+1)%users || (7*t+1)%users == i {
						continue
					}
					n++
					if _, _, err := st.SetBlocked(ctx, app, fmt.Sprintf("u%d", i), fmt.Sprintf("u%d", t), true, nil); err != nil {
						b.Fatal(err)
					}
				}
			}
			var n atomic.Int64
			b.SetParallelism(64)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					a := p2p(fmt.Sprintf("u%d", i%users), fmt.Sprintf("u%d", (i*7+1)%users), fmt.Sprint(i))
					a.BlockMode = store.BlockBoth
					if _, err := st.AppendMessage(ctx, a); err != nil {
						b.Error(err)
						return
					}
				}
			})
			rate := float64(b.N) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "msgs/s")
			if b.N >= 1000 && storetest.BenchResults() {
				fmt.Printf("\nRESULT store_append_blacklist_%s_msgs_per_s %.0f msgs/s\n", tc.name, rate)
			}
		})
	}
}
