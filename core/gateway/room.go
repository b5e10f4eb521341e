package gateway

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/link"
)

// Chatroom fan-out ("broadcast-type gateway").
//
// The services publish each room message once on the room's subject. A
// gateway subscribes to a room's subjects while it holds at least one
// session in the room, so it receives exactly one copy per message whatever
// the number of its members. Messages wait in the room's pending list and
// a flusher turns them, every RoomBatchInterval, into one OpRoomMessages
// body per room, built (and compressed) once and handed to every member's
// connection by the writer pool (roomwriter.go): one frame per connection
// per interval, or per round of writes when that takes longer. A
// connection that still has RoomMaxQueued frames waiting skips the batch
// (its client sees a gap in the room's sequence and may read the recent
// history); one whose queue is full, or whose write stalls, is dropped as
// a slow consumer.
// Nobody else waits for it.
//
// Room events (kicks, mutes, close) are delivered at once, after the
// room's pending messages, so members see them in order.

// gwRoom is one room with members on this gateway. members, joining, sub
// and pending are guarded by Gateway.roomMu.
type gwRoom struct {
	appkey, id string
	subject    string // buswire.RoomSubject
	sub        *nats.Subscription
	members    map[*Session]int // index in list
	list       []*Session       // the members in a stable order: each keeps its place in the writers' walk
	// joining counts, per member, its room.enter requests not answered
	// yet when it was not in the room before them: a refusal of the last
	// one takes it out again. An accepted enter removes the entry.
	joining map[*Session]int
	pending [][]byte // room messages (imapi.RoomMessage JSON) since the last flush
	dirty   bool     // listed in Gateway.dirtyRooms
	closed  bool
	// lastSeq is the highest room seq sent to the members (0: none yet);
	// heldSince is when the flush began holding pending messages back for
	// a gap before them (zero: not holding), heldAfter the seq before that
	// gap. See addBatch.
	lastSeq   int64
	heldSince time.Time
	heldAfter int64
}

// roomJoin is called before a room.enter is forwarded to the services: the
// session joins the room here at once, subscribing the room's subjects if
// the gateway had no member in it. The answer fixes what the history
// covers; every message published after the request was forwarded reaches
// the session live, so none falls between the two. No flush is needed:
// the SUB goes out on the bus connection ahead of the request's PUB, and a
// NATS server handles a connection's protocol in order, so the interest is
// in place before any service sees the request. Messages in both the
// history and the first batches have the same seqs (the SDK holds batches
// back until the answer and drops the seqs the history had). roomEntered
// settles the membership with the answer.
func (g *Gateway) roomJoin(s *Session, roomID, subject string) error {
	g.roomMu.Lock()
	defer g.roomMu.Unlock()
	if s.closed.Load() {
		// Ended already, and roomsGone has run or runs after us; the
		// answer's roomEntered undoes a presence the enter records.
		return nil
	}
	r, err := g.roomLocked(s.info.AppKey, roomID, subject)
	if err != nil {
		return err
	}
	if _, in := r.members[s]; in && r.joining[s] == 0 {
		return nil // entered already: a refused enter again keeps it in
	}
	if r.joining == nil {
		r.joining = map[*Session]int{}
	}
	r.joining[s]++
	g.addMemberLocked(s, r)
	return nil
}

// roomEntered is called with the answer of a room.enter (code), before the
// client sees it. Accepted, the session stays in the room (it joins again
// if it was taken out meanwhile). Refused, a session that joined for this
// enter leaves, and the subscription ends with the room's last member.
func (g *Gateway) roomEntered(s *Session, roomID, subject string, code imapi.Code) {
	// A timed-out enter may still have been recorded by the service.
	mayBeIn := code == imapi.OK || code == imapi.ErrTimeout
	g.roomMu.Lock()
	r := g.rooms[subject]
	if s.closed.Load() {
		// The session ended while its enter was under way (roomsGone took
		// it out here): undo the presence the service may have recorded
		// after roomsGone's leave.
		if r != nil {
			g.leaveLocked(s, r)
		}
		g.roomMu.Unlock()
		if mayBeIn {
			g.publishLeave(s, roomID)
		}
		return
	}
	if code == imapi.OK {
		if r == nil {
			var err error
			if r, err = g.roomLocked(s.info.AppKey, roomID, subject); err != nil {
				g.roomMu.Unlock()
				g.log.Warn("room subscribe", "room", roomID, "err", err)
				return
			}
		}
		delete(r.joining, s)
		g.addMemberLocked(s, r)
		g.roomMu.Unlock()
		return
	}
	left := false
	if r != nil && r.joining[s] > 0 {
		if r.joining[s]--; r.joining[s] == 0 {
			g.leaveLocked(s, r)
			left = true
		}
	}
	g.roomMu.Unlock()
	if left && mayBeIn {
		g.publishLeave(s, roomID)
	}
}

// roomLocked returns the room of subject, subscribing its subjects when
// the gateway has no member in it yet. roomMu is held.
func (g *Gateway) roomLocked(appkey, roomID, subject string) (*gwRoom, error) {
	if r := g.rooms[subject]; r != nil {
		return r, nil
	}
	sub, err := g.nc.ChanSubscribe(subject+".*", g.roomCh)
	if err != nil {
		return nil, fmt.Errorf("room %s: subscribe: %w", roomID, err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	r := &gwRoom{appkey: appkey, id: roomID, subject: subject, sub: sub, members: map[*Session]int{}}
	g.rooms[subject] = r
	g.m.rooms.Inc()
	return r, nil
}

// addMemberLocked puts the session in the room's member list if it is not
// there. roomMu is held.
func (g *Gateway) addMemberLocked(s *Session, r *gwRoom) {
	if _, in := r.members[s]; in {
		return
	}
	r.members[s] = len(r.list)
	r.list = append(r.list, s)
	x := s.extras()
	x.rooms = append(x.rooms, r)
	g.m.roomMembers.Inc()
}

// roomCount is how many rooms the session is in.
func (g *Gateway) roomCount(s *Session) int {
	g.roomMu.Lock()
	defer g.roomMu.Unlock()
	if x := s.extra.Load(); x != nil {
		return len(x.rooms)
	}
	return 0
}

// roomLeave takes the session out of a room (after room.leave, a kick or
// a close). The room's subscription ends with its last member.
func (g *Gateway) roomLeave(s *Session, subject string) {
	g.roomMu.Lock()
	defer g.roomMu.Unlock()
	if r := g.rooms[subject]; r != nil {
		g.leaveLocked(s, r)
	}
}

func (g *Gateway) leaveLocked(s *Session, r *gwRoom) {
	i, in := r.members[s]
	if !in {
		return
	}
	delete(r.members, s)
	delete(r.joining, s)
	last := len(r.list) - 1
	if i != last {
		r.list[i] = r.list[last]
		r.members[r.list[i]] = i
	}
	r.list[last] = nil
	r.list = r.list[:last]
	g.m.roomMembers.Dec()
	x := s.extra.Load() // made when s became a member
	for i, in := range x.rooms {
		if in == r {
			x.rooms = append(x.rooms[:i], x.rooms[i+1:]...)
			break
		}
	}
	if len(r.members) == 0 {
		g.dropRoomLocked(r)
	}
}

func (g *Gateway) dropRoomLocked(r *gwRoom) {
	if r.closed {
		return
	}
	r.closed = true
	_ = r.sub.Unsubscribe()
	delete(g.rooms, r.subject)
	g.m.rooms.Dec()
}

// roomsGone is called when a session ends: it leaves its rooms here and
// tells the services (a request without a reply subject), so that the
// room's presence and member list follow.
func (g *Gateway) roomsGone(s *Session) {
	g.roomMu.Lock()
	var rooms []*gwRoom
	if x := s.extra.Load(); x != nil {
		rooms = append(rooms, x.rooms...)
	}
	for _, r := range rooms {
		g.leaveLocked(s, r)
	}
	g.roomMu.Unlock()
	if len(rooms) == 0 {
		return
	}
	for _, r := range rooms {
		g.publishLeave(s, r.id)
	}
}

// publishLeave sends room.leave for the session without waiting for an
// answer.
func (g *Gateway) publishLeave(s *Session, roomID string) {
	prefix, _ := s.requestState()
	body, _ := json.Marshal(imapi.RoomRef{RoomID: roomID})
	env := make([]byte, 0, len(prefix)+len(body)+10)
	env = append(env, prefix...)
	env = append(env, `,"body":`...)
	env = append(env, body...)
	env = append(env, '}')
	// Published without a reply, so to the stable nodes: a grayscale
	// version with no live node would lose it silently.
	if err := g.nc.Publish(s.currentRoute().Stable().Subject(imapi.OpRoomLeave), env); err != nil {
		g.log.Warn("room leave not published", "room", roomID, "err", err)
	}
}

// roomLoop receives room messages and events from the bus and flushes
// batches every RoomBatchInterval, or when the round of writes in progress
// ends if that is later (see roomWriters). It owns the batching; membership
// changes come from other goroutines under roomMu.
func (g *Gateway) roomLoop() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.RoomBatchInterval.D())
	defer t.Stop()
	var dirty []*gwRoom
	busy := false      // a round is being written
	late := false      // the interval ended during it
	var more []*gwRoom // rooms with messages left for the next round
	flush := func() {
		g.writers.reset()
		for _, r := range dirty {
			if g.addBatch(r, false) {
				more = append(more, r)
			}
		}
		clear(dirty)
		dirty = append(dirty[:0], more...)
		clear(more)
		more = more[:0]
		busy = g.writers.begin()
	}
	for {
		select {
		case msg := <-g.roomCh:
			if msg == nil {
				if busy {
					<-g.writers.done
				}
				g.writers.close()
				return
			}
			g.roomMu.Lock()
			r := g.rooms[roomSubjectOf(msg.Subject)]
			if r == nil {
				g.roomMu.Unlock()
				continue
			}
			if strings.HasSuffix(msg.Subject, buswire.RoomMessageSuffix) {
				g.m.roomMessages.Inc()
				r.pending = append(r.pending, msg.Data)
				if !r.dirty {
					r.dirty = true
					dirty = append(dirty, r)
				}
				g.roomMu.Unlock()
				continue
			}
			g.roomMu.Unlock()
			if busy {
				<-g.writers.done
				busy = false
			}
			g.roomEvent(r, msg.Data)
			if late {
				late = false
				flush()
			}
		case <-t.C:
			if busy {
				if !late {
					late = true
					g.m.roomStretched.Inc()
				}
				continue
			}
			flush()
		case <-g.writers.done:
			busy = false
			if late {
				late = false
				flush()
			}
		}
	}
}

// roomSubjectOf strips the message or event suffix from a room subject.
func roomSubjectOf(subject string) string {
	if i := len(subject) - 2; i > 0 && subject[i] == '.' {
		return subject[:i]
	}
	return subject
}

// addBatch puts the room's pending messages into the next round of writes:
// one body, built and compressed once, one frame per member connection. A
// body holds at most max_frame_size bytes (what clients accept inflated);
// it reports whether messages are left for the next round (the room stays
// dirty). noHold sends what follows a hole at once (before a room event,
// which must not wait).
func (g *Gateway) addBatch(r *gwRoom, noHold bool) (more bool) {
	g.roomMu.Lock()
	msgs := r.pending
	r.pending, r.dirty = nil, false
	if len(msgs) == 0 || len(r.list) == 0 {
		g.roomMu.Unlock()
		return false
	}
	// Several service nodes publish a room's messages, each on its own
	// connection, so they may arrive out of seq order, and a client takes
	// a seq below one it has as a duplicate. The batch goes out in seq
	// order; when a seq is missing — before the batch or inside it (a
	// node that stored 3 published it after 4 and 5: it stalled, or its
	// bus connection was slow) — what comes after the hole is held back
	// for up to RoomGapWait for the missing one to arrive, and what comes
	// before it goes now. A message stored by a node that died before
	// publishing it never arrives: then the rest goes with the gap, which
	// the client sees (the SDK fills it from the room's recent history).
	seqs := sortRoomMessages(msgs)
	if cut, after := roomHole(seqs, r.lastSeq); cut < len(seqs) {
		if r.heldSince.IsZero() || r.heldAfter != after {
			r.heldSince, r.heldAfter = time.Now(), after
		}
		if !noHold && time.Since(r.heldSince) < g.cfg.RoomGapWait.D() {
			if cut == 0 {
				r.pending, r.dirty = append(msgs, r.pending...), true
				g.roomMu.Unlock()
				return true
			}
			// The messages before the hole go now, the rest waits.
			r.pending, r.dirty = append(slices.Clone(msgs[cut:]), r.pending...), true
			msgs, seqs, more = msgs[:cut], seqs[:cut], true
		} else {
			g.m.roomGaps.Inc()
			g.log.Debug("room batch sent with a gap", "room", r.id, "after", after, "next", seqs[cut])
			r.heldSince = time.Time{}
		}
	} else {
		r.heldSince = time.Time{}
	}
	r.lastSeq = max(r.lastSeq, seqs[len(seqs)-1])
	size := len(`{"room_id":"","messages":[]}`) + len(r.id)
	for i, m := range msgs {
		if size += len(m) + 1; size > g.cfg.MaxFrameSize && i > 0 {
			r.pending, r.dirty, more = append(slices.Clone(msgs[i:]), r.pending...), true, true
			msgs = msgs[:i]
			break
		}
	}
	lo := len(g.writers.members)
	g.writers.members = append(g.writers.members, r.list...)
	g.roomMu.Unlock()
	n := len(`{"room_id":"","messages":[]}`) + len(r.id) + len(msgs)
	for _, m := range msgs {
		n += len(m)
	}
	body := make([]byte, 0, n)
	body = append(body, `{"room_id":"`...)
	body = append(body, r.id...)
	body = append(body, `","messages":[`...)
	for i, m := range msgs {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, m...)
	}
	body = append(body, "]}"...)
	frame := link.Frame{Op: imapi.OpRoomMessages, Flags: link.FlagPush, Body: body}
	if t := g.cfg.CompressThreshold; t > 0 && len(body) > t {
		if z := link.Deflate(body); len(z) < len(body) {
			frame.Body, frame.Flags = z, link.FlagPush|link.FlagCompressed
		}
	}
	g.m.roomBatches.Inc()
	g.writers.add(roomBatch{frame: frame, body: body, msgs: len(msgs)}, lo)
	return more
}

// roomEvent delivers an event to the room's members after the messages
// that came before it; kicks and closes also take sessions out. The room
// loop calls it with no round in progress; it writes the room's pending
// messages first and waits for them.
func (g *Gateway) roomEvent(r *gwRoom, data []byte) {
	var ev imapi.RoomEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		g.log.Warn("bad room event on the bus", "room", r.id, "err", err)
		return
	}
	for more := true; more; {
		g.writers.reset()
		more = g.addBatch(r, true)
		if g.writers.begin() {
			<-g.writers.done
		}
	}
	g.m.roomEvents.Inc()
	g.roomMu.Lock()
	members := append([]*Session(nil), r.list...)
	switch ev.Kind {
	case imapi.RoomEventClosed:
		for _, s := range members {
			g.leaveLocked(s, r)
		}
	case imapi.RoomEventKicked:
		for _, s := range members {
			if s.info.Account == ev.Account {
				g.leaveLocked(s, r)
			}
		}
	}
	g.roomMu.Unlock()
	for _, s := range members {
		if !s.t.Push(imapi.OpRoomEvent, data) {
			if g.unregister(s, ReasonSlow, true) {
				g.m.roomSlowDrops.Inc()
				g.m.slowConsumers.Inc()
			}
		}
	}
}

// announceLoop tells the services, every AnnounceInterval, that this
// gateway is alive, where clients reach it and how full it is.
func (g *Gateway) announceLoop() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.AnnounceInterval.D())
	defer t.Stop()
	g.announce()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.announce()
		}
	}
}

func (g *Gateway) announce() {
	addrs := g.cfg.Advertise
	g.advMu.Lock()
	if len(g.advertise) > 0 {
		addrs = g.advertise
	}
	g.advMu.Unlock()
	if len(addrs) == 0 && g.ln != nil {
		addrs = []string{"link://" + g.ln.Addr().String()}
	}
	b, _ := json.Marshal(buswire.GatewayAnnounce{ID: g.cfg.ID, Addresses: addrs, Sessions: g.Sessions(),
		Capacity: g.cfg.MaxConnections, Draining: g.draining.Load(), EveryMS: g.cfg.AnnounceInterval.D().Milliseconds(),
		Started: g.startedAt.UnixMilli()})
	if err := g.nc.Publish(buswire.GatewaySubject, b); err != nil {
		g.log.Debug("announce", "err", err)
	}
}

// SetAdvertise replaces the entry addresses this gateway announces for
// chatroom placement (the composition root adds its WebLink address).
// Config.Advertise, when set, is what it starts with.
func (g *Gateway) SetAdvertise(addrs []string) {
	g.advMu.Lock()
	g.advertise = append([]string(nil), addrs...)
	g.advMu.Unlock()
	if g.started {
		g.announce()
	}
}

// roomHole finds the first missing seq in sorted seqs, the highest seq
// sent before them being last (0: none yet, no hole before the first):
// the messages before index cut have no hole before them; after is the
// seq just before the hole. cut is len(seqs) when there is none. Seqs at
// or below one already passed (late, or 0 for one that did not decode)
// never make a hole.
func roomHole(seqs []int64, last int64) (cut int, after int64) {
	prev := last
	for i, sq := range seqs {
		if prev > 0 && sq > prev+1 {
			return i, prev
		}
		prev = max(prev, sq)
	}
	return len(seqs), prev
}

// sortRoomMessages sorts room messages (imapi.RoomMessage JSON) by seq and
// returns their seqs in that order (0 for one that does not decode).
func sortRoomMessages(msgs [][]byte) []int64 {
	type keyed struct {
		seq int64
		m   []byte
	}
	ks := make([]keyed, len(msgs))
	for i, m := range msgs {
		var v struct {
			Seq int64 `json:"seq"`
		}
		_ = json.Unmarshal(m, &v)
		ks[i] = keyed{v.Seq, m}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return cmp.Compare(a.seq, b.seq) })
	seqs := make([]int64, len(ks))
	for i, k := range ks {
		msgs[i], seqs[i] = k.m, k.seq
	}
	return seqs
}
