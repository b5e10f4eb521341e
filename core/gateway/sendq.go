package gateway

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
)

// sendLane keeps one session's sends in order (ORDER.md): at most one
// batch of them is on the bus; sends that arrive meanwhile wait and go,
// together, as the next batch. A batch that times out or comes back
// refused for a retryable reason is sent again as it is (same client
// message ids: the store dedupes) before anything after it, until it is
// answered or the session gives up and ends.
type sendLane struct {
	mu      sync.Mutex
	waiting []queuedSend
	batch   *sendBatch // on the bus; nil when idle
	closed  bool
}

type queuedSend struct {
	body []byte // the client's SendReq
	done func(Reply)
}

// sendBatch is the batch on the bus and its attempts.
type sendBatch struct {
	sends   []queuedSend
	attempt int       // attempts sent so far; an answer of an older one still counts if it is an answer
	first   time.Time // when the batch first went out: the give-up clock
	sent    time.Time // when the latest attempt went out
	timer   *time.Timer
}

// goSend queues a send of the session (Go's path for OpSend).
func (s *Session) goSend(body []byte, done func(Reply)) {
	l := &s.extras().sends
	l.mu.Lock()
	// A lane made after closeSends looked for one (and found none) is
	// not closed, but the session is: unregister sets closed first.
	if l.closed || s.closed.Load() {
		l.mu.Unlock()
		// The session is gone: the client resends on its next one.
		done(errReply(imapi.ErrUnavailable, "session closed"))
		return
	}
	queued := len(l.waiting)
	if l.batch != nil {
		queued += len(l.batch.sends)
	}
	if queued >= s.g.cfg.MaxInflight {
		l.mu.Unlock()
		// A client past the bound sends without waiting for acks: refusing
		// this one and taking the next would store them out of order, so
		// the session ends and the client resends in order on a new one.
		s.g.m.refused.WithLabelValues("sends").Inc()
		done(errReply(imapi.ErrRateLimited, "too many sends in flight"))
		s.g.endSession(s, "too many sends in flight")
		return
	}
	l.waiting = append(l.waiting, queuedSend{body: body, done: done})
	start := l.batch == nil
	var b *sendBatch
	if start {
		b = s.nextBatchLocked()
	}
	l.mu.Unlock()
	if b != nil {
		s.sendBatch(b, true)
	}
}

// nextBatchLocked takes the waiting sends (at most MaxSendBatch) as the
// lane's batch; nil when none wait. The lane's mu is held.
func (s *Session) nextBatchLocked() *sendBatch {
	l := &s.extra.Load().sends
	if len(l.waiting) == 0 || l.closed {
		l.batch = nil
		return nil
	}
	// At most the rate limiter's burst: a batch takes one token per send.
	n := min(len(l.waiting), s.g.cfg.MaxSendBatch, s.g.cfg.RequestBurst)
	b := &sendBatch{sends: make([]queuedSend, n)}
	copy(b.sends, l.waiting)
	l.waiting = append(l.waiting[:0], l.waiting[n:]...)
	l.batch = b
	return b
}

// sendBatch sends b (again). fresh: its first attempt, which pays the
// session's request rate (a resend does not pay twice): when the session
// is over its rate the batch waits for the tokens instead of refusing
// anything, which would let a later send overtake a refused one.
func (s *Session) sendBatch(b *sendBatch, fresh bool) {
	g := s.g
	l := &s.extra.Load().sends
	_, limiter := s.requestState()
	if fresh {
		if d := limiter.ReserveN(time.Now(), len(b.sends)).Delay(); d > 0 {
			g.m.sendDelayed.Inc()
			l.mu.Lock()
			if l.batch == b && !l.closed {
				b.timer = time.AfterFunc(d, func() { s.sendBatch(b, false) })
			}
			l.mu.Unlock()
			return
		}
	}
	l.mu.Lock()
	if l.batch != b || l.closed {
		l.mu.Unlock()
		return
	}
	now := time.Now()
	if b.attempt == 0 {
		b.first = now
		g.m.sendBatches.Inc()
		g.m.sendBatchSize.Observe(float64(len(b.sends)))
	} else {
		g.m.sendRetries.Inc()
	}
	b.attempt++
	b.sent = now
	attempt := b.attempt
	// The first three attempts wait the attempt timeout each: a retry
	// that lands on the same dead or paused node again (the queue group
	// picks at random until the NATS servers drop it, seconds later) costs
	// little. Later ones wait twice as long each, so that a slow but live
	// cluster is not flooded with copies.
	wait := min(g.attemptTimeout()<<min(max(attempt-3, 0), 10), g.cfg.RequestTimeout.D())
	b.timer = time.AfterFunc(wait, func() { s.batchAnswered(b, attempt, errReply(imapi.ErrTimeout, "attempt timed out"), true) })
	env := s.batchEnvelope(b)
	l.mu.Unlock()
	s.forward(buswire.OpSendBatch, env, func(r Reply) { s.batchAnswered(b, attempt, r, false) })
}

// batchEnvelope is the buswire.Request of an attempt of b:
// {"session":…,"sent":<now, unix ms>,"body":{"sends":[…]}}.
func (s *Session) batchEnvelope(b *sendBatch) []byte {
	prefix, _ := s.requestState()
	n := len(prefix) + 64
	for _, q := range b.sends {
		n += len(q.body) + 1
	}
	env := make([]byte, 0, n)
	env = append(env, prefix...)
	env = append(env, `,"sent":`...)
	env = strconv.AppendInt(env, time.Now().UnixMilli(), 10)
	env = append(env, `,"body":{"sends":[`...)
	for i, q := range b.sends {
		if i > 0 {
			env = append(env, ',')
		}
		env = append(env, q.body...)
	}
	return append(env, "]}}"...)
}

// batchAnswered takes an answer of attempt of b: the batch's answers go to
// their sends; a retryable tail (or the whole batch, when the attempt
// failed) is sent again after a pause; the next batch goes once b is done.
// timedOut: the attempt's own timer, not an answer.
func (s *Session) batchAnswered(b *sendBatch, attempt int, r Reply, timedOut bool) {
	g := s.g
	l := &s.extra.Load().sends
	var results []buswire.SendResult
	if r.Code == imapi.OK {
		var resp buswire.SendBatchResp
		if err := buswire.DecodeSendBatchResp(r.Body, &resp); err != nil || len(resp.Results) == 0 || len(resp.Results) > len(b.sends) {
			r = errReply(imapi.ErrInternal, "bad send batch reply")
		} else {
			results = resp.Results
		}
	}
	l.mu.Lock()
	if l.batch != b || l.closed {
		l.mu.Unlock()
		return // answered already, or the session ended
	}
	if results == nil && attempt != b.attempt {
		// A failure (or the timer) of an older attempt: a newer one is out.
		l.mu.Unlock()
		return
	}
	b.timer.Stop()
	if results != nil {
		g.sendAnswered(time.Since(b.sent))
	}
	var answered []queuedSend
	var replies []Reply
	retryAfter := time.Duration(0)
	switch {
	case results != nil:
		// A prefix of definitive answers, then maybe a retryable tail.
		i := 0
		for ; i < len(results); i++ {
			res := results[i]
			if res.Code.Retryable() {
				retryAfter = time.Duration(res.RetryAfterMs) * time.Millisecond
				break
			}
			answered = append(answered, b.sends[i])
			replies = append(replies, sendReply(res))
		}
		b.sends = b.sends[i:]
	case r.Code.Retryable():
		var e imapi.Error
		if json.Unmarshal(r.Body, &e) == nil {
			retryAfter = time.Duration(e.RetryAfterMs) * time.Millisecond
		}
	default:
		// A definitive refusal of the whole batch (a bad request, an
		// internal error): every send of it gets it.
		answered, replies = b.sends, nil
		for range b.sends {
			replies = append(replies, r)
		}
		b.sends = nil
	}
	var next *sendBatch
	giveUp := false
	switch {
	case len(b.sends) == 0:
		next = s.nextBatchLocked()
	case time.Since(b.first) >= g.cfg.RequestTimeout.D():
		giveUp = true
	default:
		// The tail again, after the service's hint or a short pause that
		// doubles with each attempt (a stalled node drops out of the
		// queue group within seconds; a node that answers "busy" gets its
		// queue drained first).
		if retryAfter <= 0 {
			retryAfter = min(25*time.Millisecond<<min(b.attempt-1, 6), time.Second)
		}
		if timedOut {
			retryAfter = 0 // the attempt's wait was the pause
		}
		b.timer = time.AfterFunc(retryAfter, func() { s.sendBatch(b, false) })
		// A node that died or hangs makes many batches retry at once: one
		// line a second names an example and counts the rest.
		n := g.sendRetried.Add(1)
		first, attempt, sends := clientMsgID(b.sends[0].body), b.attempt, len(b.sends)
		g.retryLog.Do(func() {
			g.log.Warn("send batches sent again (a service node did not answer in time or refused for now)",
				"count", n-g.retryLogged.Swap(n), "session", s.info.SessionID, "account", s.info.Account, "first", first,
				"sends", sends, "attempt", attempt, "code", r.Code, "timed_out", timedOut)
		})
	}
	l.mu.Unlock()
	for i, q := range answered {
		q.done(replies[i])
	}
	if giveUp {
		g.m.sendGiveUps.Inc()
		g.log.Warn("send batch not stored in time; the session ends so that the client resends in order",
			"session", s.info.SessionID, "account", s.info.Account, "first", clientMsgID(b.sends[0].body),
			"sends", len(b.sends), "attempts", b.attempt, "code", r.Code)
		g.endSession(s, "service unavailable")
		return
	}
	if next != nil {
		s.sendBatch(next, true)
	}
}

// sendReply is a send's answer to the client.
func sendReply(res buswire.SendResult) Reply {
	if res.Code != imapi.OK {
		b, _ := json.Marshal(imapi.Error{Code: res.Code, Message: res.Message, RetryAfterMs: res.RetryAfterMs})
		return Reply{Code: res.Code, Body: b}
	}
	if res.Ack == nil {
		return Reply{Body: []byte("null")}
	}
	return Reply{Body: buswire.AppendSendAck(make([]byte, 0, 96), res.Ack)}
}

// closeSends ends the lane with its session: every send waiting or on the
// bus is answered "unavailable" (the client resends them on its next
// session; one already stored is then answered as a duplicate).
func (s *Session) closeSends() {
	x := s.extra.Load()
	if x == nil {
		return // a session that never sent; goSend refuses by s.closed
	}
	l := &x.sends
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	var all []queuedSend
	if l.batch != nil {
		if l.batch.timer != nil {
			l.batch.timer.Stop()
		}
		all = append(all, l.batch.sends...)
		l.batch = nil
	}
	all = append(all, l.waiting...)
	l.waiting = nil
	l.mu.Unlock()
	for _, q := range all {
		q.done(errReply(imapi.ErrUnavailable, "session closed"))
	}
}

// clientMsgID is a send's client_msg_id, for logs.
func clientMsgID(body []byte) string {
	var req imapi.SendReq
	_ = buswire.DecodeSendReq(body, &req)
	return strconv.Quote(req.ClientMsgID)
}

// attemptTimeout is how long a send batch waits for its answer before it
// goes again: send_attempt_timeout, or eight times the recent answer time
// when that is longer. An overloaded cluster answers late but answers: a
// copy of every batch then would only add work (and duplicate-key retries
// in the store) to the overload, while a dead node's batches wait a little
// longer to move.
func (g *Gateway) attemptTimeout() time.Duration {
	return max(g.cfg.SendAttemptTimeout.D(), 8*time.Duration(g.sendLatency.Load()))
}

// sendAnswered feeds the answer time of a send batch attempt into the
// moving average (weight 1/16) that attemptTimeout follows.
func (g *Gateway) sendAnswered(d time.Duration) {
	for {
		old := g.sendLatency.Load()
		next := old + (int64(d)-old)/16
		if g.sendLatency.CompareAndSwap(old, next) {
			return
		}
	}
}
