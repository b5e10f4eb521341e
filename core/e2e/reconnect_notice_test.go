package e2e

import (
	"encoding/json"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/store"
)

// cutProxy forwards TCP to target until cut; resume listens again on the
// same address, so a client configured with it reconnects.
type cutProxy struct {
	t      testing.TB
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newCutProxy(t testing.TB, target string) *cutProxy {
	p := &cutProxy{t: t, addr: "127.0.0.1:0", target: target}
	p.resume()
	p.addr = p.ln.Addr().String()
	t.Cleanup(p.cut)
	return p
}

func (p *cutProxy) resume() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
}

// cut closes the listener and every connection: the client is offline.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// A device that loses its connection while the other side accepts a friend
// request hears of it after it reconnects (the same client: the SDK asks
// notice.sync after the new login), once and in order.
func TestOfflineDeviceCatchesUpNotices(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	tok := c.users("alice", "bob")
	proxy := newCutProxy(t, c.addr)
	alice := c.client(t, "alice", tok["alice"], "phone")
	alicePC := c.clientWith(t, "alice", tok["alice"], "pc", func(cfg *sdk.Config) {
		cfg.BackoffMin, cfg.BackoffMax = 20*time.Millisecond, 100*time.Millisecond
	}, proxy.addr)
	bob := c.client(t, "bob", tok["bob"], "phone")
	for _, cl := range []*client{alice, alicePC, bob} {
		cl.connected(t)
	}
	ctx := ctx10(t)
	if _, err := alice.RequestFriend(ctx, "bob", "hi"); err != nil {
		t.Fatal(err)
	}
	alicePC.hasNotice(imapi.NoticeFriendRequest, "alice", "bob")

	proxy.cut()
	alicePC.waitUntil("disconnected", 10*time.Second, func(c *client) bool {
		return slices.Contains(c.states, sdk.StateDisconnected)
	})
	if err := bob.AcceptFriend(ctx, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if err := bob.SetFriendAlias(ctx, "alice", "Al"); err != nil {
		t.Fatal(err)
	}
	if err := alice.Block(ctx, "carol-is-unknown"); err == nil {
		t.Fatal("blocking an unknown account worked")
	}
	if err := alice.Mute(ctx, imapi.MuteReq{Account: "bob"}); err != nil {
		t.Fatal(err)
	}
	alice.waitUntil("mute notice", 10*time.Second, func(c *client) bool { return len(c.notices) >= 3 })
	proxy.resume()
	alicePC.waitUntil("notices after reconnect", 10*time.Second, func(c *client) bool { return len(c.notices) >= 3 })
	time.Sleep(100 * time.Millisecond)
	if k := alicePC.noticeSeqs(t); !slices.Equal(k, []string{imapi.NoticeFriendRequest, imapi.NoticeFriendAdded, imapi.NoticeMuteAdded}) {
		t.Fatalf("alice's pc got %v", k)
	}
	if alicePC.LastNoticeSeq() != alice.LastNoticeSeq() {
		t.Fatalf("pc at %d, phone at %d", alicePC.LastNoticeSeq(), alice.LastNoticeSeq())
	}
}

// A device that fell further behind than the notice stream keeps
// (store.NoticeKeep) gets its relationships afresh (EventRelationsReset:
// friends, requests, blacklist, mutes) before the notices still kept, which
// it then gets in order, once each.
func TestNoticeResetReloadsRelations(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	tok := c.users("alice", "bob", "carol", "dan")
	ctx := ctx10(t)
	alice := c.client(t, "alice", tok["alice"], "phone")
	bob := c.client(t, "bob", tok["bob"], "phone")
	alice.connected(t)
	bob.connected(t)
	if _, err := alice.RequestFriend(ctx, "bob", "hi"); err != nil {
		t.Fatal(err)
	}
	if err := bob.AcceptFriend(ctx, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if err := alice.Block(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.RequestFriend(ctx, "dan", ""); err != nil {
		t.Fatal(err)
	}
	alice.waitUntil("own notices", 5*time.Second, func(c *client) bool { return len(c.notices) == 4 })
	seen := alice.LastNoticeSeq()
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}

	// Many system notices while the phone is away: the oldest it lacks are
	// trimmed.
	const extra = store.NoticeKeep + 200
	notes := make([]store.Notice, extra)
	for i := range notes {
		b, _ := json.Marshal(imapi.Notice{Kind: imapi.NoticeSystem, Body: json.RawMessage(`{}`)})
		notes[i] = store.Notice{Account: "alice", Body: b}
	}
	if _, err := c.st.AddNotices(ctx, appKey, notes); err != nil {
		t.Fatal(err)
	}
	last := seen + extra
	back := c.clientWith(t, "alice", tok["alice"], "phone", func(cfg *sdk.Config) { cfg.LastNoticeSeq = seen })
	back.connected(t)
	back.waitUntil("every kept notice", 10*time.Second, func(c *client) bool {
		return len(c.notices) > 0 && c.notices[len(c.notices)-1].Seq == last
	})
	back.mu.Lock()
	defer back.mu.Unlock()
	if len(back.resets) != 1 {
		t.Fatalf("%d relation reloads, want 1", len(back.resets))
	}
	r := back.resets[0]
	if len(r.Friends) != 1 || r.Friends[0].Account != "bob" || !slices.Equal(r.Blacklist, []string{"carol"}) ||
		len(r.Requests) != 1 || r.Requests[0].To != "dan" {
		t.Fatalf("reloaded relations %+v", r)
	}
	first := back.notices[0].Seq
	if first <= seen+1 || last-first+1 < store.NoticeKeep {
		t.Fatalf("first notice after the reload %d (had %d, last %d)", first, seen, last)
	}
	for i, n := range back.notices {
		if n.Seq != first+int64(i) {
			t.Fatalf("notice %d has seq %d: not in order or not once", i, n.Seq)
		}
	}
	if back.LastNoticeSeq() != last {
		t.Fatalf("LastNoticeSeq %d, want %d", back.LastNoticeSeq(), last)
	}
}

// A device whose stored notice position is past the server's newest notice
// (the server's data wiped or restored from an older copy) is not left
// waiting for notices that will never come: it reloads its relationships,
// gets the server's stream from the start, takes the server's position, and
// gets the next change live.
func TestNoticePositionAheadResets(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{})
	tok := c.users("alice", "bob", "carol")
	ctx := ctx10(t)
	alice := c.client(t, "alice", tok["alice"], "phone")
	alice.connected(t)
	if _, err := alice.RequestFriend(ctx, "bob", "hi"); err != nil {
		t.Fatal(err)
	}
	alice.waitUntil("own notice", 5*time.Second, func(c *client) bool { return len(c.notices) == 1 })
	seen := alice.LastNoticeSeq()
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}

	back := c.clientWith(t, "alice", tok["alice"], "phone", func(cfg *sdk.Config) { cfg.LastNoticeSeq = seen + 500 })
	back.connected(t)
	back.waitUntil("the server's stream", 10*time.Second, func(c *client) bool { return len(c.resets) == 1 && len(c.notices) == int(seen) })
	if back.LastNoticeSeq() != seen {
		t.Fatalf("LastNoticeSeq %d, want the server's %d", back.LastNoticeSeq(), seen)
	}
	if err := back.Block(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	back.waitUntil("the next notice", 5*time.Second, func(c *client) bool { return len(c.notices) == int(seen)+1 })
	back.mu.Lock()
	defer back.mu.Unlock()
	r := back.resets[0]
	if len(r.Requests) != 1 || r.Requests[0].To != "bob" {
		t.Fatalf("reloaded relations %+v", r)
	}
	for i, n := range back.notices {
		if n.Seq != int64(i+1) {
			t.Fatalf("notice %d has seq %d: not in order or not once", i, n.Seq)
		}
	}
	if len(back.resets) != 1 {
		t.Fatalf("%d relation reloads, want 1", len(back.resets))
	}
}
