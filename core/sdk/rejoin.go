package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

// Re-entering rooms after a reconnect.
//
// A room's presence belongs to a session: when the connection ends, the
// gateway takes the session out of its rooms. So after every reconnect the
// client enters each room it was in again, with the token it holds (or a
// fresh one from Config.RoomToken when that one is refused), asking for
// the room's recent messages (Config.RoomCatchUp). The delivery loop keeps
// the last room seq it delivered per room: it delivers the recent messages
// after it, then the pushes that arrived meanwhile (held back while the
// enter is under way), so none is delivered twice and none out of order.
// Messages older than what the room keeps are lost: the EventRoom says so
// (Gap). A room that cannot be entered again (closed, banned, no valid
// token) is forgotten and reported (Err).

// RoomRejoin reports a room entered again after a reconnect (EventRoom),
// or to fetch messages missing between two pushed batches.
type RoomRejoin struct {
	RoomID string
	Role   string // the role in the room, when entered
	// Gap is true when messages were sent while the client was away that
	// the room no longer keeps (more than Config.RoomCatchUp, or than the
	// room's history size): they were not delivered.
	Gap bool
	// Err is why the room could not be entered again: an *imapi.Error
	// with 404 (closed), 403 (banned), 401 (token refused and no fresh one
	// from Config.RoomToken), or the hook's error. The client no longer
	// counts itself in the room.
	Err error
}

// The delivery loop's inputs about rooms.
type (
	// roomEntering: the app enters a room; its pushes are held until
	// roomEntered.
	roomEntering struct{ room string }
	// roomEntered: the app's enter of a room was answered; last is the
	// newest seq the answer gave it, failed says it was refused.
	roomEntered struct {
		room   string
		last   int64
		failed bool
	}
	// roomForget: the app left a room; it is not entered again.
	roomForget struct{ room string }
)

// rejoinResult is the answer of one re-entry.
type rejoinResult struct {
	room string
	gen  uint64
	resp imapi.RoomEnterResp
	err  error
}

// roomTrack is the delivery loop's view of one room.
type roomTrack struct {
	last      int64 // newest room seq delivered
	rejoining uint64
	entering  int                 // the app's enters under way (RoomEnter)
	held      []imapi.RoomMessage // pushed while rejoining or entering
	// behind: the application was behind when messages after last came;
	// the room is entered again once it caught up (delivery.checkCaughtUp),
	// and the re-entry's recent history brings them.
	behind bool
	// filled is when a hole in the room's seqs last had the room entered
	// again (fillHole).
	filled time.Time
}

// roomFillEvery spaces the re-entries that fill holes in a room's seqs: a
// gateway that skips batches for a slow connection makes holes at every
// batch interval, and one re-entry's history covers many of them.
const roomFillEvery = time.Second

// maxRoomHeld bounds the pushes held back during a re-entry; past it the
// oldest are dropped (the recent history covers them).
const maxRoomHeld = 4096

func lastRoomSeq(r *imapi.RoomEnterResp) int64 {
	last := r.Room.LastSeq
	if n := len(r.History); n > 0 {
		last = max(last, r.History[n-1].Seq)
	}
	return last
}

// waitRoomBack holds a request of a room being entered again after a
// reconnect until that is answered: the new session is in the room only
// then. Other requests go at once.
func (c *Client) waitRoomBack(ctx context.Context, op imapi.Op, body []byte) error {
	switch op {
	case imapi.OpRoomSend, imapi.OpRoomMembers, imapi.OpRoomHistory, imapi.OpRoomInfo:
	default:
		return nil
	}
	var ref imapi.RoomRef
	if json.Unmarshal(body, &ref) != nil {
		return nil
	}
	c.mu.Lock()
	b, ok := c.roomBack[ref.RoomID]
	c.mu.Unlock()
	if !ok {
		return nil
	}
	select {
	case <-b.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
}

// roomBackDone releases the requests waiting for roomID to be entered
// again on connection gen (any connection: 0).
func (c *Client) roomBackDone(roomID string, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.roomBack[roomID]; ok && (gen == 0 || b.gen == gen) {
		close(b.ch)
		delete(c.roomBack, roomID)
	}
}

// forgetRoom stops entering roomID after reconnects.
func (c *Client) forgetRoom(roomID string) {
	c.mu.Lock()
	delete(c.rooms, roomID)
	c.mu.Unlock()
	c.roomBackDone(roomID, 0)
	c.post(roomForget{room: roomID})
}

// rejoinStart: a connection (generation gen) is up; rooms are the rooms
// the client was in when it came up.
type rejoinStart struct {
	gen   uint64
	rooms map[string]string
}

// handle enters again every room the client was in when connection
// generation r.gen came up. A room the app entered after that is not
// entered twice, though its answer may reach the client before this
// message reaches the loop.
func (r rejoinStart) handle(d *delivery) {
	c := d.c
	c.mu.Lock()
	for id := range r.rooms {
		if tok, in := c.rooms[id]; in {
			r.rooms[id] = tok // the newest token
		} else {
			delete(r.rooms, id) // left meanwhile
			if b, ok := c.roomBack[id]; ok && b.gen == r.gen {
				close(b.ch)
				delete(c.roomBack, id)
			}
		}
	}
	c.mu.Unlock()
	for id, tok := range r.rooms {
		rt := d.room(id)
		rt.rejoining = r.gen
		go c.rejoin(id, tok, r.gen)
	}
}

func (d *delivery) room(id string) *roomTrack {
	rt := d.rooms[id]
	if rt == nil {
		rt = &roomTrack{}
		d.rooms[id] = rt
	}
	return rt
}

func (m roomEntering) handle(d *delivery) { d.room(m.room).entering++ }

func (m roomForget) handle(d *delivery) { delete(d.rooms, m.room) }

// rejoin enters a room again (off the loop: it waits for answers and may
// call the token hook) and posts the result to the loop.
func (c *Client) rejoin(roomID, token string, gen uint64) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.RequestTimeout)
	defer cancel()
	req := imapi.RoomEnterReq{RoomID: roomID, Token: token, History: c.cfg.RoomCatchUp}
	var resp imapi.RoomEnterResp
	err := c.Request(ctx, imapi.OpRoomEnter, req, &resp)
	var ie *imapi.Error
	if errors.As(err, &ie) && ie.Code == imapi.ErrUnauthorized && c.cfg.RoomToken != nil {
		// The token expired: ask the app for a fresh one.
		fresh, herr := c.cfg.RoomToken(ctx, roomID)
		if herr != nil {
			err = herr
		} else {
			req.Token = fresh
			resp = imapi.RoomEnterResp{}
			if err = c.Request(ctx, imapi.OpRoomEnter, req, &resp); err == nil {
				c.mu.Lock()
				if _, ok := c.rooms[roomID]; ok {
					c.rooms[roomID] = fresh
				}
				c.mu.Unlock()
			}
		}
	}
	c.post(rejoinResult{room: roomID, gen: gen, resp: resp, err: err})
}

// transient tells errors after which a re-entry is tried again (on this
// connection after a backoff, or on the next one) from refusals.
func transient(err error) bool {
	var ie *imapi.Error
	if errors.As(err, &ie) {
		switch ie.Code {
		case imapi.ErrUnavailable, imapi.ErrTimeout, imapi.ErrInternal, imapi.ErrRateLimited:
			return true
		}
		return false
	}
	return !errors.Is(err, ErrClosed)
}

// handle delivers what the room kept since the last message delivered,
// then the pushes held meanwhile.
func (r rejoinResult) handle(d *delivery) {
	rt := d.rooms[r.room]
	if rt == nil || rt.rejoining != r.gen {
		return // left meanwhile, or a newer connection rejoins
	}
	if r.err != nil && transient(r.err) {
		d.c.retryRejoin(r)
		return
	}
	rt.rejoining = 0
	rt.behind = false // the history below is fetched after last
	d.c.roomBackDone(r.room, r.gen)
	held := rt.held
	rt.held = nil
	if r.err != nil {
		d.forgetRoom(r.room)
		d.emit(Event{Kind: EventRoom, Room: &RoomRejoin{RoomID: r.room, Err: r.err}})
		return
	}
	hist := r.resp.History
	d.emit(Event{Kind: EventRoom, Room: &RoomRejoin{RoomID: r.room, Role: r.resp.Role, Gap: missedSome(rt.last, r.resp)}})
	d.deliverRoom(rt, r.room, hist)
	if !rt.behind {
		rt.last = max(rt.last, r.resp.Room.LastSeq)
	}
	if rt.entering > 0 {
		rt.held = held // the app's enter under way releases them
		return
	}
	d.deliverRoom(rt, r.room, held)
}

// retryRejoin tries a rejoin that failed for a passing reason again after
// a backoff while its connection is up and the client still in the room
// (a refusal or a timeout); otherwise the next connection does.
func (c *Client) retryRejoin(r rejoinResult) {
	c.mu.Lock()
	current := c.connGen == r.gen && c.cur != nil
	tok, in := c.rooms[r.room]
	c.mu.Unlock()
	if current && in {
		time.AfterFunc(c.backoff(1), func() { c.rejoin(r.room, tok, r.gen) })
	}
	c.log.Debug("room rejoin", "room", r.room, "err", r.err)
}

// missedSome reports whether a room's answer to an enter starts after the
// message following last, the last one delivered (0: none yet): the room
// kept fewer than were sent meanwhile.
func missedSome(last int64, resp imapi.RoomEnterResp) bool {
	if last <= 0 {
		return false
	}
	next := last + 1
	if len(resp.History) > 0 {
		return resp.History[0].Seq > next
	}
	return resp.Room.LastSeq >= next
}

// forgetRoom drops a room the client is no longer in (refused, kicked,
// closed): it is not entered again.
func (d *delivery) forgetRoom(id string) {
	delete(d.rooms, id)
	d.c.mu.Lock()
	delete(d.c.rooms, id)
	d.c.mu.Unlock()
	d.c.roomBackDone(id, 0)
}

// handle settles an enter by the app: the answer's history went to the
// app, so the pushes held meanwhile go out after it, without the seqs it
// had. After a refusal of a room the client is not in they are dropped:
// the gateway delivered them only for the enter.
func (e roomEntered) handle(d *delivery) {
	rt := d.room(e.room)
	rt.entering = max(rt.entering-1, 0)
	if !e.failed {
		rt.last = max(rt.last, e.last)
	}
	if rt.entering > 0 || rt.rejoining != 0 {
		return
	}
	held := rt.held
	rt.held = nil
	if e.failed {
		d.c.mu.Lock()
		_, in := d.c.rooms[e.room]
		d.c.mu.Unlock()
		if !in {
			delete(d.rooms, e.room)
			return
		}
	}
	d.deliverRoom(rt, e.room, held)
}

// deliverRoom emits the messages after the last delivered one as one batch.
func (d *delivery) deliverRoom(rt *roomTrack, roomID string, msgs []imapi.RoomMessage) {
	var out []imapi.RoomMessage
	last := rt.last
	for _, m := range msgs {
		if m.Seq > last {
			out = append(out, m)
			last = m.Seq
		}
	}
	if len(out) == 0 {
		return
	}
	body, err := json.Marshal(imapi.RoomBatch{RoomID: roomID, Messages: out})
	if err != nil {
		return
	}
	d.offerRoom(rt, last, Event{Kind: EventPush, Op: imapi.OpRoomMessages, Body: body})
}

// offerRoom hands a batch of a room's messages, up to seq last, to the
// application. When it is behind the room's position stays: the room is
// entered again once it caught up (refetchRooms).
func (d *delivery) offerRoom(rt *roomTrack, last int64, ev Event) {
	if d.offer(ev) {
		rt.last = last
	} else {
		rt.behind = true
	}
}

// refetchRooms enters again, on the current connection, the rooms whose
// messages the application missed while it was behind: the re-entry's
// recent history (Config.RoomCatchUp) brings them, and its EventRoom says
// whether more were missed than the room keeps (Gap). A room without a
// connection is entered again by the next one anyway.
func (d *delivery) refetchRooms() {
	c := d.c
	for id, rt := range d.rooms {
		if !rt.behind || rt.rejoining != 0 { // a re-entry under way fetches them
			continue
		}
		rt.behind = false
		c.mu.Lock()
		tok, in := c.rooms[id]
		gen, up := c.connGen, c.cur != nil
		c.mu.Unlock()
		if in && up {
			rt.rejoining = gen
			go c.rejoin(id, tok, gen)
		}
	}
}

// onRoomBatch drops the messages already delivered, holds the batch back
// while the room is being entered again, and emits the rest. A batch that
// loses nothing goes out as the server sent it.
func (d *delivery) onRoomBatch(in *Incoming) {
	var b imapi.RoomBatch
	if err := json.Unmarshal(in.Body, &b); err != nil || b.RoomID == "" {
		d.emit(Event{Kind: EventPush, Op: in.Op, Body: in.Body})
		return
	}
	rt := d.room(b.RoomID)
	if rt.rejoining != 0 || rt.entering > 0 {
		rt.held = append(rt.held, b.Messages...)
		if n := len(rt.held); n > maxRoomHeld {
			rt.held = rt.held[n-maxRoomHeld:]
		}
		return
	}
	if rt.behind {
		return // the re-entry after the application caught up fetches it
	}
	if d.fillHole(rt, b.RoomID, b.Messages) {
		rt.held = append(rt.held, b.Messages...)
		return
	}
	last := rt.last
	for _, m := range b.Messages {
		if m.Seq <= last {
			// A message delivered already (or out of order): filter.
			d.deliverRoom(rt, b.RoomID, b.Messages)
			return
		}
		last = m.Seq
	}
	d.offerRoom(rt, last, Event{Kind: EventPush, Op: in.Op, Body: in.Body})
}

// fillHole reports whether the batch has a hole in the room's seqs (before
// it or inside it) that the room's recent history can fill, and if so enters the room
// again to fetch it: the batch is then held like the pushes during any
// re-entry, and goes out after the missing messages. A hole is a message
// the client's gateway did not get in time: the bus lost it (its NATS
// connection was dropped and came back), or it came later than the
// batches after it (the gateway waits room_gap_wait for it, then sends
// without it, and the late one below the client's position would be
// taken for a duplicate), or the gateway skipped a batch for a slow
// connection. The re-entry also records the session's presence in the
// room again. At most one per roomFillEvery and room; holes in between go
// out as they are.
func (d *delivery) fillHole(rt *roomTrack, roomID string, msgs []imapi.RoomMessage) bool {
	if rt.last == 0 {
		return false
	}
	prev, next := rt.last, int64(0)
	for _, m := range msgs {
		if m.Seq <= prev {
			continue
		}
		if m.Seq > prev+1 {
			next = m.Seq
			break
		}
		prev = m.Seq
	}
	if next == 0 || time.Since(rt.filled) < roomFillEvery {
		return false
	}
	c := d.c
	c.mu.Lock()
	tok, in := c.rooms[roomID]
	gen, up := c.connGen, c.cur != nil
	c.mu.Unlock()
	if !in || !up {
		return false
	}
	c.log.Debug("hole in a room's seqs: entering it again", "room", roomID, "after", prev, "next", next)
	rt.filled = time.Now()
	rt.rejoining = gen
	if d.rejoin != nil {
		d.rejoin(roomID, tok, gen)
	} else {
		go c.rejoin(roomID, tok, gen)
	}
	return true
}

// onRoomEvent forgets a room the account was kicked from or that closed:
// there is nothing to enter again.
func (d *delivery) onRoomEvent(in *Incoming) {
	var ev imapi.RoomEvent
	if json.Unmarshal(in.Body, &ev) == nil && ev.RoomID != "" &&
		(ev.Kind == imapi.RoomEventClosed || ev.Kind == imapi.RoomEventKicked && ev.Account == d.c.cfg.Account) {
		d.forgetRoom(ev.RoomID)
	}
	d.emit(Event{Kind: EventPush, Op: in.Op, Body: in.Body})
}
