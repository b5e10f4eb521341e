package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
	"github.com/longlink/longlink/pkg/config"
)

const app = "app1"

// suite runs fn against every backend.
func suite(t *testing.T, fn func(t *testing.T, st store.Store, cfg store.Config)) {
	for _, d := range storetest.Drivers {
		t.Run(d, func(t *testing.T) {
			st, cfg := storetest.Open(t, d)
			fn(t, st, cfg)
		})
	}
}

func mustUsers(t *testing.T, st store.Store, accounts ...string) {
	t.Helper()
	for _, a := range accounts {
		if err := st.CreateUser(context.Background(), store.User{AppKey: app, Account: a, Name: a}); err != nil {
			t.Fatalf("create %s: %v", a, err)
		}
	}
}

var idSeq struct {
	sync.Mutex
	n int
}

func nextID() string {
	idSeq.Lock()
	defer idSeq.Unlock()
	idSeq.n++
	return fmt.Sprintf("m%08d", idSeq.n)
}

func p2p(from, to, cmid string, mentions ...string) *store.Append {
	return &store.Append{Message: store.Message{
		AppKey: app, ConvID: imapi.P2PConvID(from, to), ConvType: imapi.ConvP2P, MsgID: nextID(), Sender: from,
		To: to, ClientMsgID: cmid, Type: "text", Body: []byte(`{"text":"hi"}`), Mentions: mentions, Time: time.Now().UnixMilli(),
	}, Peer: to}
}

func grp(from, group, cmid string, mentions ...string) *store.Append {
	return &store.Append{Message: store.Message{
		AppKey: app, ConvID: imapi.GroupConvID(group), ConvType: imapi.ConvGroup, MsgID: nextID(), Sender: from,
		To: group, ClientMsgID: cmid, Type: "text", Body: []byte(`{"text":"hi"}`), Mentions: mentions, Time: time.Now().UnixMilli(),
	}, GroupID: group}
}

func TestAppsUsersTokens(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		if _, err := st.App(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown app: %v", err)
		}
		a := store.App{AppKey: app, Secret: "s3cret-s3cret-s3cret", Devices: imapi.DevicesKickSameType, HeartbeatSec: 30}
		if err := st.PutApp(ctx, a); err != nil {
			t.Fatal(err)
		}
		a.HeartbeatSec = 45
		if err := st.PutApp(ctx, a); err != nil {
			t.Fatal(err)
		}
		if got, err := st.App(ctx, app); err != nil || got != a {
			t.Fatalf("app = %+v, %v", got, err)
		}
		mustUsers(t, st, "alice")
		if err := st.CreateUser(ctx, store.User{AppKey: app, Account: "alice"}); !errors.Is(err, store.ErrExists) {
			t.Fatalf("duplicate user: %v", err)
		}
		name, yes := "Alice A.", true
		u, err := st.UpdateUser(ctx, app, "alice", store.UserUpdate{Name: &name, Disabled: &yes})
		if err != nil || u.Name != name || !u.Disabled {
			t.Fatalf("update = %+v, %v", u, err)
		}
		if _, err := st.UpdateUser(ctx, app, "ghost", store.UserUpdate{Name: &name}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("update ghost: %v", err)
		}
		mustUsers(t, st, "bob")
		ex, err := st.UsersExist(ctx, app, []string{"alice", "bob", "ghost"})
		if err != nil || ex["alice"] || !ex["bob"] || ex["ghost"] {
			t.Fatalf("exist = %v, %v (disabled alice must not count)", ex, err)
		}

		now := time.Now()
		h1, h2 := []byte("hash-one-000000000000000000000000"), []byte("hash-two-000000000000000000000000")
		if err := st.PutToken(ctx, app, "ghost", h1, now.Add(time.Hour), false); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("token for ghost: %v", err)
		}
		if err := st.PutToken(ctx, app, "bob", h1, now.Add(time.Hour), false); err != nil {
			t.Fatal(err)
		}
		if err := st.PutToken(ctx, app, "bob", h2, now.Add(time.Hour), false); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			hash []byte
			at   time.Time
			want bool
		}{
			{"first token", h1, now, true},
			{"second token", h2, now, true},
			{"wrong hash", []byte("other"), now, false},
			{"expired", h1, now.Add(2 * time.Hour), false},
		} {
			if ok, err := st.CheckToken(ctx, app, "bob", tc.hash, tc.at); err != nil || ok != tc.want {
				t.Errorf("%s: %v, %v", tc.name, ok, err)
			}
		}
		if err := st.PutToken(ctx, app, "bob", h2, now.Add(time.Hour), true); err != nil {
			t.Fatal(err)
		}
		if ok, _ := st.CheckToken(ctx, app, "bob", h1, now); ok {
			t.Fatal("revoked token still valid")
		}
	})
}

func TestAppendSeqDedupeAndDurability(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, cfg store.Config) {
		ctx := context.Background()
		mustUsers(t, st, "alice", "bob")
		r1, err := st.AppendMessage(ctx, p2p("alice", "bob", "c1"))
		if err != nil || r1.Seq != 1 || r1.Duplicate || !slices.Equal(r1.Members, []string{"alice", "bob"}) {
			t.Fatalf("first = %+v, %v", r1, err)
		}
		r2, err := st.AppendMessage(ctx, p2p("bob", "alice", "c1")) // same cmid, other sender: not a duplicate
		if err != nil || r2.Seq != 2 || r2.Duplicate {
			t.Fatalf("second = %+v, %v", r2, err)
		}
		again, err := st.AppendMessage(ctx, p2p("alice", "bob", "c1"))
		if err != nil || !again.Duplicate || again.Seq != 1 || again.MsgID != r1.MsgID {
			t.Fatalf("dup = %+v, %v", again, err)
		}
		// Concurrent duplicates land in one batch or several: one row either way.
		var wg sync.WaitGroup
		res := make([]store.AppendResult, 20)
		for i := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := st.AppendMessage(ctx, p2p("alice", "bob", "same"))
				if err != nil {
					t.Error(err)
				}
				res[i] = r
			}()
		}
		wg.Wait()
		for _, r := range res {
			if r.Seq != res[0].Seq || r.MsgID != res[0].MsgID {
				t.Fatalf("concurrent dups differ: %+v vs %+v", r, res[0])
			}
		}
		ms, more, err := st.Messages(ctx, app, imapi.P2PConvID("alice", "bob"), 0, 100)
		if err != nil || more || len(ms) != 3 {
			t.Fatalf("messages = %d (more %v), %v", len(ms), more, err)
		}
		for i, m := range ms {
			if m.Seq != int64(i+1) {
				t.Fatalf("seq %d at %d", m.Seq, i)
			}
		}
		if string(ms[0].Body) != `{"text":"hi"}` || ms[0].Sender != "alice" || ms[0].To != "bob" {
			t.Fatalf("stored = %+v", ms[0])
		}
		// Acked means durable: a reopened store has every message.
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		st2, err := store.Open(ctx, cfg, store.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		defer st2.Close()
		ms, _, err = st2.Messages(ctx, app, imapi.P2PConvID("alice", "bob"), 1, 100)
		if err != nil || len(ms) != 2 || ms[0].Seq != 2 {
			t.Fatalf("after reopen = %+v, %v", ms, err)
		}
		if r, err := st2.AppendMessage(ctx, p2p("alice", "bob", "c1")); err != nil || !r.Duplicate || r.Seq != 1 {
			t.Fatalf("dup after reopen = %+v, %v", r, err)
		}
		if r, err := st2.AppendMessage(ctx, p2p("alice", "bob", "c9")); err != nil || r.Seq != 4 {
			t.Fatalf("next after reopen = %+v, %v", r, err)
		}
	})
}

func TestAppendRejects(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		mustUsers(t, st, "alice", "bob", "carol")
		yes := true
		if _, err := st.UpdateUser(ctx, app, "carol", store.UserUpdate{Disabled: &yes}); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateGroup(ctx, store.Group{AppKey: app, GroupID: "g1", Name: "g", Owner: "alice", Members: []string{"alice", "bob"}}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			a    *store.Append
			want error
		}{
			{"unknown peer", p2p("alice", "ghost", "x1"), store.ErrNotFound},
			{"disabled peer", p2p("alice", "carol", "x2"), store.ErrNotFound},
			{"non-member in group", grp("carol", "g1", "x3"), store.ErrForbidden},
			{"unknown group", grp("alice", "nog", "x4"), store.ErrForbidden},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := st.AppendMessage(ctx, tc.a); !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
			})
		}
		// A rejected append in a batch does not disturb the others.
		r, err := st.AppendMessage(ctx, grp("bob", "g1", "ok"))
		if err != nil || r.Seq != 1 || !slices.Equal(r.Members, []string{"alice", "bob"}) {
			t.Fatalf("member send = %+v, %v", r, err)
		}
	})
}

func TestConcurrentSeqMonotonic(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		mustUsers(t, st, "a", "b", "c", "d")
		pairs := [][2]string{{"a", "b"}, {"b", "c"}, {"c", "d"}}
		const workers, per = 24, 25
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					p := pairs[(w+i)%len(pairs)]
					if _, err := st.AppendMessage(ctx, p2p(p[0], p[1], fmt.Sprintf("w%d-%d", w, i))); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		total := 0
		for _, p := range pairs {
			ms, _, err := st.Messages(ctx, app, imapi.P2PConvID(p[0], p[1]), 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range ms {
				if m.Seq != int64(i+1) {
					t.Fatalf("%v: seq %d at index %d (gap or duplicate)", p, m.Seq, i)
				}
			}
			total += len(ms)
		}
		if total != workers*per {
			t.Fatalf("stored %d, want %d", total, workers*per)
		}
	})
}

func TestUnreadMentionsAndConversations(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		mustUsers(t, st, "alice", "bob", "carol")
		conv := imapi.P2PConvID("alice", "bob")
		for i, m := range []*store.Append{p2p("alice", "bob", "1"), p2p("alice", "bob", "2", "bob"), p2p("alice", "bob", "3")} {
			m.Time = int64(1000 + i)
			if _, err := st.AppendMessage(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		g := store.Group{AppKey: app, GroupID: "g1", Name: "team", Owner: "carol", Members: []string{"carol", "bob", "alice"}}
		if err := st.CreateGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
		gm := grp("carol", "g1", "g-1", "bob", "alice")
		gm.Time = 2000
		if _, err := st.AppendMessage(ctx, gm); err != nil {
			t.Fatal(err)
		}
		cs, err := st.Conversations(ctx, app, "bob", 10)
		if err != nil || len(cs) != 2 {
			t.Fatalf("bob convs = %+v, %v", cs, err)
		}
		if cs[0].ConvID != imapi.GroupConvID("g1") || cs[0].Peer != "g1" || cs[0].Unread != 1 || cs[0].Mentions != 1 {
			t.Fatalf("group conv first = %+v", cs[0])
		}
		c := cs[1]
		if c.ConvID != conv || c.Peer != "alice" || c.LastSeq != 3 || c.ReadSeq != 0 || c.Unread != 3 || c.Mentions != 1 ||
			c.Last == nil || c.Last.Seq != 3 || c.Last.ClientMsgID != "3" {
			t.Fatalf("bob p2p = %+v last %+v", c, c.Last)
		}
		// The sender has read its own messages.
		cs, _ = st.Conversations(ctx, app, "alice", 10)
		if len(cs) != 2 || cs[1].Unread != 0 || cs[1].ReadSeq != 3 || cs[0].Mentions != 1 {
			t.Fatalf("alice convs = %+v", cs)
		}
		for _, tc := range []struct {
			name             string
			seq              int64
			wantRead, unread int64
			mentions         int64
		}{
			{"read first", 1, 1, 2, 1},
			{"read past mention", 2, 2, 1, 0},
			{"never backwards", 1, 2, 1, 0},
			{"clamped to last", 99, 3, 0, 0},
		} {
			got, err := st.MarkRead(ctx, app, "bob", conv, tc.seq)
			if err != nil || got != tc.wantRead {
				t.Fatalf("%s: read = %d, %v", tc.name, got, err)
			}
			cs, _ := st.Conversations(ctx, app, "bob", 10)
			if cs[1].Unread != tc.unread || cs[1].Mentions != tc.mentions || cs[1].ReadSeq != tc.wantRead {
				t.Fatalf("%s: state = %+v", tc.name, cs[1])
			}
		}
		if _, err := st.MarkRead(ctx, app, "carol", conv, 1); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("carol has no such conversation: %v", err)
		}
		// Bob's reply resets his unread and counts for alice.
		if _, err := st.AppendMessage(ctx, p2p("alice", "bob", "4")); err != nil {
			t.Fatal(err)
		}
		if _, err := st.AppendMessage(ctx, p2p("bob", "alice", "5")); err != nil {
			t.Fatal(err)
		}
		cs, _ = st.Conversations(ctx, app, "bob", 10)
		if cs[0].ConvID != conv || cs[0].Unread != 0 || cs[0].ReadSeq != 5 {
			t.Fatalf("bob after reply = %+v", cs[0])
		}
		cs, _ = st.Conversations(ctx, app, "alice", 10)
		if cs[0].ConvID != conv || cs[0].Unread != 1 || cs[0].Peer != "bob" {
			t.Fatalf("alice after reply = %+v", cs[0])
		}
	})
}

func TestHistoryAndRecall(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		mustUsers(t, st, "alice", "bob")
		conv := imapi.P2PConvID("alice", "bob")
		var ids []string
		for i := range 7 {
			r, err := st.AppendMessage(ctx, p2p("alice", "bob", fmt.Sprint(i)))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.MsgID)
		}
		for _, tc := range []struct {
			name     string
			before   int64
			limit    int
			wantSeqs []int64
			more     bool
		}{
			{"newest page", 0, 3, []int64{7, 6, 5}, true},
			{"next page", 5, 3, []int64{4, 3, 2}, true},
			{"last page", 2, 3, []int64{1}, false},
		} {
			ms, more, err := st.History(ctx, app, conv, tc.before, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			for _, m := range ms {
				seqs = append(seqs, m.Seq)
			}
			if !slices.Equal(seqs, tc.wantSeqs) || more != tc.more {
				t.Fatalf("%s: %v more=%v", tc.name, seqs, more)
			}
		}
		ms, more, _ := st.Messages(ctx, app, conv, 5, 10)
		if len(ms) != 2 || more || ms[0].Seq != 6 {
			t.Fatalf("sync after 5: %d %v", len(ms), more)
		}
		if _, err := st.MessageByID(ctx, app, "p:x:y", ids[2]); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("message in other conv: %v", err)
		}
		if err := st.Recall(ctx, app, conv, ids[2]); err != nil {
			t.Fatal(err)
		}
		m, err := st.MessageByID(ctx, app, conv, ids[2])
		if err != nil || !m.Recalled || len(m.Body) != 0 || m.Seq != 3 {
			t.Fatalf("recalled = %+v, %v", m, err)
		}
		if err := st.Recall(ctx, app, conv, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("recall unknown: %v", err)
		}
	})
}

func TestGroups(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, _ store.Config) {
		ctx := context.Background()
		g := store.Group{AppKey: app, GroupID: "g1", Name: "team", Owner: "alice", Members: []string{"alice", "bob"}}
		if err := st.CreateGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateGroup(ctx, g); !errors.Is(err, store.ErrExists) {
			t.Fatalf("recreate: %v", err)
		}
		added, err := st.AddMembers(ctx, app, "g1", []string{"bob", "carol", "dave"})
		if err != nil || !slices.Equal(added, []string{"carol", "dave"}) {
			t.Fatalf("add = %v, %v", added, err)
		}
		removed, err := st.RemoveMembers(ctx, app, "g1", []string{"dave", "zed"})
		if err != nil || !slices.Equal(removed, []string{"dave"}) {
			t.Fatalf("remove = %v, %v", removed, err)
		}
		got, err := st.Group(ctx, app, "g1")
		if err != nil || got.Owner != "alice" || got.Name != "team" || !slices.Equal(got.Members, []string{"alice", "bob", "carol"}) {
			t.Fatalf("group = %+v, %v", got, err)
		}
		gs, err := st.GroupsOf(ctx, app, "carol")
		if err != nil || len(gs) != 1 || gs[0].GroupID != "g1" || len(gs[0].Members) != 3 {
			t.Fatalf("groups of carol = %+v, %v", gs, err)
		}
		if err := st.DismissGroup(ctx, app, "g1"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Group(ctx, app, "g1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("dismissed group: %v", err)
		}
		if _, err := st.AddMembers(ctx, app, "g1", []string{"eve"}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("add to dismissed: %v", err)
		}
		if gs, _ := st.GroupsOf(ctx, app, "carol"); len(gs) != 0 {
			t.Fatalf("dismissed group still listed: %+v", gs)
		}
	})
}

// Several service nodes on one PostgreSQL database share sequences safely.
func TestPostgresSeveralNodes(t *testing.T) {
	st1, cfg := storetest.Open(t, store.DriverPostgres)
	st2, err := store.Open(context.Background(), cfg, store.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	mustUsers(t, st1, "a", "b")
	ctx := context.Background()
	var wg sync.WaitGroup
	for n, st := range []store.Store{st1, st2} {
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					from, to := "a", "b"
					if i%2 == 1 {
						from, to = "b", "a"
					}
					if _, err := st.AppendMessage(ctx, p2p(from, to, fmt.Sprintf("n%d-w%d-%d", n, w, i))); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	ms, _, err := st1.Messages(ctx, app, imapi.P2PConvID("a", "b"), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 400 {
		t.Fatalf("stored %d, want 400", len(ms))
	}
	for i, m := range ms {
		if m.Seq != int64(i+1) {
			t.Fatalf("seq %d at %d", m.Seq, i)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*store.Config)
		want string
	}{
		{"sqlite needs path", func(c *store.Config) {}, "store.path"},
		{"postgres needs dsn", func(c *store.Config) { c.Driver = "postgres" }, "store.dsn"},
		{"unknown driver", func(c *store.Config) { c.Driver = "mysql" }, "store.driver"},
		{"bad synchronous", func(c *store.Config) { c.Path = "x"; c.Synchronous = "off" }, "store.synchronous"},
		{"batch range", func(c *store.Config) { c.Path = "x"; c.MaxBatch = -1 }, "store.max_batch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := store.Default()
			tc.mut(&c)
			err := c.Validate()
			if err == nil || !contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestAppendShedsEarly: with a commit queue over its latency budget, appends
// are refused at once with ErrBusy and nothing of them is stored; resent
// with the same client_msg_id (what the SDK does) every message ends up
// stored exactly once, in a gap-free sequence.
func TestAppendShedsEarly(t *testing.T) {
	for _, d := range storetest.Drivers {
		t.Run(d, func(t *testing.T) {
			cfg := storetest.Config(t, d)
			cfg.MaxQueueDelay = config.Duration(time.Nanosecond) // any estimate is over budget
			st, err := store.Open(context.Background(), cfg, store.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ctx := context.Background()
			mustUsers(t, st, "a", "b")
			const senders, per = 256, 4
			var busy atomic.Int64
			var wg sync.WaitGroup
			for w := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range per {
						a := p2p("a", "b", fmt.Sprintf("w%d-%d", w, i))
						for {
							res, err := st.AppendMessage(ctx, a)
							if errors.Is(err, store.ErrBusy) {
								busy.Add(1)
								time.Sleep(time.Millisecond)
								continue
							}
							if err != nil {
								t.Error(err)
								return
							}
							if res.Duplicate {
								t.Errorf("%s: a shed append was stored", a.ClientMsgID)
							}
							break
						}
					}
				}()
			}
			wg.Wait()
			// One SQLite writer always sheds here; PostgreSQL's four
			// committers may keep up (the shedder's arithmetic is
			// TestShedderAdmit's).
			if busy.Load() == 0 && d == store.DriverSQLite {
				t.Fatal("no append was shed with a 1ns budget and 256 concurrent senders")
			}
			ms, _, err := st.Messages(ctx, app, imapi.P2PConvID("a", "b"), 0, 2*senders*per)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != senders*per {
				t.Fatalf("stored %d, want %d", len(ms), senders*per)
			}
			for i, m := range ms {
				if m.Seq != int64(i+1) {
					t.Fatalf("seq %d at index %d", m.Seq, i)
				}
			}
			t.Logf("%d refusals", busy.Load())
		})
	}
}

// TestAppendUnitsStayWhole: the appends of one AppendMessages call are
// stored in one transaction in their order, never split, whatever other
// units commit at once (PostgreSQL: several committers on two nodes): in a
// shared conversation each unit's messages get consecutive sequences, in
// the unit's order. A refused append refuses only itself.
func TestAppendUnitsStayWhole(t *testing.T) {
	suite(t, func(t *testing.T, st store.Store, cfg store.Config) {
		mustUsers(t, st, "a", "b")
		sts := []store.Store{st}
		if cfg.Driver == store.DriverPostgres {
			st2, err := store.Open(context.Background(), cfg, store.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			defer st2.Close()
			sts = append(sts, st2)
		}
		ctx := context.Background()
		const senders, units, size = 6, 12, 7
		var wg sync.WaitGroup
		for w := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := sts[w%len(sts)]
				for u := range units {
					as := make([]*store.Append, size)
					for i := range as {
						as[i] = p2p("a", "b", fmt.Sprintf("w%d-u%d-%d", w, u, i))
					}
					rs, err := s.AppendMessages(ctx, as)
					if err != nil {
						t.Error(err)
						return
					}
					for i := 1; i < size; i++ {
						if rs[i].Err != nil || rs[i].Seq != rs[i-1].Seq+1 {
							t.Errorf("unit w%d-u%d: append %d got seq %d after %d (%v): split or reordered", w, u, i, rs[i].Seq, rs[i-1].Seq, rs[i].Err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		// One append of a unit refused (unknown peer), the others stored.
		rs, err := st.AppendMessages(ctx, []*store.Append{p2p("a", "b", "x1"), p2p("a", "nobody", "x2"), p2p("a", "b", "x3")})
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Err != nil || !errors.Is(rs[1].Err, store.ErrNotFound) || rs[2].Err != nil || rs[2].Seq != rs[0].Seq+1 {
			t.Fatalf("mixed unit: %+v", rs)
		}
		// A resent unit is answered from the first: same sequences, duplicates.
		again, err := st.AppendMessages(ctx, []*store.Append{p2p("a", "b", "x1"), p2p("a", "b", "x3")})
		if err != nil || !again[0].Duplicate || again[0].Seq != rs[0].Seq || again[1].Seq != rs[2].Seq {
			t.Fatalf("resent unit: %+v, %v", again, err)
		}
	})
}

// TestPostgresLockTimeout: a transaction elsewhere that holds a
// conversation's row lock (a node paused in the middle of a commit) does
// not stop this store's appends to it for longer than lock_timeout: they
// fail with ErrUnavailable (retryable), and succeed once the lock is gone.
func TestPostgresLockTimeout(t *testing.T) {
	cfg := storetest.Config(t, store.DriverPostgres)
	cfg.LockTimeout = config.Duration(300 * time.Millisecond)
	st, err := store.Open(context.Background(), cfg, store.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mustUsers(t, st, "a", "b")
	ctx := context.Background()
	if _, err := st.AppendMessage(ctx, p2p("a", "b", "c1")); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", cfg.DSN.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE conversations SET last_time = last_time WHERE appkey = $1 AND conv_id = $2`, app, imapi.P2PConvID("a", "b")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = st.AppendMessage(ctx, p2p("a", "b", "c2"))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("append behind a held lock: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the append waited %v for the lock (lock_timeout 300ms)", took)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if r, err := st.AppendMessage(ctx, p2p("a", "b", "c2")); err != nil || r.Seq != 2 {
		t.Fatalf("append after the lock went: %+v, %v", r, err)
	}
}
