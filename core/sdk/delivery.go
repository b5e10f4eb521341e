package sdk

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

// loopMsg is one input of the delivery loop.
type loopMsg struct {
	push         *Incoming
	event        *Event
	ack          *imapi.SendAck
	clientMsgID  string
	synced       *syncResult
	convs        []imapi.Conversation
	gapCheck     string // conversation whose held-back pushes are due
	notices      *noticePage
	noticeSync   bool   // fetch the notices missed (after a connection)
	roomEntering string // the app enters this room (hold its pushes)
	roomEntered  *roomEntered
	roomForget   string
	rejoin       *rejoinStart
	rejoined     *rejoinResult
}

type syncResult struct {
	conv    string
	after   int64
	msgs    []imapi.Message
	hasMore bool
	err     error
}

// convState is what the delivery loop knows of one conversation.
type convState struct {
	last    int64              // last seq delivered (or acked by us) in order
	maxSeen int64              // highest seq the server has told us about
	own     map[int64]struct{} // acked seqs of our own sends beyond last
	syncing bool
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

// deliveryLoop owns the per-conversation state. Messages are delivered to
// the application only in sequence order and only once: a push that leaves
// a gap starts a sync of the conversation from the last delivered seq, and
// duplicates (seq ≤ last) are dropped.
func (c *Client) deliveryLoop() {
	defer c.wg.Done()
	convs := map[string]*convState{}
	for id, seq := range c.cfg.LastSeqs {
		convs[id] = &convState{last: seq, maxSeen: seq}
	}
	own := newOwnIDs(8192)
	get := func(id string) *convState {
		cs := convs[id]
		if cs == nil {
			cs = &convState{}
			convs[id] = cs
		}
		return cs
	}
	emit := func(ev Event) bool {
		select {
		case c.events <- ev:
			return true
		case <-c.ctx.Done():
			return false
		}
	}
	record := func(id string, cs *convState) {
		c.mu.Lock()
		c.lastSeqs[id] = cs.last
		c.mu.Unlock()
	}
	startSync := func(id string, cs *convState) {
		if cs.syncing {
			return
		}
		cs.syncing = true
		c.jobs.push(job{conv: id, after: cs.last})
	}
	deliver := func(m *imapi.Message, cs *convState) bool {
		cs.last = m.Seq
		delete(cs.own, m.Seq)
		if m.From == c.cfg.Account && own.has(m.ClientMsgID) {
			return true // our own send, already acknowledged to the app
		}
		return emit(Event{Kind: EventMessage, Message: m})
	}

	// advance moves last over our own acked seqs and delivers held pushes
	// that have become contiguous.
	var advance func(cs *convState) bool
	advance = func(cs *convState) bool {
		for {
			if _, ok := cs.own[cs.last+1]; ok {
				delete(cs.own, cs.last+1)
				cs.last++
				continue
			}
			if m := cs.held[cs.last+1]; m != nil {
				delete(cs.held, m.Seq)
				if !deliver(m, cs) {
					return false
				}
				continue
			}
			for seq := range cs.held {
				if seq <= cs.last {
					delete(cs.held, seq)
				}
			}
			return true
		}
	}
	for {
		var in loopMsg
		select {
		case in = <-c.loopIn:
		case <-c.ctx.Done():
			return
		}
		switch {
		case in.event != nil:
			if !emit(*in.event) {
				return
			}
		case in.ack != nil:
			own.add(in.clientMsgID)
			a := in.ack
			cs := get(a.ConvID)
			if a.Seq > cs.maxSeen {
				cs.maxSeen = a.Seq
			}
			if a.Seq > cs.last {
				if cs.own == nil {
					cs.own = map[int64]struct{}{}
				}
				cs.own[a.Seq] = struct{}{}
				if !cs.syncing && !advance(cs) {
					return
				}
				record(a.ConvID, cs)
			}
			if !emit(Event{Kind: EventSent, Ack: a, ClientMsgID: in.clientMsgID}) {
				return
			}
		case in.convs != nil:
			for _, cv := range in.convs {
				cs := get(cv.ConvID)
				if cv.LastSeq > cs.maxSeen {
					cs.maxSeen = cv.LastSeq
				}
				if cv.LastSeq > cs.last {
					startSync(cv.ConvID, cs)
				}
			}
		case in.synced != nil:
			r := in.synced
			cs := get(r.conv)
			cs.syncing = false
			if r.err != nil {
				// Retried by the conversation list sync after reconnect.
				continue
			}
			for i := range r.msgs {
				m := &r.msgs[i]
				if m.Seq <= cs.last {
					continue
				}
				// Sync answers are authoritative: a hole in the seqs
				// means there is no message there.
				if !deliver(m, cs) {
					return
				}
			}
			if !advance(cs) {
				return
			}
			record(r.conv, cs)
			switch {
			case r.hasMore && len(r.msgs) > 0:
				startSync(r.conv, cs)
			case len(r.msgs) == 0:
				cs.maxSeen = cs.last // nothing more exists
			case cs.maxSeen > cs.last:
				startSync(r.conv, cs)
			}
			if len(cs.held) > 0 && !cs.syncing && !cs.gapTimer {
				cs.gapTimer = true
				conv := r.conv
				time.AfterFunc(c.cfg.GapWait, func() { c.post(loopMsg{gapCheck: conv}) })
			}
		case in.gapCheck != "":
			cs := get(in.gapCheck)
			cs.gapTimer = false
			if len(cs.held) > 0 && !cs.syncing {
				// The gap did not fill in time: fetch what is missing.
				startSync(in.gapCheck, cs)
			}
		case in.notices != nil:
			if !c.onNoticePage(in.notices, emit) {
				return
			}
		case in.noticeSync:
			c.startNoticeSync()
		case in.roomEntering != "":
			c.roomTrack(in.roomEntering).entering++
		case in.roomEntered != nil:
			if !c.onRoomEntered(in.roomEntered, emit) {
				return
			}
		case in.roomForget != "":
			delete(c.roomLoop, in.roomForget)
		case in.rejoin != nil:
			c.startRejoin(in.rejoin)
		case in.rejoined != nil:
			if !c.onRejoined(in.rejoined, emit) {
				return
			}
		case in.push != nil:
			if !c.handlePush(in.push, get, startSync, deliver, advance, record, emit) {
				return
			}
		}
	}
}

func (c *Client) handlePush(in *Incoming, get func(string) *convState, startSync func(string, *convState),
	deliver func(*imapi.Message, *convState) bool, advance func(*convState) bool, record func(string, *convState), emit func(Event) bool) bool {
	switch in.Op {
	case imapi.OpPush:
		var m imapi.Message
		if err := json.Unmarshal(in.Body, &m); err != nil || m.ConvID == "" {
			c.log.Warn("bad message push", "err", err)
			return true
		}
		cs := get(m.ConvID)
		if m.Seq > cs.maxSeen {
			cs.maxSeen = m.Seq
		}
		if m.Seq <= cs.last {
			return true // duplicate
		}
		if m.Seq == cs.last+1 && !cs.syncing {
			if !deliver(&m, cs) || !advance(cs) {
				return false
			}
			record(m.ConvID, cs)
			return true
		}
		// Ahead of a gap (or during a sync): hold it back.
		if cs.held == nil {
			cs.held = map[int64]*imapi.Message{}
		}
		if len(cs.held) >= maxHeld {
			cs.held = nil
			startSync(m.ConvID, cs)
			return true
		}
		cs.held[m.Seq] = &m
		if !cs.syncing && !cs.gapTimer {
			cs.gapTimer = true
			conv := m.ConvID
			time.AfterFunc(c.cfg.GapWait, func() { c.post(loopMsg{gapCheck: conv}) })
		}
		return true
	case imapi.OpReceipt:
		var r imapi.Receipt
		if json.Unmarshal(in.Body, &r) == nil {
			return emit(Event{Kind: EventReceipt, Receipt: &r})
		}
	case imapi.OpRecalled:
		var r imapi.Recalled
		if json.Unmarshal(in.Body, &r) == nil {
			return emit(Event{Kind: EventRecalled, Recalled: &r})
		}
	case imapi.OpGroupEvent:
		var g imapi.GroupEvent
		if json.Unmarshal(in.Body, &g) == nil {
			return emit(Event{Kind: EventGroup, Group: &g})
		}
	case imapi.OpNotice:
		return c.onNoticePush(in.Body, emit)
	case imapi.OpProfileChanged:
		var p imapi.Profile
		if json.Unmarshal(in.Body, &p) == nil {
			return emit(Event{Kind: EventProfile, Profile: &p})
		}
	case imapi.OpRoomMessages:
		return c.onRoomBatch(in, emit)
	case imapi.OpRoomEvent:
		return c.onRoomEvent(in, emit)
	case imapi.OpKick:
		var k imapi.Kick
		_ = json.Unmarshal(in.Body, &k)
		return emit(Event{Kind: EventKicked, Kick: &k})
	default:
		return emit(Event{Kind: EventPush, Op: in.Op, Body: in.Body})
	}
	return true
}

// maxHeld bounds the pushes held back per conversation.
const maxHeld = 1024

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
			if resp.Conversations == nil {
				resp.Conversations = []imapi.Conversation{}
			}
			c.post(loopMsg{convs: resp.Conversations})
			continue
		}
		var resp imapi.SyncResp
		err := c.Request(c.ctx, imapi.OpSync, imapi.SyncReq{ConvID: j.conv, AfterSeq: j.after, Limit: c.cfg.SyncPageSize}, &resp)
		c.post(loopMsg{synced: &syncResult{conv: j.conv, after: j.after, msgs: resp.Messages, hasMore: resp.HasMore, err: err}})
	}
}
