package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/pkg/config"
)

// TestOverloadShedsAndResends overloads a store whose commit queue may hold
// little (early shedding with a 1ns budget beyond two batch times, batches
// of at most 64): senders queue far more than it admits, it refuses with
// 503 "busy" and a retry-after hint, the SDKs halve their windows, pause
// and resend. Every message is then stored exactly once, and in the order
// its sender queued it within each conversation.
func TestOverloadShedsAndResends(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{stMod: func(sc *store.Config) {
		sc.MaxQueueDelay = config.Duration(time.Nanosecond)
		sc.MaxBatch = 100
		sc.Synchronous = "full"
	}})
	const senders, convsPer, per = 8, 2, 300
	var accounts []string
	for i := range senders {
		accounts = append(accounts, fmt.Sprintf("s%d", i))
		for j := range convsPer {
			accounts = append(accounts, fmt.Sprintf("r%d-%d", i, j))
		}
	}
	tok := c.users(accounts...)
	var cls []*client
	for i := range senders {
		cl := c.clientWith(t, fmt.Sprintf("s%d", i), tok[fmt.Sprintf("s%d", i)], "phone", func(cfg *sdk.Config) {
			cfg.SendWindowInitial = 64 // out at once: the queue overflows from the start
			cfg.BackoffMin, cfg.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
		})
		cl.connected(t)
		cls = append(cls, cl)
	}
	for k := range per {
		for i, cl := range cls {
			for j := range convsPer {
				if _, err := cl.SendAsync(&imapi.SendReq{ConvType: imapi.ConvP2P, To: fmt.Sprintf("r%d-%d", i, j),
					Type: "text", Body: []byte(`{"text":"x"}`), ClientMsgID: fmt.Sprintf("s%d-%d-%04d", i, j, k)}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// A message refused for good would leave the outbox too, and then be
	// missing from the store below.
	deadline := time.Now().Add(90 * time.Second)
	for i, cl := range cls {
		for cl.Pending() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("s%d: %d messages still unacknowledged after 90s", i, cl.Pending())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	shed := metricValue(t, c.reg, "longlink_store_appends_total", "result", "shed")
	if shed == 0 {
		t.Fatal("no append was shed: the test did not overload the store")
	}
	ctx := context.Background()
	for i := range senders {
		for j := range convsPer {
			conv := imapi.P2PConvID(fmt.Sprintf("s%d", i), fmt.Sprintf("r%d-%d", i, j))
			ms, _, err := c.st.Messages(ctx, appKey, conv, 0, 2*per)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != per {
				t.Fatalf("%s: %d messages stored, want %d", conv, len(ms), per)
			}
			for k, m := range ms {
				if m.Seq != int64(k+1) {
					t.Fatalf("%s: seq %d at %d", conv, m.Seq, k)
				}
				n, _ := strconv.Atoi(m.ClientMsgID[len(m.ClientMsgID)-4:])
				if n != k {
					t.Fatalf("%s: seq %d is %s, want the sender's message %d (queueing order)", conv, m.Seq, m.ClientMsgID, k)
				}
			}
		}
	}
	t.Logf("%.0f appends shed, %d stored", shed, senders*convsPer*per)
}
