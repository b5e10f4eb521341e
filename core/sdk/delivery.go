package sdk

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

// The delivery loop (one goroutine per client, deliveryLoop) owns what the
// client has delivered to the application: the position of every
// conversation, of the notice stream and of every room. Everything that
// moves them reaches it as a loopMsg: pushes, acks, sync pages, timers.
//
// It never waits for the application. Events go into the Events channel
// without blocking; when the channel is full the application is behind
// and, until it has read half of it again:
//   - messages, notices and room messages are not handed over and their
//     positions stay where the application is: once it has caught up the
//     client fetches them again (conversation and notice sync; rooms are
//     entered again for their recent history), so none is lost (rooms:
//     within what they keep, else EventRoom says Gap);
//   - every other event is dropped and counted (Client.DroppedEvents); the
//     first event after catching up is an EventDropped with the number.
//
// So a slow application never holds up acks, answers or the connection,
// and what the client keeps for it is bounded by Config.EventBuffer.

// loopMsg is one input of the delivery loop. Each type carries what one
// kind of input needs and handles it, on the loop's goroutine.
type loopMsg interface{ handle(d *delivery) }

// The inputs of the delivery loop. Rooms' (roomEntering, roomEntered,
// roomForget, rejoinStart, rejoinResult) are in rejoin.go, the notice
// stream's (noticeSyncDue, noticePage) in user.go.
type (
	// pushed is a push frame from the server.
	pushed struct{ in Incoming }
	// appEvent goes to the application as it is (a state change, a send
	// refused for good).
	appEvent struct{ ev Event }
	// sendAcked: the server stored a message of the outbox.
	sendAcked struct {
		ack         imapi.SendAck
		clientMsgID string
	}
	// convList is the conversation list, fetched after every connection.
	convList struct{ convs []imapi.Conversation }
	// syncPage is one page of a conversation's messages after a seq.
	syncPage struct {
		conv    string
		msgs    []imapi.Message
		hasMore bool
		err     error
	}
	// gapDue: the wait for the gap before conv's held pushes is over.
	gapDue struct{ conv string }
)

// catchUpPoll is how often the loop looks whether an application that fell
// behind has read half the Events channel again (nothing tells it).
const catchUpPoll = 20 * time.Millisecond

// delivery is the delivery loop's state.
type delivery struct {
	c       *Client
	convs   map[string]*convState
	own     *ownIDs
	notices noticeState
	rooms   map[string]*roomTrack

	// behind: the application let the Events channel fill up (see the top
	// of this file); catchUp ticks until it has read half of it.
	behind  bool
	catchUp *time.Ticker
	dropped int       // events dropped since the last EventDropped
	warned  time.Time // the last warning that the application is behind

	// rejoin, when set (tests), replaces entering a room again to fill a
	// hole (fillHole).
	rejoin func(roomID, token string, gen uint64)
}

func newDelivery(c *Client) *delivery {
	d := &delivery{c: c, convs: map[string]*convState{}, own: newOwnIDs(8192), rooms: map[string]*roomTrack{}}
	for id, seq := range c.cfg.LastSeqs {
		d.convs[id] = &convState{last: seq, maxSeen: seq}
	}
	d.notices.last, d.notices.maxSeen = c.cfg.LastNoticeSeq, c.cfg.LastNoticeSeq
	d.notices.delivered.Store(c.cfg.LastNoticeSeq)
	return d
}

// convState is what the delivery loop knows of one conversation.
type convState struct {
	last    int64              // last seq delivered (or acked by us) in order
	maxSeen int64              // highest seq the server has told us about
	own     map[int64]struct{} // acked seqs of our own sends beyond last
	syncing bool
	// behind: the application was behind when a message after last was
	// due; the messages from last on are fetched again once it caught up.
	behind bool
	// held are pushes that arrived ahead of a gap. Pushes of one
	// conversation can overtake each other on the server; a short wait
	// (Config.GapWait) usually fills the gap without a sync.
	held     map[int64]*imapi.Message
	gapTimer bool
}

// ownIDs remembers recent client_msg_ids of this client's acked sends, so
// that its own messages coming back through sync are not delivered as new.
type ownIDs struct {
	set  map[string]struct{}
	ring []string
	next int
}

func newOwnIDs(n int) *ownIDs { return &ownIDs{set: map[string]struct{}{}, ring: make([]string, n)} }

func (o *ownIDs) add(id string) {
	if old := o.ring[o.next]; old != "" {
		delete(o.set, old)
	}
	o.ring[o.next] = id
	o.set[id] = struct{}{}
	o.next = (o.next + 1) % len(o.ring)
}

func (o *ownIDs) has(id string) bool { _, ok := o.set[id]; return ok }

// deliveryLoop runs the delivery loop until the client closes.
func (c *Client) deliveryLoop() {
	defer c.wg.Done()
	d := c.loop
	defer d.stopCatchUp()
	for {
		select {
		case m := <-c.loopIn:
			m.handle(d)
		case <-d.catchUpTicks():
			d.checkCaughtUp()
		case <-c.ctx.Done():
			return
		}
	}
}

// offer hands ev to the application unless it is behind, and reports
// whether it did. A full channel puts the application behind.
func (d *delivery) offer(ev Event) bool {
	if d.behind {
		return false
	}
	select {
	case d.c.events <- ev:
		return true
	default:
	}
	d.behind = true
	d.catchUp = time.NewTicker(catchUpPoll)
	if time.Since(d.warned) > behindWarnEvery {
		d.warned = time.Now()
		d.c.log.Warn("the application is not reading events: dropping them until it catches up",
			"buffer", cap(d.c.events), "dropped_so_far", d.c.dropped.Load())
	}
	return false
}

// behindWarnEvery rate-limits the warning: an application that reads too
// slowly falls behind again and again.
const behindWarnEvery = time.Minute

// emit hands ev to the application, or drops and counts it.
func (d *delivery) emit(ev Event) {
	if !d.offer(ev) {
		d.dropped++
		d.c.dropped.Add(1)
	}
}

func (d *delivery) catchUpTicks() <-chan time.Time {
	if d.catchUp == nil {
		return nil
	}
	return d.catchUp.C
}

func (d *delivery) stopCatchUp() {
	if d.catchUp != nil {
		d.catchUp.Stop()
		d.catchUp = nil
	}
}

// checkCaughtUp ends the behind state once the application has read half
// of the Events channel: it reports what was dropped, then fetches the
// messages, notices and room messages it held back.
func (d *delivery) checkCaughtUp() {
	if len(d.c.events) > cap(d.c.events)/2 {
		return
	}
	d.behind = false
	d.stopCatchUp()
	if d.dropped > 0 && d.offer(Event{Kind: EventDropped, Dropped: d.dropped}) {
		d.dropped = 0
	}
	for id, cs := range d.convs {
		if cs.behind {
			cs.behind = false
			d.startSync(id, cs)
		}
	}
	if d.notices.behind {
		d.notices.behind = false
		d.startNoticeSync()
	}
	d.refetchRooms()
}

func (d *delivery) conv(id string) *convState {
	cs := d.convs[id]
	if cs == nil {
		cs = &convState{}
		d.convs[id] = cs
	}
	return cs
}

// record publishes a conversation's position for Client.LastSeqs.
func (d *delivery) record(id string, cs *convState) {
	d.c.mu.Lock()
	d.c.lastSeqs[id] = cs.last
	d.c.mu.Unlock()
}

// startSync fetches the messages of a conversation after its position
// (the syncer answers with a syncPage), unless one is under way or the
// application is behind (then it is fetched once it caught up).
func (d *delivery) startSync(id string, cs *convState) {
	if d.behind {
		cs.behind = true
		return
	}
	if cs.syncing {
		return
	}
	cs.syncing = true
	d.c.jobs.push(job{conv: id, after: cs.last})
}

// deliver hands m, the next message of cs, to the application and moves
// the position. It reports false when the application is behind: cs then
// waits for a sync, and what it held is dropped (the sync fetches it).
func (d *delivery) deliver(cs *convState, m *imapi.Message) bool {
	ownSend := m.From == d.c.cfg.Account && d.own.has(m.ClientMsgID) // already acknowledged to the app
	if !ownSend && !d.offer(Event{Kind: EventMessage, Message: m}) {
		cs.behind = true
		cs.held = nil
		return false
	}
	cs.last = m.Seq
	delete(cs.own, m.Seq)
	return true
}

// advance moves the position over our own acked seqs and delivers the
// held pushes that have become contiguous.
func (d *delivery) advance(cs *convState) {
	for {
		if _, ok := cs.own[cs.last+1]; ok {
			delete(cs.own, cs.last+1)
			cs.last++
			continue
		}
		m := cs.held[cs.last+1]
		if m == nil {
			break
		}
		delete(cs.held, m.Seq)
		if !d.deliver(cs, m) {
			return
		}
	}
	for seq := range cs.held {
		if seq <= cs.last {
			delete(cs.held, seq)
		}
	}
}

// waitForGap gives the pushes held ahead of a gap Config.GapWait to be
// joined by the missing ones before the conversation is synced.
func (d *delivery) waitForGap(id string, cs *convState) {
	if len(cs.held) == 0 || cs.syncing || cs.gapTimer {
		return
	}
	cs.gapTimer = true
	time.AfterFunc(d.c.cfg.GapWait, func() { d.c.post(gapDue{conv: id}) })
}

// onMessage delivers a pushed message in order: a duplicate (seq ≤ the
// position) is dropped, one ahead of a gap is held back.
func (d *delivery) onMessage(m *imapi.Message) {
	cs := d.conv(m.ConvID)
	cs.maxSeen = max(cs.maxSeen, m.Seq)
	switch {
	case m.Seq <= cs.last: // a duplicate
	case cs.behind: // the sync after the application caught up fetches it
	case m.Seq == cs.last+1 && !cs.syncing:
		if d.deliver(cs, m) {
			d.advance(cs)
		}
		d.record(m.ConvID, cs)
	case len(cs.held) >= maxHeld:
		cs.held = nil
		d.startSync(m.ConvID, cs)
	default:
		if cs.held == nil {
			cs.held = map[int64]*imapi.Message{}
		}
		cs.held[m.Seq] = m
		d.waitForGap(m.ConvID, cs)
	}
}

// maxHeld bounds the pushes held back per conversation.
const maxHeld = 1024

func (m pushed) handle(d *delivery) {
	in := &m.in
	switch in.Op {
	case imapi.OpPush:
		msg, err := decode[imapi.Message](in.Body)
		if err != nil || msg.ConvID == "" {
			d.c.log.Warn("bad message push", "err", err)
			return
		}
		d.onMessage(msg)
	case imapi.OpReceipt:
		if r, err := decode[imapi.Receipt](in.Body); err == nil {
			d.emit(Event{Kind: EventReceipt, Receipt: r})
		}
	case imapi.OpRecalled:
		if r, err := decode[imapi.Recalled](in.Body); err == nil {
			d.emit(Event{Kind: EventRecalled, Recalled: r})
		}
	case imapi.OpGroupEvent:
		if g, err := decode[imapi.GroupEvent](in.Body); err == nil {
			d.emit(Event{Kind: EventGroup, Group: g})
		}
	case imapi.OpNotice:
		d.onNoticePush(in.Body)
	case imapi.OpProfileChanged:
		if p, err := decode[imapi.Profile](in.Body); err == nil {
			d.emit(Event{Kind: EventProfile, Profile: p})
		}
	case imapi.OpRoomMessages:
		d.onRoomBatch(in)
	case imapi.OpRoomEvent:
		d.onRoomEvent(in)
	case imapi.OpKick:
		var k imapi.Kick
		_ = json.Unmarshal(in.Body, &k)
		d.emit(Event{Kind: EventKicked, Kick: &k})
	default:
		d.emit(Event{Kind: EventPush, Op: in.Op, Body: in.Body})
	}
}

// decode decodes a push body.
func decode[T any](body []byte) (*T, error) {
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

func (m appEvent) handle(d *delivery) { d.emit(m.ev) }

// handle moves the conversation's position over the acked seq (the
// message is the application's own: it is not delivered to it again) and
// reports the ack.
func (m sendAcked) handle(d *delivery) {
	d.own.add(m.clientMsgID)
	a := m.ack
	cs := d.conv(a.ConvID)
	cs.maxSeen = max(cs.maxSeen, a.Seq)
	if a.Seq > cs.last {
		if cs.own == nil {
			cs.own = map[int64]struct{}{}
		}
		cs.own[a.Seq] = struct{}{}
		if !cs.syncing {
			d.advance(cs)
		}
		d.record(a.ConvID, cs)
	}
	d.emit(Event{Kind: EventSent, Ack: &a, ClientMsgID: m.clientMsgID})
}

// handle syncs every conversation with messages past its position.
func (m convList) handle(d *delivery) {
	for _, cv := range m.convs {
		cs := d.conv(cv.ConvID)
		cs.maxSeen = max(cs.maxSeen, cv.LastSeq)
		if cv.LastSeq > cs.last {
			d.startSync(cv.ConvID, cs)
		}
	}
}

// handle delivers a sync page, then the held pushes it made contiguous,
// and asks for the next page while the server has more.
func (r syncPage) handle(d *delivery) {
	cs := d.conv(r.conv)
	cs.syncing = false
	if r.err != nil {
		return // the conversation list sync after the next connection retries
	}
	for i := range r.msgs {
		m := &r.msgs[i]
		if m.Seq <= cs.last {
			continue
		}
		// Sync answers are authoritative: a hole in the seqs means there
		// is no message there.
		if !d.deliver(cs, m) {
			break
		}
	}
	if !cs.behind {
		d.advance(cs)
	}
	d.record(r.conv, cs)
	switch {
	case cs.behind:
		// Fetched again once the application caught up.
	case r.hasMore && len(r.msgs) > 0:
		d.startSync(r.conv, cs)
	case len(r.msgs) == 0:
		cs.maxSeen = cs.last // nothing more exists
	case cs.maxSeen > cs.last:
		d.startSync(r.conv, cs)
	}
	d.waitForGap(r.conv, cs)
}

// handle syncs a conversation whose gap did not fill in time.
func (m gapDue) handle(d *delivery) {
	cs := d.conv(m.conv)
	cs.gapTimer = false
	if len(cs.held) > 0 && !cs.syncing {
		d.startSync(m.conv, cs)
	}
}

// job is work for the syncer: the conversation list, or one page of a
// conversation after a seq.
type job struct {
	convList bool
	conv     string
	after    int64
}

// jobQueue is an unbounded FIFO, so that the delivery loop never blocks on
// the syncer.
type jobQueue struct {
	mu     sync.Mutex
	items  []job
	signal chan struct{}
	closed bool
}

func newJobQueue() *jobQueue { return &jobQueue{signal: make(chan struct{}, 1)} }

func (q *jobQueue) push(j job) {
	q.mu.Lock()
	q.items = append(q.items, j)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *jobQueue) pop() (job, bool) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return job{}, false
		}
		if len(q.items) > 0 {
			j := q.items[0]
			q.items = q.items[1:]
			q.mu.Unlock()
			return j, true
		}
		q.mu.Unlock()
		<-q.signal
	}
}

func (q *jobQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// syncer runs sync requests one at a time and hands the results to the
// delivery loop.
func (c *Client) syncer() {
	defer c.wg.Done()
	for {
		j, ok := c.jobs.pop()
		if !ok {
			return
		}
		if j.convList {
			var resp imapi.ConvListResp
			if err := c.Request(c.ctx, imapi.OpConvList, nil, &resp); err != nil {
				c.log.Debug("conversation list", "err", err)
				continue // the next connection asks again
			}
			c.post(convList{convs: resp.Conversations})
			continue
		}
		var resp imapi.SyncResp
		err := c.Request(c.ctx, imapi.OpSync, imapi.SyncReq{ConvID: j.conv, AfterSeq: j.after, Limit: c.cfg.SyncPageSize}, &resp)
		c.post(syncPage{conv: j.conv, msgs: resp.Messages, hasMore: resp.HasMore, err: err})
	}
}
