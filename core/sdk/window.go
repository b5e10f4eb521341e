package sdk

import (
	"encoding/json"
	mrand "math/rand/v2"
	"sort"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

// sendWindow is the congestion window of the durable sends on one
// connection, the way TCP paces segments: at most cwnd sends are
// unacknowledged; each ack grows it (by one below ssthresh, slow start;
// by 1/cwnd above it), and an overload refusal halves it once per flight
// (the refusals of sends that were already out when it was cut do not cut
// it again). A server that sheds load so sees the client's rate fall by
// half at once and come back gradually, not its whole backlog again after
// each pause.
//
// The window only paces; it does not order. Order is the gateway's (core/
// gateway/ORDER.md): it keeps a session's sends in order and refuses one
// with a retryable code only when the session ends, so a refused send is
// resent, in queueing order with the rest, on the next connection.
type sendWindow struct {
	cwnd, ssthresh, max float64
	inflight            int
	sent                uint64 // sends numbered so far on this connection
	cutAt               uint64 // sends numbered up to this were out at the last cut
	cuts                int    // cuts since the last ack: each doubles the pause
}

func newSendWindow(initial, max int) sendWindow {
	return sendWindow{cwnd: float64(initial), ssthresh: float64(max), max: float64(max)}
}

// room is how many more sends may go out now.
func (w *sendWindow) room() int {
	return int(w.cwnd) - w.inflight
}

// take numbers one send going out.
func (w *sendWindow) take() uint64 {
	w.inflight++
	w.sent++
	return w.sent
}

// answered uncounts the send numbered n.
func (w *sendWindow) answered(uint64) {
	w.inflight--
}

// acked counts an answer to the send numbered n that was not an overload
// refusal.
func (w *sendWindow) acked(n uint64) {
	w.answered(n)
	w.cuts = 0
	if w.cwnd < w.ssthresh {
		w.cwnd++
	} else {
		w.cwnd += 1 / w.cwnd
	}
	w.cwnd = min(w.cwnd, w.max)
}

// refused counts an overload refusal of the send numbered n and reports
// whether it cut the window (the first refusal of a flight).
func (w *sendWindow) refused(n uint64) bool {
	w.answered(n)
	if n <= w.cutAt {
		return false
	}
	w.ssthresh = max(w.cwnd/2, 1)
	w.cwnd = w.ssthresh
	w.cutAt = w.sent
	w.cuts++
	return true
}

// overloaded reports whether a refusal code means "later": the send is
// held and resent with the same client_msg_id. Only the codes the gateway
// itself retries (imapi.Code.Retryable: 503, 504) and a rate refusal: a
// 500 is the gateway's definitive answer, and the sends after it went on
// (core/gateway/ORDER.md), so a resent one would be stored behind them.
func overloaded(code imapi.Code) bool {
	return code.Retryable() || code == imapi.ErrRateLimited
}

// pumpSends is the only writer of durable sends, so that they leave in
// queueing order: whenever woken (a send queued, an answer freed room in
// the window, a connection came up, a pause ended) it sends what the
// window allows from the front of the waiting queue.
func (c *Client) pumpSends() {
	defer c.wg.Done()
	pause := time.NewTimer(time.Hour)
	pause.Stop()
	for {
		select {
		case <-c.wake:
		case <-pause.C:
		case <-c.ctx.Done():
			return
		}
		for {
			cur, batch, wait := c.takeSendable()
			if wait > 0 {
				pause.Reset(wait)
			}
			if len(batch) == 0 {
				break
			}
			for _, it := range batch {
				c.transmit(cur, it)
			}
		}
	}
}

// wakeSender makes pumpSends look at the queue again.
func (c *Client) wakeSender() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// takeSendable takes, in order, the waiting sends the window has room for
// on the current connection, or reports how long a pause still holds them.
func (c *Client) takeSendable() (*conn, []*outItem, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.cur
	if cur == nil || c.state != StateConnected || c.winConn != cur || len(c.waiting) == 0 {
		return nil, nil, 0
	}
	if wait := time.Until(c.pausedUntil); wait > 0 {
		return nil, nil, wait
	}
	n := min(c.win.room(), len(c.waiting))
	if n <= 0 {
		return nil, nil, 0
	}
	batch := make([]*outItem, 0, n)
	for len(batch) < n && len(c.waiting) > 0 {
		it := c.waiting[0]
		c.waiting = c.waiting[1:]
		if _, ok := c.outbox[it]; !ok {
			continue // acked by a late answer on an earlier connection while it waited
		}
		it.onCon = cur
		it.sentNo = c.win.take()
		batch = append(batch, it)
	}
	return cur, batch, 0
}

// requeue puts it back in the waiting queue at its place in queueing
// order; c.mu is held.
func (c *Client) requeue(it *outItem) {
	it.onCon = nil
	i := sort.Search(len(c.waiting), func(i int) bool { return c.waiting[i].order > it.order })
	c.waiting = append(c.waiting, nil)
	copy(c.waiting[i+1:], c.waiting[i:])
	c.waiting[i] = it
}

// startWindow gives the new connection cur a fresh window (the last one
// measured another path, maybe another server) and queues every
// unacknowledged send for it, in order; c.mu is held.
func (c *Client) startWindow(cur *conn) {
	c.winConn = cur
	c.win = newSendWindow(min(c.cfg.SendWindowInitial, c.cfg.SendWindow), c.cfg.SendWindow)
	c.pausedUntil = time.Time{} // a pause was the old connection's server's
	c.waiting = c.waiting[:0]
	for it := range c.outbox {
		it.onCon = nil
		c.waiting = append(c.waiting, it)
	}
	sort.Slice(c.waiting, func(i, j int) bool { return c.waiting[i].order < c.waiting[j].order })
}

// transmit sends it on cur (taken from the window by takeSendable).
//
// The answer may come from a connection the send is no longer out on: the
// connection's reader had taken it when another goroutine closed the
// connection, and the client reconnected and queued or sent the send again
// meanwhile. Such an answer counts only as a result (an ack is an ack
// whichever copy it answers): it neither uncounts a send out on the new
// connection's window nor queues again a send that is queued or out.
func (c *Client) transmit(cur *conn, it *outItem) {
	cur.send(imapi.OpSend, it.body, func(in Incoming, err error) {
		c.mu.Lock()
		out := it.onCon == cur // out on cur, counted in its window if it is still the client's
		counted := out && c.winConn == cur
		if err != nil {
			// Connection lost: the next connection's window resends it.
			if counted {
				c.win.answered(it.sentNo)
			}
			if out {
				it.onCon = nil
			}
			c.mu.Unlock()
			return
		}
		if in.Code == imapi.OK || !overloaded(in.Code) {
			if counted {
				c.win.acked(it.sentNo)
			}
			c.mu.Unlock()
			c.wakeSender()
			if in.Code == imapi.OK {
				var ack imapi.SendAck
				_ = json.Unmarshal(in.Body, &ack)
				c.finish(it, SendResult{Ack: ack})
			} else {
				c.finish(it, SendResult{Err: codeError(in)})
			}
			return
		}
		// Overload: the send waits again at its place in the queue (the
		// resend goes first, with the same client_msg_id), the window is
		// halved and a pause of about the server's hint — doubling while
		// refusals go on — lets the server's queue drain first.
		var hint time.Duration
		var e imapi.Error
		if json.Unmarshal(in.Body, &e) == nil && e.RetryAfterMs > 0 {
			hint = time.Duration(e.RetryAfterMs) * time.Millisecond
		}
		if counted {
			if c.win.refused(it.sentNo) {
				if until := time.Now().Add(c.refusalPause(hint, c.win.cuts)); until.After(c.pausedUntil) {
					c.pausedUntil = until
				}
			}
		}
		if _, queued := c.outbox[it]; queued && out {
			c.requeue(it)
		}
		c.mu.Unlock()
		c.wakeSender()
	})
}

// refusalPause is the pause after the cuts-th refusal in a row: the
// server's hint (else BackoffMin), doubled for each further one, at most
// BackoffMax, with equal jitter (half to all of it) so that clients refused
// together do not come back together.
func (c *Client) refusalPause(hint time.Duration, cuts int) time.Duration {
	d := hint
	if d <= 0 {
		d = c.cfg.BackoffMin
	}
	d <<= min(max(cuts-1, 0), 20)
	if d > c.cfg.BackoffMax || d <= 0 {
		d = c.cfg.BackoffMax
	}
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}
