package gateway

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/config"
)

// roomService answers room.enter for any room (the answer is what keeps
// the session in the room).
func roomService(t *testing.T, e *env) *nats.Conn {
	t.Helper()
	return roomServiceWith(t, e, func(*nats.Conn, imapi.RoomEnterReq) buswire.Reply {
		return buswire.Reply{}
	})
}

// roomServiceWith is roomService whose answers come from answer, called
// with the service's bus connection; an accepted one gets the room's id.
func roomServiceWith(t *testing.T, e *env, answer func(nc *nats.Conn, req imapi.RoomEnterReq) buswire.Reply) *nats.Conn {
	t.Helper()
	nc := connectNATS(t, e.ns)
	_, err := nc.QueueSubscribe(buswire.ServiceSubject(buswire.DefaultCluster, imapi.OpRoomEnter), buswire.ServiceQueue, func(m *nats.Msg) {
		var req struct {
			Body imapi.RoomEnterReq `json:"body"`
		}
		_ = json.Unmarshal(m.Data, &req)
		rep := answer(nc, req.Body)
		if rep.Code == imapi.OK && rep.Body == nil {
			rep.Body = mustJSON(map[string]any{"room": map[string]string{"room_id": req.Body.RoomID}})
		}
		_ = m.Respond(mustJSON(rep))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return nc
}

func (c *client) enter(room string) {
	c.t.Helper()
	f, _ := c.response(c.request(imapi.OpRoomEnter, imapi.RoomEnterReq{RoomID: room}))
	if f.Code != imapi.OK {
		c.t.Fatalf("enter %s: code %d %s", room, f.Code, f.Body)
	}
}

func publishRoom(t *testing.T, nc *nats.Conn, room string, seq int64, text string) {
	t.Helper()
	if err := publishRoomMessage(nc, room, seq, text); err != nil {
		t.Fatal(err)
	}
}

// publishRoomMessage is publishRoom for goroutines other than the test's.
func publishRoomMessage(nc *nats.Conn, room string, seq int64, text string) error {
	m := imapi.RoomMessage{RoomID: room, MsgID: fmt.Sprint(seq), Seq: seq, From: "x", Type: "text",
		Body: mustJSON(map[string]string{"text": text}), Time: time.Now().UnixMilli()}
	return nc.Publish(buswire.RoomSubject("app", room)+buswire.RoomMessageSuffix, mustJSON(m))
}

// roomSeqs decodes a room.messages frame.
func roomSeqs(t testing.TB, f link.Frame) []int64 {
	t.Helper()
	var b imapi.RoomBatch
	if err := json.Unmarshal(f.Body, &b); err != nil {
		t.Fatalf("room batch: %v", err)
	}
	var seqs []int64
	for _, m := range b.Messages {
		seqs = append(seqs, m.Seq)
	}
	return seqs
}

// TestRoomWritersOrder: the writer pool gives every member every room
// message, in order, interleaved with pushes and replies on the same
// connections (a frame out of order would fail to decrypt); most frames
// are written by the pool itself; room events come after the messages
// before them; and once the gateway stops no writer is left.
func TestRoomWritersOrder(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RoomBatchInterval = config.Duration(2 * time.Millisecond)
		c.RoomMaxQueued = 1024 // every message must arrive: no skipping
		c.RoomWriters = 2
	})
	nc := roomService(t, e)
	const members, msgs = 6, 400
	var cs []*client
	for i := range members {
		c := e.login(t, fmt.Sprintf("m%d", i), "phone")
		c.enter("r1")
		cs = append(cs, c)
	}
	// Pushes to the first member and heartbeats of the second one, while
	// the room batches go out.
	go func() {
		for i := range msgs {
			_ = nc.Publish(buswire.UserSubject("app", "m0"), mustJSON(buswire.Push{Op: imapi.OpPush, Body: mustJSON(map[string]int{"n": i})}))
		}
	}()
	for i := 1; i <= msgs; i++ {
		publishRoom(t, nc, "r1", int64(i), strings.Repeat("hello ", i%300))
		if i%40 == 0 {
			cs[1].request(imapi.OpHeartbeat, nil)
			time.Sleep(time.Millisecond)
		}
	}
	ev := imapi.RoomEvent{RoomID: "r1", Kind: "muted", Account: "m5"}
	if err := nc.Publish(buswire.RoomSubject("app", "r1")+buswire.RoomEventSuffix, mustJSON(ev)); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		next, pushes := int64(1), 0
		for next <= msgs || (i == 0 && pushes < msgs) {
			f := c.read()
			switch f.Op {
			case imapi.OpRoomMessages:
				for _, s := range roomSeqs(t, f) {
					if s != next {
						t.Fatalf("member %d: room message %d, want %d", i, s, next)
					}
					next++
				}
			case imapi.OpPush:
				pushes++
			case imapi.OpRoomEvent:
				t.Fatalf("member %d: the event came before message %d", i, next)
			}
		}
		for f := c.read(); f.Op != imapi.OpRoomEvent; f = c.read() {
			if f.Op == imapi.OpRoomMessages {
				t.Fatalf("member %d: room messages %v after the last one", i, roomSeqs(t, f))
			}
		}
	}
	if n := testutil.ToFloat64(e.g.m.roomDirectWrites); n == 0 {
		t.Fatal("the pool wrote no frame itself")
	}
	if n := testutil.ToFloat64(e.g.m.roomDeliveries); n != members*msgs {
		t.Fatalf("deliveries %v, want %d", n, members*msgs)
	}

	// No goroutine outlives the gateway: neither the pool's nor a
	// connection writer it started.
	if err := e.g.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		left := strings.Contains(stacks, "gateway.(*roomWriters).writer") || strings.Contains(stacks, "gateway.(*linkConn).writeLoop")
		if !left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writers left after Close:\n%s", stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRoomWritersSlowMember: a member that stops reading never holds up
// the writers or the others: it first skips batches (room_max_queued frames
// behind), then its stalled write is dropped after write_timeout, counted
// as a slow consumer, while a reading member gets every message.
func TestRoomWritersSlowMember(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RoomBatchInterval = config.Duration(5 * time.Millisecond)
		c.SendQueue = 16
		c.RoomMaxQueued = 4
		// Long enough for room_max_queued rounds to pass behind the
		// stalled write: the rounds stay small (the messages are paced by
		// the reading member), so they take milliseconds even under the
		// race detector on a loaded machine.
		c.WriteTimeout = config.Duration(4 * time.Second)
		c.RoomWriters = 1 // one writer: it must not wait for the slow member
	})
	nc := roomService(t, e)
	good := e.login(t, "good", "phone")
	good.enter("r1")
	slow := e.login(t, "slow", "phone")
	slow.enter("r1")
	// Small socket buffers on both ends of the slow member's connection:
	// its writes stall after some ten kilobytes instead of the megabytes
	// the kernel's autotuned send buffer would take first (at the machine's
	// pace that could outlast the write deadline the connection's writer
	// last set, and the pool would not be the one to find the socket full).
	_ = slow.c.NetConn().(*net.TCPConn).SetReadBuffer(4096) // and it never reads again
	for _, s := range e.g.allSessions() {
		if s.info.Account == "slow" {
			_ = s.t.(*linkConn).c.NetConn().(*net.TCPConn).SetWriteBuffer(4096)
		}
	}

	// Messages go out until the slow member is dropped; the reading one
	// must get all of them, in order.
	var received atomic.Int64
	progress := make(chan struct{}, 1)
	failed := make(chan error, 1)
	go func() {
		for {
			_ = good.c.NetConn().SetReadDeadline(time.Now().Add(30 * time.Second))
			f, err := good.c.ReadFrame()
			if err != nil {
				failed <- err
				return
			}
			if f.Op != imapi.OpRoomMessages {
				continue
			}
			var b imapi.RoomBatch
			if err := json.Unmarshal(f.Body, &b); err != nil {
				failed <- err
				return
			}
			for _, m := range b.Messages {
				if m.Seq != received.Load()+1 {
					failed <- fmt.Errorf("room message %d after %d", m.Seq, received.Load())
					return
				}
				received.Add(1)
			}
			select {
			case progress <- struct{}{}:
			default:
			}
		}
	}()
	// The publisher keeps at most ahead messages beyond what the reading
	// member got: the batches stay small and the rounds frequent whatever
	// the machine's load, and the reading member never falls behind.
	const ahead = 64
	noise := make([]byte, 1000)
	n := int64(0)
	for e.g.Sessions() > 1 && n < 200000 {
		for n-received.Load() >= ahead {
			select {
			case <-progress:
			case err := <-failed:
				t.Fatalf("the reading member: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatalf("the reading member got %d of %d messages: the slow one holds the room up", received.Load(), n)
			}
		}
		n++
		_, _ = rand.Read(noise)
		publishRoom(t, nc, "r1", n, base64.StdEncoding.EncodeToString(noise)) // hardly compressible
	}
	deadline := time.Now().Add(30 * time.Second)
	for received.Load() < n {
		select {
		case err := <-failed:
			t.Fatalf("the reading member: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reading member got %d of %d messages: the slow one holds the room up", received.Load(), n)
		}
	}
	if e.g.Sessions() != 1 {
		t.Fatalf("the slow member was not dropped after %d messages", n)
	}
	if testutil.ToFloat64(e.g.m.roomSkipped) == 0 {
		t.Fatal("the slow member skipped no batch")
	}
	if testutil.ToFloat64(e.g.m.slowConsumers) != 1 {
		t.Fatalf("slow consumers %v, want 1", testutil.ToFloat64(e.g.m.slowConsumers))
	}
	if testutil.ToFloat64(e.g.m.roomPartialWrites) == 0 {
		t.Fatal("no direct write was left to the connection's writer")
	}
}
