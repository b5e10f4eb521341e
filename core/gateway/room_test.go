package gateway

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

// roomSeqsUntil reads frames until the room messages of room include seq
// want, returning every seq of room seen (pushes read before an answer
// included, as frames).
func roomSeqsUntil(t *testing.T, c *client, early []link.Frame, room string, want int64) []int64 {
	t.Helper()
	var got []int64
	take := func(f link.Frame) {
		if f.Op == imapi.OpRoomMessages && roomOf(t, f) == room {
			got = append(got, roomSeqs(t, f)...)
		}
	}
	for _, f := range early {
		take(f)
	}
	for !slices.Contains(got, want) {
		take(c.read())
	}
	return got
}

func roomOf(t *testing.T, f link.Frame) string {
	t.Helper()
	var b imapi.RoomBatch
	if err := json.Unmarshal(f.Body, &b); err != nil {
		t.Fatalf("room batch: %v", err)
	}
	return b.RoomID
}

// TestRoomEnterWindow: a message published after the room service has
// fixed an enter's history, before its answer is back, reaches the
// entering session (the first member on the gateway, which subscribes the
// room, and a later one); a refused enter takes a session that joined for
// it out again, and the room's subscription ends with it, while a member
// refused on entering again stays in.
func TestRoomEnterWindow(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RoomBatchInterval = config.Duration(2 * time.Millisecond) })
	var mu sync.Mutex
	seq := map[string]int64{}
	nc := roomServiceWith(t, e, func(nc *nats.Conn, req imapi.RoomEnterReq) buswire.Reply {
		if req.Token == "bad" {
			return buswire.Reply{Code: imapi.ErrUnauthorized, Message: "bad token"}
		}
		// The history of the answer ends here; a member sends before the
		// answer leaves (on this connection, so the bus routes it first).
		mu.Lock()
		seq[req.RoomID]++
		n := seq[req.RoomID]
		mu.Unlock()
		if err := publishRoomMessage(nc, req.RoomID, n, "in the window"); err != nil {
			return buswire.Reply{Code: imapi.ErrInternal, Message: err.Error()}
		}
		return buswire.Reply{}
	})
	enter := func(c *client, room, token string) (link.Frame, []link.Frame) {
		t.Helper()
		return c.response(c.request(imapi.OpRoomEnter, imapi.RoomEnterReq{RoomID: room, Token: token}))
	}

	first, second := e.login(t, "m1", "phone"), e.login(t, "m2", "phone")
	f, early := enter(first, "r1", "ok")
	if f.Code != imapi.OK {
		t.Fatalf("enter: %d %s", f.Code, f.Body)
	}
	if got := roomSeqsUntil(t, first, early, "r1", 1); !slices.Equal(got, []int64{1}) {
		t.Fatalf("first member: %v, want [1]", got)
	}
	f, early = enter(second, "r1", "ok")
	if f.Code != imapi.OK {
		t.Fatalf("enter: %d %s", f.Code, f.Body)
	}
	if got := roomSeqsUntil(t, second, early, "r1", 2); !slices.Equal(got, []int64{2}) {
		t.Fatalf("second member: %v, want [2]", got)
	}
	if got := roomSeqsUntil(t, first, nil, "r1", 2); !slices.Equal(got, []int64{2}) {
		t.Fatalf("first member after the second entered: %v, want [2]", got)
	}

	// Refused: a room nobody here is in is unsubscribed again; a member
	// refused on entering again keeps its place.
	if f, _ := enter(first, "r2", "bad"); f.Code != imapi.ErrUnauthorized {
		t.Fatalf("refused enter: %d", f.Code)
	}
	if f, _ := enter(second, "r1", "bad"); f.Code != imapi.ErrUnauthorized {
		t.Fatalf("refused enter again: %d", f.Code)
	}
	if n := testutil.ToFloat64(e.g.m.rooms); n != 1 {
		t.Fatalf("%v room subscriptions after a refused enter, want 1", n)
	}
	if n := testutil.ToFloat64(e.g.m.roomMembers); n != 2 {
		t.Fatalf("%v room members, want 2", n)
	}
	publishRoom(t, nc, "r2", 1, "not for m1")
	publishRoom(t, nc, "r1", 3, "for both")
	for _, c := range []*client{first, second} {
		for {
			f := c.read()
			if f.Op != imapi.OpRoomMessages {
				continue
			}
			if room := roomOf(t, f); room != "r1" {
				t.Fatalf("a message of %s after a refused enter", room)
			}
			if slices.Contains(roomSeqs(t, f), 3) {
				break
			}
		}
	}
}

// TestRoomBatchesInSeqOrder: room messages published out of seq order (two
// service nodes, two connections) reach members in seq order; a batch with
// a seq missing before it waits (up to room_gap_wait) for the late one.
func TestRoomBatchesInSeqOrder(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RoomBatchInterval, c.RoomGapWait = config.Duration(50*time.Millisecond), config.Duration(100*time.Millisecond)
	})
	nc := roomServiceWith(t, e, func(*nats.Conn, imapi.RoomEnterReq) buswire.Reply { return buswire.Reply{} })
	m := e.login(t, "m1", "phone")
	if f, _ := m.response(m.request(imapi.OpRoomEnter, imapi.RoomEnterReq{RoomID: "r1", Token: "ok"})); f.Code != imapi.OK {
		t.Fatalf("enter: %d", f.Code)
	}
	publishRoom(t, nc, "r1", 1, "one")
	if got := roomSeqsUntil(t, m, nil, "r1", 1); !slices.Equal(got, []int64{1}) {
		t.Fatalf("first batch %v", got)
	}
	// 3 and 2 in one interval: sorted.
	publishRoom(t, nc, "r1", 3, "three")
	publishRoom(t, nc, "r1", 2, "two")
	if got := roomSeqsUntil(t, m, nil, "r1", 3); !slices.Equal(got, []int64{2, 3}) {
		t.Fatalf("batch %v, want [2 3]", got)
	}
	// 5 first, 4 one interval later: 5 is held for 4.
	publishRoom(t, nc, "r1", 5, "five")
	waittest.Until(t, 5*time.Second, "a flush holding 5 back", func() bool {
		e.g.roomMu.Lock()
		defer e.g.roomMu.Unlock()
		r := e.g.rooms[buswire.RoomSubject("app", "r1")]
		return r != nil && !r.heldSince.IsZero()
	})
	publishRoom(t, nc, "r1", 4, "four")
	if got := roomSeqsUntil(t, m, nil, "r1", 5); !slices.Equal(got, []int64{4, 5}) {
		t.Fatalf("seqs %v, want [4 5]: 5 not held for 4", got)
	}
	// 7 without 6: sent after the hold, the gap counted.
	publishRoom(t, nc, "r1", 7, "seven")
	if got := roomSeqsUntil(t, m, nil, "r1", 7); !slices.Equal(got, []int64{7}) {
		t.Fatalf("seqs %v, want [7]", got)
	}
	if n := testutil.ToFloat64(e.g.m.roomGaps); n != 1 {
		t.Fatalf("room_gaps_total = %v, want 1", n)
	}
	// 8 and 10, then 9: 8 goes, 10 waits for 9 (a hole inside a batch
	// holds back what follows it, not what precedes it).
	publishRoom(t, nc, "r1", 8, "eight")
	publishRoom(t, nc, "r1", 10, "ten")
	waittest.Until(t, 5*time.Second, "a flush holding 10 back", func() bool {
		e.g.roomMu.Lock()
		defer e.g.roomMu.Unlock()
		r := e.g.rooms[buswire.RoomSubject("app", "r1")]
		return r != nil && !r.heldSince.IsZero() && r.heldAfter == 8
	})
	publishRoom(t, nc, "r1", 9, "nine")
	if got := roomSeqsUntil(t, m, nil, "r1", 10); !slices.Equal(got, []int64{8, 9, 10}) {
		t.Fatalf("seqs %v, want [8 9 10]: 10 not held for 9", got)
	}
	if n := testutil.ToFloat64(e.g.m.roomGaps); n != 1 {
		t.Fatalf("room_gaps_total = %v, want 1", n)
	}
}

func TestRoomHole(t *testing.T) {
	for _, c := range []struct {
		seqs      []int64
		last      int64
		cut       int
		afterWant int64
	}{
		{[]int64{1, 2, 3}, 0, 3, 3},
		{[]int64{5, 6}, 0, 2, 6},
		{[]int64{5, 6}, 4, 2, 6},
		{[]int64{6, 7}, 4, 0, 4},
		{[]int64{5, 7, 8}, 4, 1, 5},
		{[]int64{3, 5, 6}, 4, 3, 6}, // 3: late, no hole
		{[]int64{0, 5}, 4, 2, 5},
	} {
		cut, after := roomHole(c.seqs, c.last)
		if cut != c.cut || after != c.afterWant {
			t.Errorf("roomHole(%v, %d) = %d, %d; want %d, %d", c.seqs, c.last, cut, after, c.cut, c.afterWant)
		}
	}
}
