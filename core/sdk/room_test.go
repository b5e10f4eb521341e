package sdk

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/service/room"
	"github.com/longlink/longlink/pkg/config"
)

// A chatroom on a single core node: its entry points are the node's own
// Link and WebLink addresses; a Link member and a WebLink member both get
// the room's batched messages and events through the SDK.
func TestRoomBothTransports(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := core.Default()
	cfg.DataDir = t.TempDir()
	cfg.DebugListen = ""
	cfg.Roles = core.Roles{Services: true, Gateway: true, WebLink: true}
	cfg.Bus.Listen = ""
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.Keys = []gateway.KeyConfig{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}
	cfg.WebLink.Listen = "127.0.0.1:0"
	cfg.Service.Apps = []service.AppConfig{{AppKey: "demo", Secret: config.NewSecret("app-api-secret-0123456789")}}
	node, err := core.New(cfg, core.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = node.Shutdown(context.Background()) }()
	users, err := service.Seed(ctx, node.Store(), "demo", []service.SeedUser{{Account: "alice"}, {Account: "bob"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	svc := node.Service()
	if _, err := svc.Rooms().Create(ctx, "demo", &room.CreateReq{RoomID: "stage", Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"link://" + node.LinkAddr(), "weblink://" + node.WebLinkAddr()}
	var eps []room.EntryPoint
	for len(eps) == 0 || !slices.Equal(eps[0].Addresses, want) {
		if ctx.Err() != nil {
			t.Fatalf("entry points %+v, want one gateway at %v", eps, want)
		}
		time.Sleep(20 * time.Millisecond)
		eps, _ = svc.Rooms().EntryPoints(ctx, "demo", "stage")
	}

	alice, err := New(Config{Addresses: []string{node.LinkAddr()}, ServerKeys: map[string][]byte{key.ID: key.Public},
		AppKey: "demo", Account: "alice", Token: users[0].Token})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := New(Config{Addresses: []string{"http://" + node.WebLinkAddr()}, Dialer: WebLinkDialer(),
		AppKey: "demo", Account: "bob", Token: users[1].Token})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{alice, bob} {
		c.Start()
		defer c.Close()
		if err := c.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for acc, c := range map[string]*Client{"alice": alice, "bob": bob} {
		tok, err := svc.Rooms().IssueToken(ctx, "demo", "stage", acc, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.RoomEnter(ctx, "stage", tok.Token, 0); err != nil {
			t.Fatalf("%s enters: %v", acc, err)
		}
	}
	for i := range 3 {
		if _, err := alice.RoomSendText(ctx, "stage", string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.RoomMute(ctx, "stage", "bob", true, time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*Client{"link": alice, "weblink": bob} {
		var got []imapi.RoomMessage
		muted := false
		for len(got) < 3 || !muted {
			select {
			case ev := <-c.Events():
				if b, ok := RoomBatchOf(ev); ok {
					got = append(got, b.Messages...)
				}
				if re, ok := RoomEventOf(ev); ok && re.Kind == imapi.RoomEventMuted && re.Account == "bob" {
					muted = true
				}
			case <-ctx.Done():
				t.Fatalf("%s member: %d room messages, muted event %v", name, len(got), muted)
			}
		}
		if len(got) != 3 || got[0].Seq != 1 || got[2].Seq != 3 {
			t.Fatalf("%s member got %+v", name, got)
		}
	}
	if _, err := bob.RoomSendText(ctx, "stage", "muted?"); err == nil {
		t.Fatal("a muted member sent")
	}
	page, err := bob.RoomMembers(ctx, "stage", "", 10)
	if err != nil || len(page.Members) != 2 {
		t.Fatalf("members %+v %v", page, err)
	}
}

// FuzzRoomPush: room pushes are server bytes the SDK decodes; any bytes
// decode or are refused without a panic, and a decoded batch keeps its
// messages. The delivery loop's room handling (dedupe by seq, forgetting
// closed rooms) takes them too, and never emits a message twice.
func FuzzRoomPush(f *testing.F) {
	f.Add(`{"room_id":"r","messages":[{"room_id":"r","seq":1,"body":{}}]}`)
	f.Add(`{"room_id":"r","kind":"closed"}`)
	c, err := New(Config{Addresses: []string{"x:1"}, Dialer: WebLinkDialer(), AppKey: "a", Account: "me", Token: "t"})
	if err != nil {
		f.Fatal(err)
	}
	d := c.loop
	f.Fuzz(func(t *testing.T, body string) {
		clear(d.rooms)
		for range 2 {
			d.onRoomBatch(&Incoming{Op: imapi.OpRoomMessages, Push: true, Body: []byte(body)})
		}
		d.onRoomEvent(&Incoming{Op: imapi.OpRoomEvent, Push: true, Body: []byte(body)})
		seen := map[string]map[int64]bool{}
		for _, ev := range drainEvents(c) {
			// A batch without a room passes through untouched (there is
			// no room to keep a position for).
			if b, ok := RoomBatchOf(ev); ok && b.RoomID != "" {
				for _, m := range b.Messages {
					if seen[b.RoomID][m.Seq] {
						t.Fatalf("room %q seq %d emitted twice", b.RoomID, m.Seq)
					}
					if seen[b.RoomID] == nil {
						seen[b.RoomID] = map[int64]bool{}
					}
					seen[b.RoomID][m.Seq] = true
				}
			}
		}
		if b, ok := RoomBatchOf(Event{Kind: EventPush, Op: imapi.OpRoomMessages, Body: []byte(body)}); ok {
			for _, m := range b.Messages {
				_ = m.Seq
			}
		}
		_, _ = RoomEventOf(Event{Kind: EventPush, Op: imapi.OpRoomEvent, Body: []byte(body)})
		if _, ok := RoomBatchOf(Event{Kind: EventPush, Op: imapi.OpRoomEvent, Body: []byte(body)}); ok {
			t.Fatal("an event decoded as a batch")
		}
	})
}

// The delivery loop's room state: batches drop what was delivered, pushes
// are held while the room is entered again and come after the history,
// and a history that starts past the next seq is a gap.
func TestRoomRejoinDedupe(t *testing.T) {
	c, err := New(Config{Addresses: []string{"x:1"}, Dialer: WebLinkDialer(), AppKey: "a", Account: "me", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	var rejoins []RoomRejoin
	d := c.loop
	handle := func(m loopMsg) {
		for _, ev := range handled(c, m) {
			if b, ok := RoomBatchOf(ev); ok {
				for _, m := range b.Messages {
					got = append(got, m.Seq)
				}
			}
			if ev.Kind == EventRoom {
				rejoins = append(rejoins, *ev.Room)
			}
		}
	}
	batch := func(seqs ...int64) pushed {
		b := imapi.RoomBatch{RoomID: "r"}
		for _, s := range seqs {
			b.Messages = append(b.Messages, imapi.RoomMessage{RoomID: "r", Seq: s})
		}
		body, _ := json.Marshal(b)
		return pushed{Incoming{Op: imapi.OpRoomMessages, Push: true, Body: body}}
	}
	hist := func(seqs ...int64) imapi.RoomEnterResp {
		var r imapi.RoomEnterResp
		for _, s := range seqs {
			r.History = append(r.History, imapi.RoomMessage{RoomID: "r", Seq: s})
		}
		return r
	}
	c.rooms["r"] = "tok"
	handle(batch(1, 2))
	handle(batch(2, 3)) // 2 again
	d.room("r").rejoining = 7
	handle(batch(6, 7)) // held
	if !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("before the re-entry answer: %v", got)
	}
	handle(rejoinResult{room: "r", gen: 6, resp: hist(1)}) // a stale generation
	handle(rejoinResult{room: "r", gen: 7, resp: hist(2, 3, 4, 5, 6)})
	if !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6, 7}) || len(rejoins) != 1 || rejoins[0].Gap {
		t.Fatalf("after the re-entry: %v %+v", got, rejoins)
	}
	d.room("r").rejoining = 8
	handle(rejoinResult{room: "r", gen: 8, resp: hist(10, 11)})
	if !slices.Equal(got[7:], []int64{10, 11}) || !rejoins[1].Gap {
		t.Fatalf("a gap: %v %+v", got, rejoins)
	}
	d.room("r").rejoining = 9
	handle(rejoinResult{room: "r", gen: 9, err: &imapi.Error{Code: imapi.ErrNotFound}})
	if len(rejoins) != 3 || rejoins[2].Err == nil || len(c.Rooms()) != 0 {
		t.Fatalf("a closed room: %+v rooms %v", rejoins, c.Rooms())
	}
}

// The app's own enter: the gateway may deliver batches before the answer,
// with messages the answer's history has; they are held until the answer
// and go out after it without those. A refused enter drops what was held
// for a room the client is not in, and keeps it for one it is in; an enter
// during a re-entry holds the pushes until both are answered.
func TestRoomEnterHoldsEarlyBatches(t *testing.T) {
	c, err := New(Config{Addresses: []string{"x:1"}, Dialer: WebLinkDialer(), AppKey: "a", Account: "me", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]int64{}
	d := c.loop
	handle := func(m loopMsg) {
		for _, ev := range handled(c, m) {
			if b, ok := RoomBatchOf(ev); ok {
				for _, m := range b.Messages {
					got[b.RoomID] = append(got[b.RoomID], m.Seq)
				}
			}
		}
	}
	batch := func(room string, seqs ...int64) pushed {
		b := imapi.RoomBatch{RoomID: room}
		for _, s := range seqs {
			b.Messages = append(b.Messages, imapi.RoomMessage{RoomID: room, Seq: s})
		}
		body, _ := json.Marshal(b)
		return pushed{Incoming{Op: imapi.OpRoomMessages, Push: true, Body: body}}
	}

	handle(roomEntering{room: "r"})
	handle(batch("r", 3, 4)) // 3 is in the answer's history
	if len(got["r"]) != 0 {
		t.Fatalf("delivered before the answer: %v", got["r"])
	}
	c.rooms["r"] = "tok"
	handle(roomEntered{room: "r", last: 3})
	handle(batch("r", 4, 5))
	if !slices.Equal(got["r"], []int64{4, 5}) {
		t.Fatalf("after the answer: %v, want [4 5]", got["r"])
	}

	handle(roomEntering{room: "q"})
	handle(batch("q", 1))
	handle(roomEntered{room: "q", failed: true})
	if _, kept := d.rooms["q"]; kept || len(got["q"]) != 0 {
		t.Fatalf("a refused room: delivered %v, kept %v", got["q"], kept)
	}
	handle(roomEntering{room: "r"}) // entering again, with a token refused
	handle(batch("r", 6))
	handle(roomEntered{room: "r", failed: true})
	if !slices.Equal(got["r"], []int64{4, 5, 6}) {
		t.Fatalf("a refused enter of a room the client is in: %v", got["r"])
	}

	rt := d.room("r")
	rt.rejoining, rt.entering = 7, 1
	handle(batch("r", 8, 9))
	handle(rejoinResult{room: "r", gen: 7, resp: imapi.RoomEnterResp{History: []imapi.RoomMessage{{Seq: 7}, {Seq: 8}}}})
	if !slices.Equal(got["r"], []int64{4, 5, 6, 7, 8}) {
		t.Fatalf("re-entered while entering: %v", got["r"])
	}
	handle(roomEntered{room: "r", last: 8})
	if !slices.Equal(got["r"], []int64{4, 5, 6, 7, 8, 9}) {
		t.Fatalf("both answered: %v", got["r"])
	}
}

// A connection re-enters the rooms the client was in when it came up, with
// their newest tokens: not a room the app entered after that (its answer
// can reach the client before the loop starts the re-entries), nor one it
// left meanwhile.
func TestRejoinOnlyRoomsFromBefore(t *testing.T) {
	c, err := New(Config{Addresses: []string{"x:1"}, Dialer: WebLinkDialer(), AppKey: "a", Account: "me", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.rooms["kept"] = "old"
	c.rooms["left"] = "tok"
	start := rejoinStart{gen: 3, rooms: map[string]string{"kept": "old", "left": "tok"}}
	c.rooms["kept"] = "fresh"  // the token was renewed
	c.rooms["entered"] = "tok" // the app entered it on this connection
	delete(c.rooms, "left")    // and left this one
	start.handle(c.loop)
	if rt := c.loop.rooms["kept"]; rt == nil || rt.rejoining != 3 {
		t.Fatalf("room kept is not re-entered: %+v", rt)
	}
	if !maps.Equal(start.rooms, map[string]string{"kept": "fresh"}) {
		t.Fatalf("re-entered %v, want kept with its newest token", start.rooms)
	}
	for _, id := range []string{"entered", "left"} {
		if rt := c.loop.rooms[id]; rt != nil && rt.rejoining != 0 {
			t.Fatalf("room %s re-entered", id)
		}
	}
}

// handled runs one input of the delivery loop of c (a client that was not
// started) and returns the events it delivered.
func handled(c *Client, m loopMsg) []Event {
	m.handle(c.loop)
	return drainEvents(c)
}

// drainEvents takes the events waiting in c's channel.
func drainEvents(c *Client) []Event {
	var evs []Event
	for {
		select {
		case ev := <-c.Events():
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

// A batch after a hole in the room's seqs (the gateway did not get a
// message in time: the bus lost it, or it came after the batches behind it)
// has the room entered again: the batch waits, the history fills the hole,
// then the batch goes out. At most one such re-entry per roomFillEvery; a
// hole in between goes out as it is.
func TestRoomHoleFilled(t *testing.T) {
	c, err := New(Config{Addresses: []string{"x:1"}, Dialer: WebLinkDialer(), AppKey: "a", Account: "me", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	var rejoins []RoomRejoin
	var fills []uint64
	d := c.loop
	d.rejoin = func(room, token string, gen uint64) { fills = append(fills, gen) }
	handle := func(m loopMsg) {
		for _, ev := range handled(c, m) {
			if b, ok := RoomBatchOf(ev); ok {
				for _, m := range b.Messages {
					got = append(got, m.Seq)
				}
			}
			if ev.Kind == EventRoom {
				rejoins = append(rejoins, *ev.Room)
			}
		}
	}
	batch := func(seqs ...int64) pushed {
		b := imapi.RoomBatch{RoomID: "r"}
		for _, s := range seqs {
			b.Messages = append(b.Messages, imapi.RoomMessage{RoomID: "r", Seq: s})
		}
		body, _ := json.Marshal(b)
		return pushed{Incoming{Op: imapi.OpRoomMessages, Push: true, Body: body}}
	}
	c.rooms["r"] = "tok"
	c.cur, c.connGen = &conn{}, 5

	handle(batch(1, 2))
	handle(batch(4, 5)) // 3 is missing
	if !slices.Equal(got, []int64{1, 2}) || !slices.Equal(fills, []uint64{5}) {
		t.Fatalf("after the hole: delivered %v, re-entries %v", got, fills)
	}
	handle(batch(6)) // held too
	handle(rejoinResult{room: "r", gen: 5, resp: imapi.RoomEnterResp{Room: imapi.RoomInfo{LastSeq: 4},
		History: []imapi.RoomMessage{{Seq: 2}, {Seq: 3}, {Seq: 4}}}})
	if !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6}) || len(rejoins) != 1 || rejoins[0].Gap {
		t.Fatalf("filled: delivered %v, %+v", got, rejoins)
	}

	handle(batch(8)) // a second hole within roomFillEvery: as it is
	if !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6, 8}) || len(fills) != 1 {
		t.Fatalf("a second hole at once: delivered %v, re-entries %v", got, fills)
	}
	d.room("r").filled = time.Now().Add(-roomFillEvery)
	handle(batch(10))
	if len(fills) != 2 || len(got) != 7 {
		t.Fatalf("a hole later: delivered %v, re-entries %v", got, fills)
	}
	handle(rejoinResult{room: "r", gen: 5, resp: imapi.RoomEnterResp{Room: imapi.RoomInfo{LastSeq: 10},
		History: []imapi.RoomMessage{{Seq: 9}, {Seq: 10}}}})
	d.room("r").filled = time.Now().Add(-roomFillEvery)
	handle(batch(11, 13, 14)) // a hole inside the batch
	if len(fills) != 3 || !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6, 8, 9, 10}) {
		t.Fatalf("a hole inside a batch: delivered %v, re-entries %v", got, fills)
	}
	handle(rejoinResult{room: "r", gen: 5, resp: imapi.RoomEnterResp{Room: imapi.RoomInfo{LastSeq: 14},
		History: []imapi.RoomMessage{{Seq: 11}, {Seq: 12}, {Seq: 13}, {Seq: 14}}}})
	if !slices.Equal(got[9:], []int64{11, 12, 13, 14}) {
		t.Fatalf("filled inside: delivered %v", got)
	}
}

// After a reconnect a room's requests wait until the room is entered
// again (the new session is not in it before: the service would refuse
// them "not in room"); other requests do not.
func TestRoomRequestsWaitForRejoin(t *testing.T) {
	c, err := New(Config{Addresses: []string{"x:1"}, Dialer: WebLinkDialer(), AppKey: "a", Account: "me", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"room_id":"r","client_msg_id":"x"}`)
	c.rooms["r"] = "tok"
	c.roomBack["r"] = roomBack{gen: 3, ch: make(chan struct{})}
	c.loop.room("r").rejoining = 3
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.waitRoomBack(ctx, imapi.OpRoomSend, body); err != context.DeadlineExceeded {
		t.Fatalf("room.send before the re-entry: %v", err)
	}
	if err := c.waitRoomBack(context.Background(), imapi.OpRoomEnter, body); err != nil {
		t.Fatalf("room.enter: %v", err)
	}
	if err := c.waitRoomBack(context.Background(), imapi.OpRoomSend, []byte(`{"room_id":"q"}`)); err != nil {
		t.Fatalf("another room: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.waitRoomBack(context.Background(), imapi.OpRoomSend, body) }()
	handled(c, rejoinResult{room: "r", gen: 2}) // a stale connection's answer
	select {
	case err := <-done:
		t.Fatalf("released by a stale answer: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	handled(c, rejoinResult{room: "r", gen: 3, resp: imapi.RoomEnterResp{}})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("room.send still waits after the re-entry")
	}
}
