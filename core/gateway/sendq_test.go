package gateway

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

// batchLog records the send batches a fake service received.
type batchLog struct {
	mu       sync.Mutex
	batches  [][]string // client_msg_ids of each batch, in arrival order
	out      int        // batches answered later, still out
	maxOut   int
	attempts int
}

func (b *batchLog) add(sends []imapi.SendReq) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []string
	for _, s := range sends {
		ids = append(ids, s.ClientMsgID)
	}
	b.batches = append(b.batches, ids)
	b.attempts++
	return b.attempts
}

func (b *batchLog) get() [][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.batches)
}

func acks(sends []imapi.SendReq) buswire.SendBatchResp {
	var r buswire.SendBatchResp
	for _, s := range sends {
		r.Results = append(r.Results, buswire.SendResult{Ack: &imapi.SendAck{MsgID: "id-" + s.ClientMsgID, ConvID: "c", Seq: 1}})
	}
	return r
}

func sendReq(cmid string) imapi.SendReq {
	return imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", ClientMsgID: cmid, Type: "text", Body: json.RawMessage(`{}`)}
}

// sendAll writes the sends at once (pipelined) and returns their answers
// by client_msg_id, and the other frames seen.
func (c *client) sendAll(cmids ...string) (map[string]link.Frame, []link.Frame) {
	c.t.Helper()
	bySeq := map[uint32]string{}
	for _, id := range cmids {
		bySeq[c.request(imapi.OpSend, sendReq(id))] = id
	}
	out := map[string]link.Frame{}
	var other []link.Frame
	for len(out) < len(cmids) {
		f := c.read()
		if id, ok := bySeq[f.Seq]; ok && f.IsResponse() {
			out[id] = f
			continue
		}
		other = append(other, f)
	}
	return out, other
}

func ids(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%02d", prefix, i))
	}
	return out
}

// TestSendLaneKeepsOrder: a client's pipelined sends reach the services
// as batches, at most one of the session's batches out at a time, and
// together in the order the client sent them.
func TestSendLaneKeepsOrder(t *testing.T) {
	e := newEnv(t, nil)
	var log batchLog
	e.svc.onBatch = func(_ *buswire.Request, sends []imapi.SendReq, respond func(buswire.SendBatchResp)) {
		log.add(sends)
		log.mu.Lock()
		log.out++
		log.maxOut = max(log.maxOut, log.out)
		log.mu.Unlock()
		go func() {
			time.Sleep(20 * time.Millisecond) // a commit's time, so that sends queue
			log.mu.Lock()
			log.out--
			log.mu.Unlock()
			respond(acks(sends))
		}()
	}
	c := e.login(t, "alice", "phone")
	want := ids("m", 40)
	got, _ := c.sendAll(want...)
	for _, id := range want {
		if got[id].Code != imapi.OK {
			t.Fatalf("%s: code %d %s", id, got[id].Code, got[id].Body)
		}
	}
	batches := log.get()
	if flat := slices.Concat(batches...); !slices.Equal(flat, want) {
		t.Fatalf("sends reached the service as %v, want %v in order", batches, want)
	}
	if log.maxOut != 1 {
		t.Fatalf("%d batches of the session out at once, want 1", log.maxOut)
	}
	if len(batches) < 2 || len(batches) == len(want) {
		t.Fatalf("%d batches for %d pipelined sends: want them batched", len(batches), len(want))
	}
	if n := testutil.ToFloat64(e.g.m.sendBatches); n != float64(len(batches)) {
		t.Fatalf("send_batches_total = %v, want %d", n, len(batches))
	}
}

// TestSendBatchRetriedAfterTimeout: a batch not answered within
// send_attempt_timeout (its service node died or hangs) is sent again as it
// is, and the answer of either attempt completes it.
func TestSendBatchRetriedAfterTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SendAttemptTimeout = config.Duration(100 * time.Millisecond) })
	var log batchLog
	e.svc.onBatch = func(_ *buswire.Request, sends []imapi.SendReq, respond func(buswire.SendBatchResp)) {
		if log.add(sends) == 1 {
			return // lost with its node
		}
		respond(acks(sends))
	}
	c := e.login(t, "alice", "phone")
	start := time.Now()
	got, _ := c.sendAll("m1")
	if got["m1"].Code != imapi.OK {
		t.Fatalf("m1: code %d", got["m1"].Code)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Fatalf("answered after %v, before the attempt timed out", took)
	}
	if b := log.get(); len(b) != 2 || !slices.Equal(b[0], b[1]) {
		t.Fatalf("batches %v, want the same batch twice", b)
	}
	if n := testutil.ToFloat64(e.g.m.sendRetries); n != 1 {
		t.Fatalf("send_retries_total = %v, want 1", n)
	}
}

// TestSendRetryableTail: when a batch comes back with a retryable refusal
// (here "busy" with a hint), the sends before it are answered and the
// refused one and everything after it go again, first, after the hint.
func TestSendRetryableTail(t *testing.T) {
	e := newEnv(t, nil)
	var log batchLog
	release := make(chan struct{})
	e.svc.onBatch = func(_ *buswire.Request, sends []imapi.SendReq, respond func(buswire.SendBatchResp)) {
		switch log.add(sends) {
		case 1:
			go func() { <-release; respond(acks(sends)) }() // m1 out while m2..m4 queue
		case 2:
			r := acks(sends[:1])
			for range sends[1:] {
				r.Results = append(r.Results, buswire.SendResult{Code: imapi.ErrUnavailable, Message: "busy", RetryAfterMs: 30})
			}
			respond(r)
		default:
			respond(acks(sends))
		}
	}
	c := e.login(t, "alice", "phone")
	seqs := map[uint32]string{}
	for _, id := range []string{"m1", "m2", "m3", "m4"} {
		seqs[c.request(imapi.OpSend, sendReq(id))] = id
	}
	waittest.Until(t, 5*time.Second, "m2..m4 queued behind m1", func() bool {
		s := e.g.allSessions()[0]
		x := s.extra.Load() // made by the first send
		if x == nil {
			return false
		}
		l := &x.sends
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.waiting) == 3
	})
	close(release)
	var order []string
	for len(order) < 4 {
		f := c.read()
		if id, ok := seqs[f.Seq]; ok && f.IsResponse() {
			if f.Code != imapi.OK {
				t.Fatalf("%s: code %d %s", id, f.Code, f.Body)
			}
			order = append(order, id)
		}
	}
	want := [][]string{{"m1"}, {"m2", "m3", "m4"}, {"m3", "m4"}}
	if b := log.get(); !slices.EqualFunc(b, want, slices.Equal) {
		t.Fatalf("batches %v, want %v", b, want)
	}
	if !slices.Equal(order, []string{"m1", "m2", "m3", "m4"}) {
		t.Fatalf("answers in order %v", order)
	}
}

// TestSendRatePacesInOrder: over the session's request rate, sends wait
// for their tokens instead of being refused, and keep their order.
func TestSendRatePacesInOrder(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RequestRate = 20; c.RequestBurst = 1; c.MaxSendBatch = 1 })
	var log batchLog
	e.svc.onBatch = func(_ *buswire.Request, sends []imapi.SendReq, respond func(buswire.SendBatchResp)) {
		log.add(sends)
		respond(acks(sends))
	}
	c := e.login(t, "alice", "phone")
	start := time.Now()
	got, _ := c.sendAll("m1", "m2", "m3")
	for id, f := range got {
		if f.Code != imapi.OK {
			t.Fatalf("%s: code %d (refused instead of paced)", id, f.Code)
		}
	}
	if took := time.Since(start); took < 80*time.Millisecond {
		t.Fatalf("3 sends at 20/s with a burst of 1 took %v", took)
	}
	if b := slices.Concat(log.get()...); !slices.Equal(b, []string{"m1", "m2", "m3"}) {
		t.Fatalf("order at the service %v", b)
	}
	if n := testutil.ToFloat64(e.g.m.sendDelayed); n < 1 {
		t.Fatalf("send_rate_delays_total = %v", n)
	}
}

// TestSendGiveUpEndsSession: a batch that no service stores within
// request_timeout ends the session: its sends are answered "unavailable"
// and the client is told to reconnect (kick with code 503), so that it
// resends them, in order, on a new session.
func TestSendGiveUpEndsSession(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RequestTimeout = config.Duration(400 * time.Millisecond)
		c.SendAttemptTimeout = config.Duration(50 * time.Millisecond)
	})
	e.svc.onBatch = func(*buswire.Request, []imapi.SendReq, func(buswire.SendBatchResp)) {}
	c := e.login(t, "alice", "phone")
	got, other := c.sendAll("m1", "m2")
	for id, f := range got {
		if f.Code != imapi.ErrUnavailable {
			t.Fatalf("%s: code %d, want 503", id, f.Code)
		}
	}
	kicked := false
	for _, f := range other {
		if f.Op == imapi.OpKick {
			var k imapi.Kick
			_ = json.Unmarshal(f.Body, &k)
			kicked = k.Code == imapi.ErrUnavailable
		}
	}
	if !kicked {
		f := c.read()
		var k imapi.Kick
		_ = json.Unmarshal(f.Body, &k)
		if f.Op != imapi.OpKick || k.Code != imapi.ErrUnavailable {
			t.Fatalf("frame %v %s, want a kick with code 503", f.Op, f.Body)
		}
	}
	c.expectClosed()
	if n := testutil.ToFloat64(e.g.m.sendGiveUps); n != 1 {
		t.Fatalf("send_give_ups_total = %v", n)
	}
}

// TestSendBatchNotAClientOp: a client cannot send the bus's batch op.
func TestSendBatchNotAClientOp(t *testing.T) {
	e := newEnv(t, nil)
	c := e.login(t, "alice", "phone")
	f, _ := c.response(c.request(buswire.OpSendBatch, buswire.SendBatchReq{Sends: []json.RawMessage{json.RawMessage(`{}`)}}))
	if f.Code != imapi.ErrUnknownOp {
		t.Fatalf("code %d, want %d", f.Code, imapi.ErrUnknownOp)
	}
}
