package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

// TestCrashRestart stops the core without any graceful step while two
// senders are sending to one receiver, starts a new core on the same data
// directory and address, and checks that after the clients reconnect and
// sync, every acknowledged message was delivered exactly once, in order,
// and that resent unacknowledged messages were not duplicated.
func TestCrashRestart(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	dir := t.TempDir()
	key := newKey(t)
	c1 := startCore(t, dir, "", key, coreOpts{})
	addr := c1.addr
	tok := c1.users("alice", "bob", "carol")
	carol := c1.client(t, "carol", tok["carol"], "phone")
	carol.connected(t)

	const perSender = 150
	type sent struct {
		seq int64
	}
	var mu sync.Mutex
	acked := map[string]map[string]int64{} // sender → client_msg_id → seq
	var ackCount int
	var wg sync.WaitGroup
	for _, who := range []string{"alice", "bob"} {
		cl := c1.client(t, who, tok[who], "phone")
		cl.connected(t)
		acked[who] = map[string]int64{}
		wg.Add(1)
		go func(who string) {
			defer wg.Done()
			for i := 0; i < perSender; i++ {
				req := imapi.SendReq{ConvType: imapi.ConvP2P, To: "carol", Type: "text",
					ClientMsgID: fmt.Sprintf("%s-%d", who, i), Body: []byte(fmt.Sprintf(`{"text":"%s %d"}`, who, i))}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				ack, err := cl.Send(ctx, req)
				cancel()
				if err != nil {
					t.Errorf("%s send %d: %v", who, i, err)
					return
				}
				mu.Lock()
				acked[who][req.ClientMsgID] = ack.Seq
				ackCount++
				mu.Unlock()
			}
		}(who)
	}
	// Crash mid-traffic.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := ackCount
		mu.Unlock()
		if n >= 80 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("traffic did not start")
		}
		time.Sleep(2 * time.Millisecond)
	}
	c1.crash()
	t.Logf("crashed after %d acks", ackCount)
	time.Sleep(100 * time.Millisecond)
	c2 := startCore(t, dir, addr, key, coreOpts{})
	_ = c2
	wg.Wait()
	if t.Failed() {
		return
	}

	// Every acked message reaches carol exactly once, in order per
	// conversation.
	carol.waitUntil("all messages", 30*time.Second, func(c *client) bool { return len(c.msgs) >= 2*perSender })
	time.Sleep(300 * time.Millisecond)
	msgs := carol.messages()
	if len(msgs) != 2*perSender {
		t.Fatalf("carol got %d messages, want %d", len(msgs), 2*perSender)
	}
	lastSeq := map[string]int64{}
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.ClientMsgID] {
			t.Fatalf("duplicate delivery of %s", m.ClientMsgID)
		}
		seen[m.ClientMsgID] = true
		if m.Seq != lastSeq[m.ConvID]+1 {
			t.Fatalf("conversation %s: seq %d after %d", m.ConvID, m.Seq, lastSeq[m.ConvID])
		}
		lastSeq[m.ConvID] = m.Seq
		if want, ok := acked[m.From][m.ClientMsgID]; !ok || want != m.Seq {
			t.Fatalf("message %s has seq %d, ack said %d (acked %v)", m.ClientMsgID, m.Seq, want, ok)
		}
	}
	for who, ids := range acked {
		for id := range ids {
			if !seen[id] {
				t.Fatalf("acked message %s of %s never delivered", id, who)
			}
		}
	}
}
