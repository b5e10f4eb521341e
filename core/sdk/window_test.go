package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

func TestSendWindowArithmetic(t *testing.T) {
	w := newSendWindow(4, 16)
	if w.room() != 4 {
		t.Fatalf("room %d, want the initial window 4", w.room())
	}
	// Slow start: each ack adds one (the window doubles per flight).
	var nums []uint64
	for range 4 {
		nums = append(nums, w.take())
	}
	for _, n := range nums {
		w.acked(n)
	}
	if w.cwnd != 8 || w.room() != 8 {
		t.Fatalf("after 4 acks in slow start: cwnd %v room %d, want 8", w.cwnd, w.room())
	}
	// Refusals of one flight cut once: the first halves, the others of
	// sends already out then do not.
	nums = nums[:0]
	for range 8 {
		nums = append(nums, w.take())
	}
	if !w.refused(nums[0]) {
		t.Fatal("the first refusal of a flight did not cut the window")
	}
	if w.cwnd != 4 || w.ssthresh != 4 {
		t.Fatalf("after a refusal: cwnd %v ssthresh %v, want 4 and 4", w.cwnd, w.ssthresh)
	}
	for _, n := range nums[1:4] {
		if w.refused(n) {
			t.Fatalf("send %d, out before the cut, cut the window again", n)
		}
	}
	if w.cwnd != 4 {
		t.Fatalf("cwnd %v after refusals of the same flight, want 4", w.cwnd)
	}
	// The window paces, it does not order (the gateway does): the room
	// after the cut is the new window less what is out.
	for _, n := range nums[4:7] {
		w.acked(n)
	}
	w.acked(nums[7])
	if w.room() != int(w.cwnd) {
		t.Fatalf("room %d with nothing out, want the window %v", w.room(), w.cwnd)
	}
	// A send taken after the cut is a new flight: its refusal cuts again.
	cwnd := w.cwnd // 4 and a bit: the acks grew it
	later := w.take()
	if !w.refused(later) || w.cwnd != cwnd/2 || w.cuts != 1 {
		t.Fatalf("a later flight's refusal: cwnd %v cuts %d, want %v and 1", w.cwnd, w.cuts, cwnd/2)
	}
	// Above ssthresh the window grows by about one per window of acks,
	// and never beyond its ceiling.
	for range 4 {
		w.inflight++
		w.acked(w.sent)
	}
	if w.cuts != 0 {
		t.Fatalf("cuts %d after acks, want 0", w.cuts)
	}
	if w.cwnd < 3 || w.cwnd > 4 {
		t.Fatalf("cwnd %v after 4 acks in congestion avoidance from about 2, want 3..4", w.cwnd)
	}
	for range 1000 {
		w.inflight++
		w.acked(w.sent)
	}
	if w.cwnd != 16 {
		t.Fatalf("cwnd %v, want the ceiling 16", w.cwnd)
	}
	// It never falls below one send.
	for range 10 {
		w.refused(w.take())
	}
	if w.cwnd != 1 || w.room() != 1 {
		t.Fatalf("cwnd %v room %d after many refusals, want 1", w.cwnd, w.room())
	}
}

// heldTransport answers sends only when the test says so: each send waits
// in held until answer(n, code) answers the oldest n.
type heldTransport struct {
	*fakeTransport
	mu     sync.Mutex
	held   []heldSend
	sent   []string // client_msg_ids in the order they reached the server
	stored []string // client_msg_ids acknowledged, in order
	max    int      // most sends out at once
}

type heldSend struct {
	seq  uint32
	cmid string
}

func newHeld() *heldTransport { return &heldTransport{fakeTransport: newFake("gw", imapi.OK)} }

func (h *heldTransport) Send(op imapi.Op, seq uint32, body []byte) error {
	if op != imapi.OpSend {
		return h.fakeTransport.Send(op, seq, body)
	}
	var req imapi.SendReq
	_ = json.Unmarshal(body, &req)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sent = append(h.sent, req.ClientMsgID)
	h.held = append(h.held, heldSend{seq, req.ClientMsgID})
	h.max = max(h.max, len(h.held))
	return nil
}

// answer answers the n oldest held sends with code (503 carries a
// retry-after hint of hint).
func (h *heldTransport) answer(n int, code imapi.Code, hint time.Duration) int {
	h.mu.Lock()
	n = min(n, len(h.held))
	out := h.held[:n:n]
	h.held = h.held[n:]
	for _, s := range out {
		if code == imapi.OK {
			h.stored = append(h.stored, s.cmid)
		}
	}
	h.mu.Unlock()
	for _, s := range out {
		if code == imapi.OK {
			ack, _ := json.Marshal(imapi.SendAck{MsgID: "m-" + s.cmid, Seq: 1})
			h.in <- Incoming{Op: imapi.OpSend, Seq: s.seq, Body: ack}
			continue
		}
		b, _ := json.Marshal(imapi.Error{Code: code, Message: "busy", RetryAfterMs: hint.Milliseconds()})
		h.in <- Incoming{Op: imapi.OpSend, Seq: s.seq, Code: code, Body: b}
	}
	return n
}

func (h *heldTransport) outstanding() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held)
}

// waitOut waits until exactly n sends are held by the server and no more
// come within a short while.
func (h *heldTransport) waitOut(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.outstanding() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d sends out, want %d", h.outstanding(), n)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if got := h.outstanding(); got != n {
		t.Fatalf("%d sends out after a while, want %d", got, n)
	}
}

// startClient starts a client on cfg and waits up to 5 s for its
// connection; ctx is that 5 s context, for the test's own requests.
func startClient(t *testing.T, cfg Config) (*Client, context.Context) {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return c, ctx
}

func startHeld(t *testing.T, mod func(*Config)) (*Client, *heldTransport) {
	t.Helper()
	h := newHeld()
	h.in = make(chan Incoming, 4096)
	cfg := testConfig(func(ctx context.Context, addr string) (Transport, error) { return h, nil }, "gw")
	cfg.SendWindowInitial, cfg.SendWindow = 4, 16
	cfg.BackoffMax = time.Second
	if mod != nil {
		mod(&cfg)
	}
	c, _ := startClient(t, cfg)
	return c, h
}

func queue(t *testing.T, c *Client, n int) []<-chan SendResult {
	t.Helper()
	var dones []<-chan SendResult
	for i := range n {
		done, err := c.SendAsync(&imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", Body: []byte(`{}`), ClientMsgID: fmt.Sprintf("c%03d", i)})
		if err != nil {
			t.Fatal(err)
		}
		dones = append(dones, done)
	}
	return dones
}

// TestSendWindowPacesAndDrainsInOrder: sends beyond the window wait in the
// client; acks grow the window (slow start); an overload refusal halves it
// and pauses for about the server's hint, after which the refused sends go
// out again first and the backlog follows gradually; every message reaches
// the server's store once, in queueing order.
func TestSendWindowPacesAndDrainsInOrder(t *testing.T) {
	c, h := startHeld(t, nil)
	dones := queue(t, c, 60)
	h.waitOut(t, 4) // the initial window
	h.answer(4, imapi.OK, 0)
	h.waitOut(t, 8) // four acks in slow start: 4 + 4
	h.answer(8, imapi.OK, 0)
	h.waitOut(t, 16) // the ceiling
	// All 16 refused: one cut to 8, one pause of about 100-200ms (the hint,
	// jittered), then the refused ones go out first, 8 at a time.
	refusedAt := time.Now()
	h.answer(16, imapi.ErrUnavailable, 200*time.Millisecond)
	h.waitOut(t, 8)
	if waited := time.Since(refusedAt); waited < 100*time.Millisecond {
		t.Fatalf("resent after %v, before the pause of at least half the 200ms hint", waited)
	}
	for h.outstanding() > 0 || c.Pending() > 0 {
		if h.answer(100, imapi.OK, 0) == 0 {
			time.Sleep(time.Millisecond)
		}
		h.mu.Lock()
		out := h.max
		h.mu.Unlock()
		if out > 16 {
			t.Fatalf("%d sends out at once, over the window's ceiling 16", out)
		}
	}
	for i, d := range dones {
		select {
		case r := <-d:
			if r.Err != nil {
				t.Fatalf("send %d: %v", i, r.Err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("send %d never answered", i)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.stored) != 60 {
		t.Fatalf("stored %d, want 60", len(h.stored))
	}
	for i, id := range h.stored {
		if want := fmt.Sprintf("c%03d", i); id != want {
			t.Fatalf("stored %v: %s at %d, want %s (queueing order)", h.stored, id, i, want)
		}
	}
	if len(h.sent) != 60+16 {
		t.Fatalf("%d sends reached the server, want 76 (60 and the 16 refused once)", len(h.sent))
	}
}

// TestSendInternalErrorIsFinal: a 500 is the gateway's definitive answer
// (the sends after it go on, core/gateway/ORDER.md), so the SDK fails the
// send instead of resending it behind the later ones; a 503 in the same
// state is resent.
func TestSendInternalErrorIsFinal(t *testing.T) {
	c, h := startHeld(t, nil)
	dones := queue(t, c, 3)
	h.waitOut(t, 3)
	h.answer(1, imapi.ErrInternal, 0)
	select {
	case r := <-dones[0]:
		var ie *imapi.Error
		if !errors.As(r.Err, &ie) || ie.Code != imapi.ErrInternal {
			t.Fatalf("send refused with 500: %v, want that refusal", r.Err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a send refused with 500 never ended")
	}
	h.answer(1, imapi.ErrUnavailable, 10*time.Millisecond) // c001: resent
	h.answer(1, imapi.OK, 0)                               // c002
	for c.Pending() > 0 {
		if h.answer(10, imapi.OK, 0) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if got := strings.Join(h.sent, ","); got != "c000,c001,c002,c001" {
		t.Fatalf("sends reached the server as %s, want c000,c001,c002,c001 (the 500 not resent, the 503 resent)", got)
	}
}

// TestSendQueueFull: a client whose queue is full refuses the next message
// at once with ErrSendQueueFull and keeps (and delivers) the queued ones.
func TestSendQueueFull(t *testing.T) {
	c, h := startHeld(t, func(cfg *Config) { cfg.SendQueue = 10 })
	dones := queue(t, c, 10)
	if _, err := c.SendAsync(&imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", Body: []byte(`{}`), ClientMsgID: "over"}); !errors.Is(err, ErrSendQueueFull) {
		t.Fatalf("11th message of a 10-message queue: err %v, want ErrSendQueueFull", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Send(ctx, imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", Body: []byte(`{}`)}); !errors.Is(err, ErrSendQueueFull) {
		t.Fatalf("Send on a full queue: err %v, want ErrSendQueueFull", err)
	}
	if c.Pending() != 10 {
		t.Fatalf("pending %d, want 10", c.Pending())
	}
	for c.Pending() > 0 {
		if h.answer(100, imapi.OK, 0) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	for i, d := range dones {
		if r := <-d; r.Err != nil {
			t.Fatalf("send %d: %v", i, r.Err)
		}
	}
	// Room again.
	if _, err := c.SendAsync(&imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", Body: []byte(`{}`)}); err != nil {
		t.Fatalf("after the acks: %v", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range h.stored {
		if id == "over" {
			t.Fatal("the refused message was sent")
		}
	}
}

// TestSendWindowAfterReconnect: sends out on a lost connection are resent
// on the next one in order, through a fresh window.
func TestSendWindowAfterReconnect(t *testing.T) {
	var mu sync.Mutex
	var conns []*heldTransport
	cfg := testConfig(func(ctx context.Context, addr string) (Transport, error) {
		h := newHeld()
		h.in = make(chan Incoming, 4096)
		mu.Lock()
		conns = append(conns, h)
		mu.Unlock()
		return h, nil
	}, "gw")
	cfg.SendWindowInitial, cfg.SendWindow = 4, 16
	c, _ := startClient(t, cfg)
	dones := queue(t, c, 20)
	mu.Lock()
	first := conns[0]
	mu.Unlock()
	first.waitOut(t, 4)
	first.answer(2, imapi.OK, 0) // c000, c001 stored; the window grows to 6
	first.waitOut(t, 6)
	_ = first.Close()
	var second *heldTransport
	for second == nil {
		mu.Lock()
		if len(conns) > 1 {
			second = conns[1]
		}
		mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	second.waitOut(t, 4) // a fresh window, not the old one's 6
	for c.Pending() > 0 {
		if second.answer(100, imapi.OK, 0) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	for i, d := range dones {
		if r := <-d; r.Err != nil {
			t.Fatalf("send %d: %v", i, r.Err)
		}
	}
	second.mu.Lock()
	defer second.mu.Unlock()
	if len(second.stored) != 18 {
		t.Fatalf("second connection stored %v, want c002..c019", second.stored)
	}
	for i, id := range second.stored {
		if want := fmt.Sprintf("c%03d", i+2); id != want {
			t.Fatalf("second connection stored %v, want c002..c019 in order", second.stored)
		}
	}
}

// TestCloseEndsPendingSends: a send the server has not acked when the
// client closes ends with ErrClosed on its SendAsync channel, whether it
// was out or still waiting for room in the window.
func TestCloseEndsPendingSends(t *testing.T) {
	c, h := startHeld(t, nil)
	dones := queue(t, c, 6)
	h.waitOut(t, 4) // the initial window; two wait in the client
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for i, done := range dones {
		select {
		case r := <-done:
			if !errors.Is(r.Err, ErrClosed) {
				t.Fatalf("send %d ended with %+v, want ErrClosed", i, r)
			}
		default:
			t.Fatalf("send %d has no result after Close", i)
		}
	}
}
