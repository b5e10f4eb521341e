package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/clustertest"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/serverapi"
	"github.com/longlink/longlink/core/service/room"
)

// TestClusterChaos runs the HA layer as a deployment runs it — 2 gateway
// processes, 3 service processes, 3 nats-server processes with JetStream
// clustered, PostgreSQL — with SDK clients on both gateways sending 1:1,
// group and chatroom messages (durable sends pipelined through the SDK's
// window, each ack in a ledger), and breaks it while they send: SIGKILL a
// service node, SIGSTOP another for 10 s then SIGCONT, SIGKILL a NATS
// server, SIGKILL a gateway (its clients reconnect through the other), add
// a fresh service node. Afterwards every acknowledged message is in
// PostgreSQL once with its acked sequence, each sender's messages have
// increasing sequences in send order, every receiver got each message of
// its conversations exactly once and in each sender's order, no durable
// send failed (refusals were retryable and retried), and the killed
// gateway's clients were back on the other one quickly.
func TestClusterChaos(t *testing.T) {
	clustertest.Require(t)
	start := time.Now()
	// A gateway skips room batches for a connection with room_max_queued
	// frames still to write (bounded lag, by design: its client sees a
	// gap); on a loaded test machine the default 4 is reached by the
	// durable traffic's acks alone, so the test, which checks delivery,
	// allows a longer queue.
	c := clustertest.StartCluster(t, clustertest.ClusterOptions{Gateways: 2, Services: 3,
		Gateway: clustertest.CoreOptions{Config: map[string]any{"gateway": map[string]any{"room_max_queued": 256}}}})
	t.Logf("cluster up in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	const n = 8
	var accounts []string
	for i := range n {
		accounts = append(accounts, fmt.Sprintf("u%d", i))
	}
	tokens, err := c.Users(ctx, accounts...)
	if err != nil {
		t.Fatal(err)
	}
	var g imapi.Group
	if err := c.API(ctx, "", http.MethodPost, "/v1/groups", serverapi.GroupCreateReq{Owner: "u0", Name: "all", Members: accounts[1:]}, &g); err != nil {
		t.Fatal(err)
	}
	if err := c.API(ctx, "", http.MethodPost, "/v1/rooms", room.CreateReq{RoomID: "hall", Name: "hall", Owner: "u0", GuestsCanSend: true, MsgRate: 1000, MemberRate: 100}, nil); err != nil {
		t.Fatal(err)
	}
	roomToken := func(ctx context.Context, account string) (string, error) {
		var tok room.Token
		err := c.API(ctx, "", http.MethodPost, "/v1/rooms/hall/tokens", serverapi.RoomTokenReq{Account: account, TTLSec: 3600}, &tok)
		return tok.Token, err
	}

	gws := c.Gateways()
	clients := make([]*chaosClient, n)
	for i, a := range accounts {
		// Half prefer each gateway; both are in every client's list.
		cfg := c.SDKConfig(a, tokens[a], gws[i%2], gws[(i+1)%2])
		cfg.BackoffMin, cfg.BackoffMax = 50*time.Millisecond, 500*time.Millisecond
		cfg.RoomToken = func(ctx context.Context, _ string) (string, error) { return roomToken(ctx, a) }
		clients[i] = startChaosClient(t, ctx, cfg, gws[i%2].Name)
		tok, err := roomToken(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := clients[i].RoomEnter(ctx, "hall", tok, 0); err != nil {
			t.Fatalf("%s enters the room: %v", a, err)
		}
	}

	// Traffic until stop: each client sends a 1:1 message to the next
	// client and a group message, alternately, every 25ms (durable,
	// pipelined by the SDK), and a chatroom message every 250ms (one at a
	// time; a failed one is sent again under a new id, as an app does).
	stop := make(chan struct{})
	var traffic sync.WaitGroup
	for i, cl := range clients {
		peer := accounts[(i+1)%n]
		traffic.Add(2)
		go func() {
			defer traffic.Done()
			tick := time.NewTicker(25 * time.Millisecond)
			defer tick.Stop()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				req := imapi.SendReq{ConvType: imapi.ConvP2P, To: peer, Type: "text",
					ClientMsgID: fmt.Sprintf("%s-p-%05d", cl.account, k), Body: json.RawMessage(`{"t":1}`)}
				if k%2 == 1 {
					req.ConvType, req.To, req.ClientMsgID = imapi.ConvGroup, g.GroupID, fmt.Sprintf("%s-g-%05d", cl.account, k)
				}
				cl.send(t, &req)
			}
		}()
		go func() {
			defer traffic.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case <-time.After(250 * time.Millisecond):
				}
				cl.roomSend(ctx, fmt.Sprintf("%s-r-%05d", cl.account, k), stop)
			}
		}()
	}

	faultAt := func(d time.Duration, what string, f func() error) {
		t.Helper()
		select {
		case <-time.After(time.Until(start.Add(d))):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		t.Logf("%v: %s", time.Since(start).Round(time.Millisecond), what)
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	start = time.Now()
	svcs := c.Services()
	faultAt(5*time.Second, "SIGKILL svc-1", svcs[0].Kill)
	faultAt(10*time.Second, "SIGSTOP svc-2", svcs[1].Pause)
	faultAt(20*time.Second, "SIGCONT svc-2", svcs[1].Resume)
	faultAt(23*time.Second, "SIGKILL a NATS server", c.NATS.Nodes[1].Kill)
	var killedAt time.Time
	faultAt(28*time.Second, "SIGKILL gw-1", func() error { killedAt = time.Now(); return gws[0].Kill() })
	faultAt(31*time.Second, "add svc-4", func() error { c.AddService(clustertest.CoreOptions{}); return nil })
	faultAt(36*time.Second, "stop the traffic", func() error { close(stop); return nil })
	traffic.Wait()

	total := checkDurable(t, ctx, clients, c.PG, func(i, to int, id string) bool {
		return strings.Contains(id, "-g-") || (strings.Contains(id, "-p-") && (i+1)%n == to)
	})
	if total < 1000 {
		t.Fatalf("only %d messages acknowledged: the traffic did not run", total)
	}
	t.Logf("all sends acknowledged and delivered at %v", time.Since(start).Round(time.Millisecond))

	// The chatroom: every acknowledged room message at most once at each
	// member, in each sender's order; and, unless the member was told of
	// a gap, at least once. Room messages are fanned out in batches
	// (room_batch_interval, and held up to room_gap_wait for a missing seq
	// before them), so the last ones arrive a little after their acks:
	// wait for them, and say how late the latest one was.
	missingRoom := func(to int) (n int, example string) {
		cl := clients[to]
		got, gap := cl.roomDelivered()
		if gap {
			return 0, ""
		}
		seen := map[string]bool{}
		for _, k := range got {
			seen[k] = true
		}
		for i, s := range clients {
			if i == to {
				continue
			}
			for _, id := range s.roomAcked() {
				if k := s.account + "/" + id; !seen[k] {
					n, example = n+1, k
				}
			}
		}
		return n, example
	}
	roomWaitFrom := time.Now()
	lateAtFirstLook := 0
	for to := range clients {
		n, _ := missingRoom(to)
		lateAtFirstLook += n
	}
	deadline := time.Now().Add(30 * time.Second)
	for to := range clients {
		for {
			n, _ := missingRoom(to)
			if n == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var slowest time.Duration
	var slowestKey string
	for _, cl := range clients {
		for k, at := range cl.roomArrivals() {
			from, id, _ := strings.Cut(k, "/")
			ackAt, ok := clients[accountIndex(accounts, from)].roomAckTime(id)
			if ok && at.Sub(ackAt) > slowest {
				slowest, slowestKey = at.Sub(ackAt), cl.account+" got "+k
			}
		}
	}
	t.Logf("room: %d deliveries still on their way when the durable traffic was all in; all in %v later; slowest delivery %v after its ack (%s)",
		lateAtFirstLook, time.Since(roomWaitFrom).Round(time.Millisecond), slowest.Round(time.Millisecond), slowestKey)
	for to, cl := range clients {
		got, gap := cl.roomDelivered()
		seen := map[string]int{}
		lastBySender := map[string]int{}
		for _, k := range got {
			seen[k]++
			from, id, _ := strings.Cut(k, "/")
			idx := clients[accountIndex(accounts, from)].roomIndex(id)
			if idx >= 0 && idx < lastBySender[from] {
				t.Errorf("%s got room message %s out of its sender's order", cl.account, k)
			}
			lastBySender[from] = idx
		}
		for i, s := range clients {
			if i == to {
				continue
			}
			for _, id := range s.roomAcked() {
				k := s.account + "/" + id
				if seen[k] > 1 || (seen[k] == 0 && !gap) {
					s.mu.Lock()
					seq := s.roomAck[id]
					s.mu.Unlock()
					cl.mu.Lock()
					i, _ := slices.BinarySearch(cl.roomSeqs, seq)
					near := cl.roomSeqs[max(i-3, 0):min(i+3, len(cl.roomSeqs))]
					cl.mu.Unlock()
					ackAt, _ := s.roomAckTime(id)
					t.Errorf("%s got room message %s (seq %d, acked at %v) %d times; seqs it got near it: %v; what it saw of the room:%s",
						cl.account, k, seq, ackAt.Sub(start).Round(time.Millisecond), seen[k], near, cl.roomStory(seq, start))
				}
			}
		}
	}

	// Room sends that failed failed for a reason worth retrying: the
	// connection was lost, or the cluster answered 503/504 (or nothing in
	// the request's 5 s); never a refusal for good.
	roomFailures := map[string]int{}
	for _, cl := range clients {
		cl.mu.Lock()
		for _, f := range cl.roomErrs {
			kind, ok := retryableRoomErr(f.err)
			roomFailures[kind]++
			if !ok {
				t.Errorf("%s: room send %s failed for good: %v", cl.account, f.id, f.err)
			}
		}
		cl.mu.Unlock()
	}
	t.Logf("room sends that failed and were sent again: %v", roomFailures)

	// The killed gateway's clients were back, on the other one, quickly.
	var worst time.Duration
	for i, cl := range clients {
		if i%2 != 0 {
			continue
		}
		back := cl.reconnectedAfter(killedAt)
		if back <= 0 {
			t.Errorf("%s (on gw-1) did not reconnect", cl.account)
			continue
		}
		worst = max(worst, back)
	}
	t.Logf("gw-1's clients reconnected within %v of its SIGKILL", worst.Round(time.Millisecond))
	if worst > 3*time.Second {
		t.Errorf("gw-1's clients took %v to reconnect", worst)
	}
	var retries, giveUps, gaps float64
	for _, gw := range c.Gateways() {
		if !gw.Running() {
			continue
		}
		r, _ := gw.Metric(ctx, "longlink_gateway_send_retries_total")
		gu, _ := gw.Metric(ctx, "longlink_gateway_send_give_ups_total")
		gp, _ := gw.Metric(ctx, "longlink_gateway_room_gaps_total")
		retries, giveUps, gaps = retries+r, giveUps+gu, gaps+gp
	}
	t.Logf("%d messages acknowledged; the surviving gateway resent %v batches, gave %v sessions up, sent %v room batches with a gap", total, retries, giveUps, gaps)
}

// checkDurable waits until every durable send of clients is acknowledged
// (60 s) and checks the ledger: no send failed for good, each sender's
// acks have increasing sequences per conversation in send order,
// PostgreSQL holds each acknowledged message once with its acked seq, and
// each receiver got every message meant for it (receives(sender, receiver,
// id)) exactly once, each sender's in send order within a conversation,
// and nothing no sender recorded. It returns how many sends were acked.
func checkDurable(t *testing.T, ctx context.Context, clients []*chaosClient, pg *clustertest.Postgres, receives func(sender, receiver int, id string) bool) int {
	// Every durable send is acknowledged (the SDK resends until it is) and
	// the ledger has heard how it ended. The SDK's Pending falls as a send
	// ends, before its EventSent has gone through the delivery loop and the
	// collector: read at that moment the ledger missed the ack, and a send
	// that was acked was reported never acknowledged.
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, cl := range clients {
		for cl.Pending() > 0 || cl.unsettled() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d sends without an ack or a failure (the SDK holds %d; it dropped %d events, the application being behind)",
					cl.account, cl.unsettled(), cl.Pending(), cl.DroppedEvents())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// The ledger: acks in send order, per sender and conversation.
	total, sent := 0, map[string]bool{}
	for _, cl := range clients {
		cl.mu.Lock()
		if len(cl.failed) > 0 {
			t.Errorf("%s: %d durable sends failed for good, e.g. %s: %v", cl.account, len(cl.failed), cl.failed[0].id, cl.failed[0].err)
		}
		last := map[string]int64{}
		for _, id := range cl.order {
			ack, ok := cl.acks[id]
			if !ok { // failed for good (reported above): no seq to check
				t.Errorf("%s: %s never acknowledged", cl.account, id)
				continue
			}
			if ack.Seq <= last[ack.ConvID] {
				t.Errorf("%s: %s acked with seq %d after seq %d in %s: stored out of send order", cl.account, id, ack.Seq, last[ack.ConvID], ack.ConvID)
			}
			last[ack.ConvID] = ack.Seq
			sent[cl.account+"/"+id] = true
			total++
		}
		cl.mu.Unlock()
	}

	// PostgreSQL holds each acknowledged message once, with its acked seq.
	db, err := pg.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT sender, client_msg_id, conv_id, seq FROM messages`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int64{}
	for rows.Next() {
		var sender, cmid, conv string
		var seq int64
		if err := rows.Scan(&sender, &cmid, &conv, &seq); err != nil {
			t.Fatal(err)
		}
		k := sender + "/" + cmid
		if _, dup := stored[k]; dup {
			t.Errorf("%s stored twice", k)
		}
		stored[k] = seq
	}
	rows.Close()
	for _, cl := range clients {
		cl.mu.Lock()
		for id, ack := range cl.acks {
			if got, ok := stored[cl.account+"/"+id]; !ok || got != ack.Seq {
				t.Errorf("%s/%s acked with seq %d, in PostgreSQL: %d (%v)", cl.account, id, ack.Seq, got, ok)
			}
		}
		cl.mu.Unlock()
	}

	// Each receiver gets every message of its conversations exactly once,
	// each sender's in send order within a conversation (conversations are
	// delivered independently).
	expect := func(to int) []string {
		var out []string
		for i, cl := range clients {
			if i == to {
				continue
			}
			cl.mu.Lock()
			for _, id := range cl.order {
				if receives(i, to, id) {
					out = append(out, cl.account+"/"+id)
				}
			}
			cl.mu.Unlock()
		}
		return out
	}
	deadline = time.Now().Add(60 * time.Second)
	for to, cl := range clients {
		want := expect(to)
		for {
			got := cl.delivered()
			if len(got) >= len(want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		got := cl.delivered()
		seen := map[string]int{}
		lastBySender := map[string]string{} // conversation and sender → last id
		for _, d := range got {
			k := d.key
			seen[k]++
			from, id, _ := strings.Cut(k, "/")
			ck := d.conv + " " + from
			if prev := lastBySender[ck]; prev != "" && senderIndex(clients, from, id) < senderIndex(clients, from, prev) {
				t.Errorf("%s got %s after %s in %s: out of send order", cl.account, k, prev, d.conv)
			}
			lastBySender[ck] = id
		}
		for _, k := range want {
			if seen[k] != 1 {
				t.Errorf("%s got %s %d times, want once", cl.account, k, seen[k])
			}
		}
		for k := range seen {
			if !sent[k] {
				t.Errorf("%s got %s, which no sender recorded", cl.account, k)
			}
		}
	}

	return total
}

// retryableRoomErr names a room send's error and says whether an app
// should send again: a lost connection, no answer in time, or a retryable
// code.
func retryableRoomErr(err error) (string, bool) {
	var ie *imapi.Error
	switch {
	case errors.Is(err, sdk.ErrDisconnected):
		return "disconnected", true
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in 5s", true
	case errors.As(err, &ie):
		return fmt.Sprintf("code %d", ie.Code), ie.Code.Retryable()
	}
	return err.Error(), false
}

func accountIndex(accounts []string, a string) int { return slices.Index(accounts, a) }

func senderIndex(clients []*chaosClient, account, id string) int {
	for _, c := range clients {
		if c.account == account {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.index[id]
		}
	}
	return -1
}

// chaosClient is an SDK client with its ledger: what it sent (in order),
// what was acknowledged, what it received.
type chaosClient struct {
	*sdk.Client
	account string
	home    string

	mu        sync.Mutex
	order     []string // client_msg_ids of durable sends, in send order
	index     map[string]int
	acks      map[string]imapi.SendAck
	ackTimes  []time.Time          // when each ack arrived, in order
	sentAt    map[string]time.Time // when each durable send was queued
	ackAt     map[string]time.Time // when each durable send's ack arrived
	failed    []sendFailure
	got       []delivery // messages received
	roomSent  []string   // room messages acknowledged, in send order
	roomGot   []string
	roomSeqs  []int64 // the seq of each of roomGot
	roomAck   map[string]int64
	roomAckAt map[string]time.Time // when each room message was acknowledged
	roomAt    map[string]time.Time // when each room message first arrived (sender/id)
	roomGap   bool
	roomErrs  []sendFailure // room sends that failed (each sent again under a new id)
	roomLog   []roomLogEntry
	states    []stateAt
	done      chan struct{}
}

// delivery is a message received: its conversation and sender/client_msg_id.
type delivery struct{ conv, key string }

// roomLogEntry is a room batch (seqs first..last), a re-entry or a state
// change, for the story of a room message that went missing.
type roomLogEntry struct {
	at          time.Time
	first, last int64
	what        string
}

// roomLogWriter keeps the SDK's log lines about rooms in the client's
// room log.
type roomLogWriter struct{ c *chaosClient }

func (w roomLogWriter) Write(p []byte) (int, error) {
	if line := strings.TrimSpace(string(p)); strings.Contains(line, "room") {
		if _, rest, ok := strings.Cut(line, " level="); ok {
			line = "sdk: level=" + rest
		}
		w.c.mu.Lock()
		w.c.roomLog = append(w.c.roomLog, roomLogEntry{at: time.Now(), what: line})
		w.c.mu.Unlock()
	}
	return len(p), nil
}

// roomStory is what the client saw of the room around seq.
func (c *chaosClient) roomStory(seq int64, start time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var near time.Time
	for _, e := range c.roomLog {
		if e.last >= seq-2 && e.first <= seq+2 && e.first > 0 {
			near = e.at
			break
		}
	}
	var b strings.Builder
	for _, e := range c.roomLog {
		close := e.first > 0 && e.last >= seq-3 && e.first <= seq+3
		if !close && (near.IsZero() || e.at.Sub(near).Abs() > 2*time.Second || e.first > 0) {
			continue
		}
		fmt.Fprintf(&b, "\n\t%v: %s", e.at.Sub(start).Round(time.Millisecond), e.what)
		if e.first > 0 {
			fmt.Fprintf(&b, " %d..%d", e.first, e.last)
		}
	}
	return b.String()
}

type sendFailure struct {
	id  string
	err error
}

type stateAt struct {
	at    time.Time
	state sdk.State
}

func startChaosClient(t *testing.T, ctx context.Context, cfg sdk.Config, home string) *chaosClient {
	t.Helper()
	c := &chaosClient{account: cfg.Account, home: home, index: map[string]int{}, acks: map[string]imapi.SendAck{},
		sentAt: map[string]time.Time{}, ackAt: map[string]time.Time{},
		roomAck: map[string]int64{}, roomAckAt: map[string]time.Time{}, roomAt: map[string]time.Time{}, done: make(chan struct{})}
	// The SDK's room lines (holes filled, re-entries) go into the story.
	cfg.Logger = slog.New(slog.NewTextHandler(roomLogWriter{c}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sc, err := sdk.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Client = sc
	sc.Start()
	go c.collect()
	t.Cleanup(func() { _ = sc.Close(); <-c.done })
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := sc.WaitConnected(wctx); err != nil {
		t.Fatalf("%s: %v", cfg.Account, err)
	}
	return c
}

func (c *chaosClient) collect() {
	defer close(c.done)
	for ev := range c.Events() {
		c.mu.Lock()
		switch ev.Kind {
		case sdk.EventMessage:
			c.got = append(c.got, delivery{ev.Message.ConvID, ev.Message.From + "/" + ev.Message.ClientMsgID})
		case sdk.EventSent:
			c.acks[ev.ClientMsgID] = *ev.Ack
			c.ackTimes = append(c.ackTimes, time.Now())
			c.ackAt[ev.ClientMsgID] = time.Now()
		case sdk.EventSendFailed:
			c.failed = append(c.failed, sendFailure{ev.ClientMsgID, ev.Err})
		case sdk.EventState:
			c.states = append(c.states, stateAt{time.Now(), ev.State})
			c.roomLog = append(c.roomLog, roomLogEntry{at: time.Now(), what: "state " + ev.State.String()})
		case sdk.EventRoom:
			if ev.Room.Gap || ev.Room.Err != nil {
				c.roomGap = true
			}
			c.roomLog = append(c.roomLog, roomLogEntry{at: time.Now(), what: fmt.Sprintf("entered again (gap %v, err %v)", ev.Room.Gap, ev.Room.Err)})
		case sdk.EventPush:
			if b, ok := sdk.RoomBatchOf(ev); ok && len(b.Messages) > 0 {
				c.roomLog = append(c.roomLog, roomLogEntry{at: time.Now(), first: b.Messages[0].Seq, last: b.Messages[len(b.Messages)-1].Seq,
					what: fmt.Sprintf("batch of %d", len(b.Messages))})
				for _, m := range b.Messages {
					c.roomGot = append(c.roomGot, m.From+"/"+m.ClientMsgID)
					c.roomSeqs = append(c.roomSeqs, m.Seq)
					if _, ok := c.roomAt[m.From+"/"+m.ClientMsgID]; !ok {
						c.roomAt[m.From+"/"+m.ClientMsgID] = time.Now()
					}
				}
			}
		}
		c.mu.Unlock()
	}
}

func (c *chaosClient) send(t *testing.T, req *imapi.SendReq) {
	c.mu.Lock()
	c.index[req.ClientMsgID] = len(c.order)
	c.order = append(c.order, req.ClientMsgID)
	c.sentAt[req.ClientMsgID] = time.Now()
	c.mu.Unlock()
	if _, err := c.SendAsync(req); err != nil {
		t.Errorf("%s: queue %s: %v", c.account, req.ClientMsgID, err)
	}
}

// roomSend sends one room message until it is acknowledged, each attempt
// under a new id (room messages are not deduplicated: an app that resends
// one may show it twice, so only acknowledged ids are in the ledger).
func (c *chaosClient) roomSend(ctx context.Context, id string, stop <-chan struct{}) {
	for attempt := 0; ; attempt++ {
		cmid := fmt.Sprintf("%s.%d", id, attempt)
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var ack imapi.RoomSendAck
		err := c.Request(rctx, imapi.OpRoomSend, imapi.RoomSendReq{RoomID: "hall", ClientMsgID: cmid, Type: "text", Body: json.RawMessage(`{"t":1}`)}, &ack)
		cancel()
		if err != nil && ctx.Err() == nil {
			c.mu.Lock()
			c.roomErrs = append(c.roomErrs, sendFailure{cmid, err})
			c.mu.Unlock()
		}
		if err == nil {
			c.mu.Lock()
			c.roomSent = append(c.roomSent, cmid)
			c.roomAck[cmid] = ack.Seq
			c.roomAckAt[cmid] = time.Now()
			c.mu.Unlock()
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *chaosClient) delivered() []delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

func (c *chaosClient) roomDelivered() ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.roomGot), c.roomGap
}

func (c *chaosClient) roomAcked() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.roomSent)
}

func (c *chaosClient) roomArrivals() map[string]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.roomAt)
}

func (c *chaosClient) roomAckTime(id string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.roomAckAt[id]
	return at, ok
}

func (c *chaosClient) roomIndex(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Index(c.roomSent, id)
}

// unsettled is the number of sends whose end (an ack or a failure for
// good) the ledger has not heard of.
func (c *chaosClient) unsettled() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.order) - len(c.acks) - len(c.failed)
}

// ackedAfter is how long after t the client's first ack came, or 0.
func (c *chaosClient) ackedAfter(t time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, at := range c.ackTimes {
		if at.After(t) {
			return at.Sub(t)
		}
	}
	return 0
}

// reconnectedAfter is how long after t the client was connected again
// (after having been disconnected), or 0.
func (c *chaosClient) reconnectedAfter(t time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	down := false
	sort.SliceStable(c.states, func(i, j int) bool { return c.states[i].at.Before(c.states[j].at) })
	for _, s := range c.states {
		if s.at.Before(t) {
			continue
		}
		if s.state != sdk.StateConnected {
			down = true
			continue
		}
		if down {
			return s.at.Sub(t)
		}
	}
	return 0
}
