package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/pkg/waittest"
)

// storeTransport is a server in memory for one account: it stores the
// messages sent to it and acks them once stored, answers syncs, the
// conversation list and notice syncs from what it holds, and pushes what
// the test adds. Its answers never wait for the client.
type storeTransport struct {
	*fakeTransport // its Recv and Close
	account        string

	mu      sync.Mutex
	convs   map[string][]imapi.Message
	notices []imapi.Notice
	rooms   map[string][]imapi.RoomMessage
	enters  int // room enters answered
	// synced counts the messages and notices sent in sync answers.
	syncedMsgs, syncedNotices int
}

func newStore(account string) *storeTransport {
	f := &fakeTransport{addr: "gw", in: make(chan Incoming, 1<<14), closed: make(chan struct{})}
	return &storeTransport{fakeTransport: f, account: account, convs: map[string][]imapi.Message{}, rooms: map[string][]imapi.RoomMessage{}}
}

func (s *storeTransport) reply(in Incoming) error {
	select {
	case s.in <- in:
		return nil
	case <-s.closed:
		return errors.New("closed")
	}
}

func (s *storeTransport) answer(op imapi.Op, seq uint32, v any) error {
	b, _ := json.Marshal(v)
	return s.reply(Incoming{Op: op, Seq: seq, Body: b})
}

// store appends a message to conv and returns it.
func (s *storeTransport) store(conv, from, clientMsgID string) imapi.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := imapi.Message{MsgID: fmt.Sprintf("m%d", len(s.convs[conv])+1), ConvID: conv, From: from,
		Seq: int64(len(s.convs[conv]) + 1), ClientMsgID: clientMsgID, Type: "text", Body: json.RawMessage(`{}`)}
	s.convs[conv] = append(s.convs[conv], m)
	return m
}

// pushMessage stores a message from peer to the account and pushes it.
func (s *storeTransport) pushMessage(peer string) {
	m := s.store(imapi.P2PConvID(s.account, peer), peer, NewClientMsgID())
	b, _ := json.Marshal(m)
	_ = s.reply(Incoming{Op: imapi.OpPush, Push: true, Body: b})
}

// pushNotice stores the next notice of the account and pushes it.
func (s *storeTransport) pushNotice() {
	s.mu.Lock()
	n := imapi.Notice{Seq: int64(len(s.notices) + 1), Kind: imapi.NoticeFriendRequest, From: "bob", To: s.account}
	s.notices = append(s.notices, n)
	s.mu.Unlock()
	b, _ := json.Marshal(n)
	_ = s.reply(Incoming{Op: imapi.OpNotice, Push: true, Body: b})
}

// pushRoomMessage stores the next message of a room and pushes it alone
// in a batch.
func (s *storeTransport) pushRoomMessage(room string) {
	s.mu.Lock()
	m := imapi.RoomMessage{RoomID: room, MsgID: fmt.Sprintf("r%d", len(s.rooms[room])+1), Seq: int64(len(s.rooms[room]) + 1),
		From: "bob", Type: "text", Body: json.RawMessage(`{}`)}
	s.rooms[room] = append(s.rooms[room], m)
	s.mu.Unlock()
	b, _ := json.Marshal(imapi.RoomBatch{RoomID: room, Messages: []imapi.RoomMessage{m}})
	_ = s.reply(Incoming{Op: imapi.OpRoomMessages, Push: true, Body: b})
}

func (s *storeTransport) Send(op imapi.Op, seq uint32, body []byte) error {
	select {
	case <-s.closed:
		return errors.New("closed")
	default:
	}
	switch op {
	case imapi.OpLogin:
		return s.answer(op, seq, imapi.LoginResp{SessionID: "s1", HeartbeatSec: 30})
	case imapi.OpSend:
		var req imapi.SendReq
		_ = json.Unmarshal(body, &req)
		m := s.store(imapi.P2PConvID(s.account, req.To), s.account, req.ClientMsgID)
		return s.answer(op, seq, imapi.SendAck{MsgID: m.MsgID, ConvID: m.ConvID, Seq: m.Seq})
	case imapi.OpConvList:
		s.mu.Lock()
		resp := imapi.ConvListResp{Conversations: []imapi.Conversation{}}
		for id, msgs := range s.convs {
			resp.Conversations = append(resp.Conversations, imapi.Conversation{ConvID: id, LastSeq: int64(len(msgs))})
		}
		s.mu.Unlock()
		return s.answer(op, seq, resp)
	case imapi.OpSync:
		var req imapi.SyncReq
		_ = json.Unmarshal(body, &req)
		s.mu.Lock()
		page, more := after(s.convs[req.ConvID], req.AfterSeq, req.Limit)
		s.syncedMsgs += len(page)
		s.mu.Unlock()
		return s.answer(op, seq, imapi.SyncResp{Messages: page, HasMore: more})
	case imapi.OpNoticeSync:
		var req imapi.NoticeSyncReq
		_ = json.Unmarshal(body, &req)
		s.mu.Lock()
		page, more := after(s.notices, req.AfterSeq, req.Limit)
		s.syncedNotices += len(page)
		s.mu.Unlock()
		return s.answer(op, seq, imapi.NoticeSyncResp{Notices: page, HasMore: more})
	case imapi.OpRoomEnter:
		var req imapi.RoomEnterReq
		_ = json.Unmarshal(body, &req)
		s.mu.Lock()
		msgs := s.rooms[req.RoomID]
		resp := imapi.RoomEnterResp{Room: imapi.RoomInfo{RoomID: req.RoomID, LastSeq: int64(len(msgs))}, Role: imapi.RoleMember,
			History: slices.Clone(msgs[max(len(msgs)-req.History, 0):])}
		s.enters++
		s.mu.Unlock()
		return s.answer(op, seq, resp)
	default:
		return s.reply(Incoming{Op: op, Seq: seq, Body: []byte(`{}`)})
	}
}

// after is a sync page: up to limit items of a stream numbered from 1,
// after seq, and whether more follow.
func after[T any](stream []T, seq int64, limit int) ([]T, bool) {
	page := slices.Clone(stream[min(int(seq), len(stream)):])
	if len(page) > limit {
		return page[:limit], true
	}
	return page, false
}

func startStoreClient(t *testing.T, eventBuffer int) (*Client, *storeTransport, context.Context) {
	t.Helper()
	s := newStore("alice")
	cfg := testConfig(func(ctx context.Context, addr string) (Transport, error) { return s, nil }, "gw")
	cfg.EventBuffer = eventBuffer
	c, ctx := startClient(t, cfg)
	return c, s, ctx
}

// next reads the next event, failing the test when none comes in time.
func next(t *testing.T, ctx context.Context, c *Client) Event {
	t.Helper()
	select {
	case ev := <-c.Events():
		return ev
	case <-ctx.Done():
		t.Fatal("no event in time")
		return Event{}
	}
}

// TestAcksWhileEventsUnread: an application that does not read Events
// still gets the ack of every Send (the defect: past the events buffer and
// the delivery loop's queue every Send hung until its context expired).
// The events that did not fit are dropped, counted, and reported by one
// EventDropped once the application reads again.
func TestAcksWhileEventsUnread(t *testing.T) {
	const buffer = 8
	c, _, ctx := startStoreClient(t, buffer)
	n := buffer + cap(c.loopIn) + 100 // well past what used to stall
	for i := range n {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := c.Send(sctx, imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", Body: []byte(`{}`)})
		cancel()
		if err != nil {
			t.Fatalf("send %d of %d while the app reads no events: %v", i+1, n, err)
		}
		if ack.Seq != int64(i+1) {
			t.Fatalf("send %d acked with seq %d", i+1, ack.Seq)
		}
	}
	// One state change (connected: a client starts connecting) and n
	// acks happened. The buffer holds the first ones; then comes the
	// report of those dropped while the app was behind, then the acks
	// handled after it caught up (Send returns before its ack event is
	// handled), until every one is accounted for.
	total := n + 1
	seen, dropped, reports := 0, 0, 0
	for seen+dropped < total {
		ev := next(t, ctx, c)
		if ev.Kind != EventDropped {
			seen++
			continue
		}
		if reports == 0 && seen != buffer {
			t.Fatalf("EventDropped after %d events, want after the %d the buffer held", seen, buffer)
		}
		reports++
		dropped += ev.Dropped
	}
	if reports == 0 || seen+dropped != total {
		t.Fatalf("%d events and %d reported dropped, want %d in all, some dropped", seen, dropped, total)
	}
	if d := c.DroppedEvents(); d != uint64(dropped) {
		t.Fatalf("DroppedEvents %d, EventDropped reported %d", d, dropped)
	}
	// Caught up, the app gets every event again.
	if _, err := c.Send(ctx, imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ctx, c); ev.Kind != EventSent || ev.Ack.Seq != int64(n+1) {
		t.Fatalf("after catching up: %+v", ev)
	}
}

// TestMessagesWhileEventsUnread: messages and notices are never dropped.
// Pushed while the application reads nothing, they are not held in memory
// past the events buffer: the client fetches them again (sync) once the
// application has caught up, and it gets each once, in order.
func TestMessagesWhileEventsUnread(t *testing.T) {
	const buffer, n = 64, 1000
	c, s, ctx := startStoreClient(t, buffer)
	for range n {
		s.pushMessage("bob")
		s.pushNotice()
	}
	// The client takes every push before the app reads one event.
	waittest.Until(t, 10*time.Second, "the client to take every push", func() bool {
		return len(s.in) == 0 && len(c.loopIn) == 0
	})
	var msgs, notices []int64
	for len(msgs) < n || len(notices) < n {
		ev := next(t, ctx, c)
		switch ev.Kind {
		case EventMessage:
			msgs = append(msgs, ev.Message.Seq)
		case EventNotice:
			notices = append(notices, ev.Notice.Seq)
		case EventDropped:
			t.Fatalf("events dropped (%d): only messages and notices were pushed", ev.Dropped)
		}
	}
	for i := range n {
		if msgs[i] != int64(i+1) || notices[i] != int64(i+1) {
			t.Fatalf("message seqs %v…, notice seqs %v…: want 1..%d once each, in order", msgs[:i+1], notices[:i+1], n)
		}
	}
	if last := c.LastSeqs()[imapi.P2PConvID("alice", "bob")]; last != n || c.LastNoticeSeq() != n {
		t.Fatalf("positions: conversation %d, notices %d, want %d", last, c.LastNoticeSeq(), n)
	}
	// Those past the buffer came again by sync, not from memory.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.syncedMsgs < n-buffer || s.syncedNotices < n-buffer {
		t.Fatalf("%d messages and %d notices synced, want at least %d of each (pushed while the app was behind)",
			s.syncedMsgs, s.syncedNotices, n-buffer)
	}
}

// TestRoomMessagesWhileEventsUnread: room messages pushed while the
// application reads nothing are not dropped either: once it caught up the
// client enters the room again, and the recent history it gets
// (Config.RoomCatchUp) brings the ones it could not hand over, each once,
// in order; beyond what the room keeps, EventRoom says Gap.
func TestRoomMessagesWhileEventsUnread(t *testing.T) {
	for _, tc := range []struct {
		name    string
		catchUp int
		gap     bool
	}{
		{"within the catch-up", 500, false},
		{"beyond it", 50, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const buffer, n = 16, 300
			s := newStore("alice")
			cfg := testConfig(func(ctx context.Context, addr string) (Transport, error) { return s, nil }, "gw")
			cfg.EventBuffer, cfg.RoomCatchUp = buffer, tc.catchUp
			c, ctx := startClient(t, cfg)
			if _, err := c.RoomEnter(ctx, "lobby", "tok", 0); err != nil {
				t.Fatal(err)
			}
			for range n {
				s.pushRoomMessage("lobby")
			}
			waittest.Until(t, 10*time.Second, "the client to take every push", func() bool {
				return len(s.in) == 0 && len(c.loopIn) == 0
			})
			var seqs []int64
			var rejoins []RoomRejoin
			for len(seqs) == 0 || seqs[len(seqs)-1] != n {
				ev := next(t, ctx, c)
				if b, ok := RoomBatchOf(ev); ok {
					for _, m := range b.Messages {
						seqs = append(seqs, m.Seq)
					}
				}
				if ev.Kind == EventRoom {
					rejoins = append(rejoins, *ev.Room)
				}
			}
			if len(rejoins) != 1 || rejoins[0].Gap != tc.gap || rejoins[0].Err != nil {
				t.Fatalf("re-entries %+v, want one with Gap %v", rejoins, tc.gap)
			}
			for i := 1; i < len(seqs); i++ {
				if seqs[i] <= seqs[i-1] || !tc.gap && seqs[i] != seqs[i-1]+1 {
					t.Fatalf("room seqs %v: want increasing, without a hole unless the room kept too little", seqs)
				}
			}
			if !tc.gap && len(seqs) != n {
				t.Fatalf("%d room messages, want %d", len(seqs), n)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.enters != 2 {
				t.Fatalf("%d room enters, want the app's and one after it caught up", s.enters)
			}
		})
	}
}
