package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/service/room"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

// value is a counter's or gauge's value (summed over labels).
func value(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.Counter != nil {
				v += m.GetCounter().GetValue()
			}
			if m.Gauge != nil {
				v += m.GetGauge().GetValue()
			}
		}
	}
	return v
}

// extraGateway starts another gateway on the core's bus.
func (c *testCore) extraGateway(t *testing.T, id string, mod func(*gateway.Config)) (*gateway.Gateway, *prometheus.Registry) {
	t.Helper()
	gcfg := gateway.Default()
	gcfg.ID = id
	gcfg.Listen = "127.0.0.1:0"
	gcfg.Keys = []gateway.KeyConfig{{ID: c.key.ID, PrivateKey: config.NewSecret(link.EncodeKey(c.key.Private))}}
	gcfg.DrainTime = config.Duration(100 * time.Millisecond)
	if mod != nil {
		mod(&gcfg)
	}
	reg := prometheus.NewRegistry()
	gw, err := gateway.New(gcfg, gateway.Deps{NATS: c.bus.Conn(), Registerer: reg, Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	return gw, reg
}

func (c *testCore) room(t *testing.T, id, owner string) {
	t.Helper()
	if _, err := c.svc.Rooms().Create(context.Background(), appKey, &room.CreateReq{RoomID: id, Owner: owner, MsgRate: 1000, MemberRate: 1000}); err != nil {
		t.Fatal(err)
	}
}

func (c *testCore) roomToken(t testing.TB, room, account string) string {
	t.Helper()
	tok, err := c.svc.Rooms().IssueToken(context.Background(), appKey, room, account, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

func (c *client) roomSeqs() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int64, len(c.roomMsgs))
	for i, m := range c.roomMsgs {
		out[i] = m.Seq
	}
	return out
}

// TestRoomFanout: a room with members on three gateways of one bus. Each
// gateway receives exactly one copy of every room message (its counter of
// room messages from the bus), every member gets every message once and in
// order, batched into fewer frames than messages; the entry points put the
// gateways holding members first; a kick and a close reach the gateways.
func TestRoomFanout(t *testing.T) {
	fast := func(g *gateway.Config) {
		g.AnnounceInterval = config.Duration(100 * time.Millisecond)
		g.RoomBatchInterval = config.Duration(50 * time.Millisecond)
		g.RoomMaxQueued = 256 // every member must get every message, even on a loaded machine
	}
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{gwMod: fast})
	gw2, reg2 := c.extraGateway(t, "gw-e2e-2", fast)
	gw3, reg3 := c.extraGateway(t, "gw-e2e-3", fast)
	regs := []*prometheus.Registry{c.reg, reg2, reg3}
	addrs := []string{c.addr, gw2.Addr().String(), gw3.Addr().String()}

	accounts := []string{"owner", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"}
	tok := c.users(accounts...)
	c.room(t, "hall", "owner")
	ctx := ctx10(t)
	var members []*client
	for i, a := range accounts {
		cl := c.client(t, a, tok[a], "pc", addrs[i%3])
		cl.connected(t)
		r, err := cl.RoomEnter(ctx, "hall", c.roomToken(t, "hall", a), 10)
		if err != nil {
			t.Fatalf("%s enters: %v", a, err)
		}
		if a == "owner" && r.Role != imapi.RoleOwner {
			t.Fatalf("owner's role %q", r.Role)
		}
		members = append(members, cl)
	}
	owner := members[0]

	// Entry points: the three gateways hold 3 members each; all are offered.
	var eps []room.EntryPoint
	waittest.Until(t, 5*time.Second, "3 entry points", func() bool {
		var err error
		eps, err = c.svc.Rooms().EntryPoints(ctx, appKey, "hall")
		return err == nil && len(eps) == 3
	})
	for _, ep := range eps {
		if ep.Members != 3 || len(ep.Addresses) != 1 {
			t.Fatalf("entry point %+v", ep)
		}
	}

	// A bad token and another account's token are refused.
	var ie *imapi.Error
	if _, err := members[1].RoomEnter(ctx, "hall", "bogus.token", 0); !errors.As(err, &ie) || ie.Code != imapi.ErrUnauthorized {
		t.Fatalf("bad token: %v", err)
	}
	if _, err := members[1].RoomEnter(ctx, "hall", c.roomToken(t, "hall", "m2"), 0); !errors.As(err, &ie) || ie.Code != imapi.ErrUnauthorized {
		t.Fatalf("another account's token: %v", err)
	}

	const n = 30
	for i := range n {
		if _, err := owner.RoomSendText(ctx, "hall", fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members {
		m.waitUntil("every room message", 10*time.Second, func(c *client) bool { return len(c.roomMsgs) >= n })
		seqs := m.roomSeqs()
		if len(seqs) != n {
			t.Fatalf("%d room messages, want %d (duplicates?)", len(seqs), n)
		}
		for i, s := range seqs {
			if s != int64(i+1) {
				t.Fatalf("room message %d has seq %d", i, s)
			}
		}
		m.mu.Lock()
		batches := m.batches
		m.mu.Unlock()
		if batches >= n {
			t.Fatalf("%d frames for %d messages: not batched", batches, n)
		}
	}
	for i, reg := range regs {
		if got := value(t, reg, "longlink_gateway_room_messages_total"); got != n {
			t.Fatalf("gateway %d received %v copies of %d room messages, want exactly one each", i+1, got, n)
		}
		if got := value(t, reg, "longlink_gateway_room_deliveries_total"); got != 3*n {
			t.Fatalf("gateway %d delivered %v, want %d", i+1, got, 3*n)
		}
	}

	// Kick m1 (on the second gateway): it hears of it, then gets no more.
	if err := owner.RoomKick(ctx, "hall", "m1", "test", time.Minute); err != nil {
		t.Fatal(err)
	}
	kicked := members[1]
	kicked.waitUntil("kick event", 5*time.Second, func(c *client) bool {
		return len(c.roomEvs) > 0 && c.roomEvs[len(c.roomEvs)-1].Kind == imapi.RoomEventKicked
	})
	if _, err := owner.RoomSendText(ctx, "hall", "after kick"); err != nil {
		t.Fatal(err)
	}
	members[4].waitUntil("message after the kick", 5*time.Second, func(c *client) bool { return len(c.roomMsgs) == n+1 })
	if got := len(kicked.roomSeqs()); got != n {
		t.Fatalf("the kicked member got %d messages, want %d", got, n)
	}
	if _, err := kicked.RoomEnter(ctx, "hall", c.roomToken(t, "hall", "m1"), 0); !errors.As(err, &ie) || ie.Code != imapi.ErrForbidden {
		t.Fatalf("banned member enters: %v", err)
	}
	page, err := members[2].RoomMembers(ctx, "hall", "", 100)
	if err != nil || len(page.Members) != len(accounts)-1 {
		t.Fatalf("members after the kick: %+v %v", page, err)
	}

	// Close: every member hears of it, every gateway drops the room.
	if err := owner.RoomClose(ctx, "hall"); err != nil {
		t.Fatal(err)
	}
	for _, m := range members[2:] {
		m.waitUntil("close event", 5*time.Second, func(c *client) bool {
			return len(c.roomEvs) > 0 && c.roomEvs[len(c.roomEvs)-1].Kind == imapi.RoomEventClosed
		})
	}
	for _, reg := range regs {
		waittest.Until(t, 5*time.Second, "no room or member left", func() bool {
			return value(t, reg, "longlink_gateway_rooms") == 0 && value(t, reg, "longlink_gateway_room_members") == 0
		})
	}
	if _, err := owner.RoomSendText(ctx, "hall", "too late"); !errors.As(err, &ie) || ie.Code != imapi.ErrNotFound {
		t.Fatalf("send to a closed room: %v", err)
	}
}

// rawMember is a Link client that logs in and enters a room, then never
// reads again, with a tiny receive buffer: a slow consumer.
func rawMember(t *testing.T, c *testCore, addr, account, token, room string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	ctx := ctx10(t)
	lc, err := link.Client(ctx, nc, c.key.ID, c.key.Public, link.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	call := func(seq uint32, op imapi.Op, req any) {
		body, _ := json.Marshal(req)
		if err := lc.WriteFrame(link.Frame{Op: op, Seq: seq, Body: body}); err != nil {
			t.Fatal(err)
		}
		for {
			f, err := lc.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if f.IsResponse() && f.Seq == seq {
				if f.Code != imapi.OK {
					t.Fatalf("%s: %v %s", op, f.Code, f.Body)
				}
				return
			}
		}
	}
	call(1, imapi.OpLogin, imapi.LoginReq{AppKey: appKey, Account: account, Token: token, DeviceType: "pc"})
	call(2, imapi.OpRoomEnter, imapi.RoomEnterReq{RoomID: room, Token: c.roomToken(t, room, account)})
	return nc
}

// TestRoomSlowMember: a member that stops reading first skips batches
// (room_max_queued frames behind), then is dropped as a slow consumer (a
// write to it stalls for write_timeout once the kernel buffers are full),
// while the others get every message without waiting for it.
func TestRoomSlowMember(t *testing.T) {
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{gwMod: func(g *gateway.Config) {
		g.SendQueue = 8
		g.WriteTimeout = config.Duration(time.Second)
		g.RequestRate, g.RequestBurst = 5000, 5000
		g.RoomBatchInterval = config.Duration(20 * time.Millisecond)
	}})
	tok := c.users("owner", "a", "b", "slow")
	c.room(t, "busy", "owner")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	owner := c.client(t, "owner", tok["owner"], "pc")
	a := c.client(t, "a", tok["a"], "pc")
	b := c.client(t, "b", tok["b"], "pc")
	for _, m := range []*client{owner, a, b} {
		m.connected(t)
	}
	for acc, m := range map[string]*client{"owner": owner, "a": a, "b": b} {
		if _, err := m.RoomEnter(ctx, "busy", c.roomToken(t, "busy", acc), 0); err != nil {
			t.Fatal(err)
		}
	}
	rawMember(t, c, c.addr, "slow", tok["slow"], "busy")
	if got := value(t, c.reg, "longlink_gateway_room_members"); got != 4 {
		t.Fatalf("%v room members, want 4", got)
	}

	// 13 KiB of incompressible text per message, until the kernel buffers
	// between the gateway and the slow member are full (a few MB) and the
	// member is dropped.
	raw := make([]byte, 10<<10)
	_, _ = rand.Read(raw)
	body, _ := json.Marshal(map[string]string{"text": base64.StdEncoding.EncodeToString(raw)})
	n := 0
	for value(t, c.reg, "longlink_gateway_room_members") == 4 {
		if n >= 4000 {
			t.Fatal("the slow member was never dropped")
		}
		for range 100 {
			start := time.Now()
			if _, err := owner.RoomSend(ctx, "busy", "text", body); err != nil {
				t.Fatalf("send %d: %v", n, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("send %d took %v: the slow member holds the room up", n, d)
			}
			n++
		}
	}
	last := time.Now()
	for _, m := range []*client{owner, a, b} {
		m.waitUntil("every message despite the slow member", 10*time.Second, func(c *client) bool { return len(c.roomMsgs) == n })
	}
	if late := time.Since(last); late > 3*time.Second {
		t.Fatalf("members got the last message %v after it was sent", late)
	}
	waittest.Until(t, 5*time.Second, "3 room members", func() bool { return value(t, c.reg, "longlink_gateway_room_members") == 3 })
	if value(t, c.reg, "longlink_gateway_slow_consumers_total") < 1 {
		t.Fatal("the slow member was not counted as a slow consumer")
	}
	if value(t, c.reg, "longlink_gateway_room_skipped_total") < 1 {
		t.Fatal("no batch was skipped for the member that fell behind")
	}
	// Its presence goes too (the gateway sends room.leave).
	waittest.Until(t, 5*time.Second, "3 members listed", func() bool {
		p, err := owner.RoomMembers(ctx, "busy", "", 10)
		return err == nil && len(p.Members) == 3
	})
}
