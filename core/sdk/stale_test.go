package sdk

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/longlink/longlink/core/imapi"
)

// TestStaleAnswerLeavesWindow: the answer to a send on a connection that
// has ended can come after the client reconnected and sent it again (the
// reader had taken it when another goroutine closed the connection). It
// must not touch the new connection's window or queue: the overload
// refusal of the old copy put the send back in the queue while its new
// copy was out, the new copy's ack then counted for nothing in the window
// (one slot lost for good: a window cut to one after a failover's
// refusals sent nothing more) and the send went out a third time.
func TestStaleAnswerLeavesWindow(t *testing.T) {
	c, err := New(testConfig(func(context.Context, string) (Transport, error) { return newFake("gw", imapi.OK), nil }, "gw"))
	if err != nil {
		t.Fatal(err)
	}
	connect := func() *conn {
		cur := &conn{c: c, t: newFake("gw", imapi.OK), done: make(chan struct{}), pending: map[uint32]func(Incoming, error){}}
		c.mu.Lock()
		c.cur, c.state = cur, StateConnected
		c.startWindow(cur)
		c.mu.Unlock()
		return cur
	}
	// sendOut takes what the window allows on cur and returns the answer
	// callback of the one send, as the connection's reader would call it.
	sendOut := func(cur *conn) func(Incoming, error) {
		t.Helper()
		got, batch, _ := c.takeSendable()
		if got != cur || len(batch) != 1 {
			t.Fatalf("took %d sends on %p, want 1 on %p", len(batch), got, cur)
		}
		c.transmit(cur, batch[0])
		cur.mu.Lock()
		defer cur.mu.Unlock()
		for seq, cb := range cur.pending {
			delete(cur.pending, seq)
			return cb
		}
		t.Fatal("nothing pending")
		return nil
	}
	old := connect()
	done, err := c.SendAsync(&imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", ClientMsgID: "m1", Body: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	oldAnswer := sendOut(old)

	// The client reconnects and sends m1 again; then the old copy's
	// refusal (its session ended) arrives, then the new copy's ack.
	cur := connect()
	newAnswer := sendOut(cur)
	refusal, _ := json.Marshal(imapi.Error{Code: imapi.ErrUnavailable, Message: "session closed"})
	oldAnswer(Incoming{Op: imapi.OpSend, Code: imapi.ErrUnavailable, Body: refusal}, nil)
	ack, _ := json.Marshal(imapi.SendAck{MsgID: "x", ConvID: "c", Seq: 1})
	newAnswer(Incoming{Op: imapi.OpSend, Body: ack}, nil)

	if r := <-done; r.Err != nil || r.Ack.Seq != 1 {
		t.Fatalf("result %+v", r)
	}
	c.mu.Lock()
	if c.win.inflight != 0 {
		t.Errorf("%d sends counted out in the window with none out", c.win.inflight)
	}
	if len(c.waiting) != 0 {
		t.Errorf("%d acked sends wait to go out again", len(c.waiting))
	}
	c.mu.Unlock()

	// The old copy's ack arrives while the send waits for the new
	// connection: it is acked, and not sent again.
	done, err = c.SendAsync(&imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", ClientMsgID: "m2", Body: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	oldAnswer = sendOut(cur)
	connect()
	oldAnswer(Incoming{Op: imapi.OpSend, Body: ack}, nil)
	if r := <-done; r.Err != nil {
		t.Fatalf("result %+v", r)
	}
	if _, batch, _ := c.takeSendable(); len(batch) != 0 {
		t.Errorf("an acked send went out again")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.win.inflight != 0 || len(c.waiting) != 0 {
		t.Errorf("window %d out, %d waiting, want none", c.win.inflight, len(c.waiting))
	}
}
