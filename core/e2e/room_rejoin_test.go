package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/pkg/config"
)

func (c *client) lastRejoin() (sdk.RoomRejoin, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rejoins) == 0 {
		return sdk.RoomRejoin{}, 0
	}
	return c.rejoins[len(c.rejoins)-1], len(c.rejoins)
}

func wantSeqs(t *testing.T, who string, got []int64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s: %d room messages %v, want %d (duplicates or losses)", who, len(got), got, n)
	}
	for i, s := range got {
		if s != int64(i+1) {
			t.Fatalf("%s: room message %d has seq %d: %v", who, i, s, got)
		}
	}
}

// TestRoomRejoinAfterReconnect: a member whose connection drops enters its
// room again by itself after reconnecting, and gets the messages sent while
// it was away (from the room's recent history) and those after, each once
// and in order: across a connection cut while its entry token had expired
// (a fresh one comes from the RoomToken hook), and across a restart of its
// gateway. A member banned while away is told that it could not enter
// again, and forgets the room.
func TestRoomRejoinAfterReconnect(t *testing.T) {
	fast := func(g *gateway.Config) {
		g.AnnounceInterval = config.Duration(100 * time.Millisecond)
		g.RoomBatchInterval = config.Duration(20 * time.Millisecond)
	}
	c := startCore(t, t.TempDir(), "", newKey(t), coreOpts{gwMod: fast})
	gw2, _ := c.extraGateway(t, "gw-e2e-2", fast)
	tok := c.users("owner", "fan", "troll")
	c.room(t, "stage", "owner")
	ctx := ctx10(t)

	owner := c.client(t, "owner", tok["owner"], "pc", gw2.Addr().String())
	owner.connected(t)
	if _, err := owner.RoomEnter(ctx, "stage", c.roomToken(t, "stage", "owner"), 0); err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, c.addr)
	var hookCalls atomic.Int32
	fan := c.clientWith(t, "fan", tok["fan"], "pc", func(cfg *sdk.Config) {
		cfg.RoomToken = func(ctx context.Context, room string) (string, error) {
			hookCalls.Add(1)
			return c.roomToken(t, room, "fan"), nil
		}
	}, proxy.addr)
	fan.connected(t)
	short, err := c.svc.Rooms().IssueToken(ctx, appKey, "stage", "fan", "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fan.RoomEnter(ctx, "stage", short.Token, 0); err != nil {
		t.Fatal(err)
	}
	seq := 0
	send := func(k int) {
		t.Helper()
		for range k {
			seq++
			if _, err := owner.RoomSendText(ctx, "stage", fmt.Sprintf("m%d", seq)); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(3)
	fan.waitUntil("the first messages", 5*time.Second, func(c *client) bool { return len(c.roomMsgs) >= 3 })

	// 1. The connection drops while the entry token has expired; messages
	// are sent while the fan is away.
	time.Sleep(1100 * time.Millisecond)
	proxy.cut()
	send(4)
	proxy.resume()
	fan.waitUntil("re-entered", 10*time.Second, func(c *client) bool { return len(c.rejoins) == 1 })
	if r, _ := fan.lastRejoin(); r.Err != nil || r.Gap || r.Role != imapi.RoleMember {
		t.Fatalf("rejoin %+v", r)
	}
	if hookCalls.Load() != 1 {
		t.Fatalf("token hook called %d times, want once (the held token had expired)", hookCalls.Load())
	}
	send(3)
	fan.waitUntil("every message after the cut", 5*time.Second, func(c *client) bool { return len(c.roomMsgs) >= seq })
	wantSeqs(t, "after the cut", fan.roomSeqs(), seq)

	// 2. The fan's gateway restarts on the same address.
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = c.gw.Shutdown(shutdown)
	cancel()
	send(2)
	gcfg := gateway.Default()
	gcfg.ID = "gw-e2e"
	gcfg.Listen = c.addr
	gcfg.Keys = []gateway.KeyConfig{{ID: c.key.ID, PrivateKey: config.NewSecret(link.EncodeKey(c.key.Private))}}
	gcfg.DrainTime = config.Duration(100 * time.Millisecond)
	fast(&gcfg)
	gw, err := gateway.New(gcfg, gateway.Deps{NATS: c.bus.Conn(), Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.gw = gw
	fan.waitUntil("re-entered after the restart", 15*time.Second, func(c *client) bool { return len(c.rejoins) == 2 })
	if r, _ := fan.lastRejoin(); r.Err != nil || r.Gap {
		t.Fatalf("rejoin after the restart %+v", r)
	}
	send(2)
	fan.waitUntil("every message after the restart", 5*time.Second, func(c *client) bool { return len(c.roomMsgs) >= seq })
	wantSeqs(t, "after the restart", fan.roomSeqs(), seq)
	if got := fan.Rooms(); len(got) != 1 || got[0] != "stage" {
		t.Fatalf("rooms %v", got)
	}

	// 3. More messages than the re-entry catches up on: the gap is told.
	proxy.cut()
	send(60) // the SDK asks for the last 50
	proxy.resume()
	fan.waitUntil("re-entered after a long absence", 10*time.Second, func(c *client) bool { return len(c.rejoins) == 3 })
	if r, _ := fan.lastRejoin(); r.Err != nil || !r.Gap {
		t.Fatalf("rejoin after missing more than the catch-up %+v", r)
	}
	fan.waitUntil("the last 50", 5*time.Second, func(c *client) bool { return len(c.roomMsgs) >= seq-10 })
	got := fan.roomSeqs()
	if len(got) != seq-10 || got[len(got)-1] != int64(seq) || got[len(got)-51] != int64(seq-60) {
		t.Fatalf("after the gap: %d messages, want the %d before and the last 50", len(got), seq-60)
	}

	// 4. Banned while away: the re-entry fails, the app hears of it.
	proxy.cut()
	if err := owner.RoomKick(ctx, "stage", "fan", "spam", time.Hour); err != nil {
		t.Fatal(err)
	}
	proxy.resume()
	fan.waitUntil("told it could not re-enter", 10*time.Second, func(c *client) bool { return len(c.rejoins) == 4 })
	var ie *imapi.Error
	if r, _ := fan.lastRejoin(); !errors.As(r.Err, &ie) || ie.Code != imapi.ErrForbidden {
		t.Fatalf("rejoin while banned %+v", r)
	}
	if got := fan.Rooms(); len(got) != 0 {
		t.Fatalf("rooms after the ban %v", got)
	}
}
