package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/route"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/serverapi"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/service/msg"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
	"github.com/longlink/longlink/pkg/config"
)

const superSecret = "app-secret-for-super-tests"

// superEnv is one bus (embedded NATS with JetStream), one SQLite store, app
// service nodes, two gateways and the server API, wired as core.go does.
type superEnv struct {
	t     *testing.T
	dir   string
	key   link.KeyPair
	bus   *bus.Bus
	st    store.Store
	gws   []*gateway.Gateway
	svcs  []*service.Service
	api   *serverapi.Server
	front *serverapi.Front
	base  string
	nonce atomic.Int64
}

func newSuperEnv(t *testing.T, gateways int, driver ...string) *superEnv {
	t.Helper()
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := &superEnv{t: t, dir: t.TempDir(), key: newKey(t)}
	bcfg := bus.Default()
	bcfg.Listen = ""
	bcfg.StoreDir = filepath.Join(e.dir, "nats")
	b, err := bus.New(bcfg, bus.Deps{Logger: logger(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.bus = b
	scfg := store.Default()
	scfg.Path = filepath.Join(e.dir, "core.db")
	scfg.Synchronous = "normal"
	if len(driver) > 0 && driver[0] == store.DriverPostgres {
		scfg = storetest.Config(t, store.DriverPostgres) // a private schema, dropped afterwards
	}
	if e.st, err = store.Open(ctx, scfg, store.Deps{Logger: logger()}); err != nil {
		t.Fatal(err)
	}
	for i := range gateways {
		gcfg := gateway.Default()
		gcfg.ID = fmt.Sprintf("gw-super-%d", i)
		gcfg.Listen = "127.0.0.1:0"
		gcfg.Keys = []gateway.KeyConfig{{ID: e.key.ID, PrivateKey: config.NewSecret(link.EncodeKey(e.key.Private))}}
		gcfg.DrainTime = config.Duration(100 * time.Millisecond)
		gw, err := gateway.New(gcfg, gateway.Deps{NATS: b.Conn(), Logger: logger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := gw.Start(ctx); err != nil {
			t.Fatal(err)
		}
		e.gws = append(e.gws, gw)
	}
	t.Cleanup(e.stop)
	return e
}

// startService starts an app service node on its own bus connection (so
// that a test can cut it off like a crashed process) over st.
func (e *superEnv) startService(st store.Store, nc *nats.Conn, offline ...msg.OfflinePusher) *service.Service {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	vcfg := service.Default()
	vcfg.Apps = []service.AppConfig{{AppKey: appKey, Secret: config.NewSecret(superSecret), Devices: imapi.DevicesAllowAll, Heartbeat: config.Duration(30 * time.Second)}}
	vcfg.Super.AckWait = config.Duration(2 * time.Second)
	deps := service.Deps{NATS: nc, Store: st, JetStream: js, Logger: logger()}
	if len(offline) > 0 {
		deps.Offline = offline[0]
	}
	svc, err := service.New(vcfg, deps)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.svcs = append(e.svcs, svc)
	return svc
}

func (e *superEnv) conn(name string) *nats.Conn {
	e.t.Helper()
	nc, err := e.bus.Connect(name)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

// startAPI serves the server API on a free port, backed by svc.
func (e *superEnv) startAPI(svc *service.Service) {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	api, err := serverapi.New(serverapi.Default(), serverapi.Deps{Service: svc, Store: e.st, NATS: e.conn("api"), JetStream: e.bus.JetStream(),
		Node: route.Node{Cluster: buswire.DefaultCluster}, Logger: logger()})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := api.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.api = api
	routes, err := route.New(route.Default(), route.Deps{})
	if err != nil {
		e.t.Fatal(err)
	}
	front, err := serverapi.NewFront(serverapi.Default(), serverapi.FrontDeps{NATS: e.conn("api-front"), Routes: routes, Listener: ln, Logger: logger()})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := front.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.front = front
	e.base = "http://" + ln.Addr().String()
}

func (e *superEnv) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if e.front != nil {
		_ = e.front.Shutdown(ctx)
	}
	if e.api != nil {
		_ = e.api.Shutdown(ctx)
	}
	for _, gw := range e.gws {
		_ = gw.Shutdown(ctx)
	}
	for _, s := range e.svcs {
		_ = s.Shutdown(ctx)
	}
	_ = e.bus.Shutdown(ctx)
	_ = e.st.Close()
}

// call makes a signed server API call; it returns the HTTP status and body.
func (e *superEnv) call(method, target string, body, out any) (int, []byte) {
	e.t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(method, e.base+target, bytes.NewReader(raw))
	if err != nil {
		e.t.Fatal(err)
	}
	serverapi.Sign(req, appKey, superSecret, fmt.Sprintf("n%d-%d", time.Now().UnixNano(), e.nonce.Add(1)), time.Now(), raw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %s: %v", method, target, b, err)
		}
	}
	return resp.StatusCode, b
}

func (e *superEnv) ok(method, target string, body, out any) {
	e.t.Helper()
	if status, b := e.call(method, target, body, out); status != http.StatusOK {
		e.t.Fatalf("%s %s: %d %s", method, target, status, b)
	}
}

func (e *superEnv) token(account string) string {
	e.t.Helper()
	var tr serverapi.TokenResp
	e.ok(http.MethodPost, "/v1/users/"+account+"/tokens", serverapi.TokenReq{}, &tr)
	return tr.Token
}

func (e *superEnv) client(account, token string, gw int) *client {
	e.t.Helper()
	// The preferred gateway first, then the others (reconnects go there
	// when it is gone).
	addrs := []string{e.gws[gw].Addr().String()}
	for i, g := range e.gws {
		if i != gw {
			addrs = append(addrs, g.Addr().String())
		}
	}
	sc, err := sdk.New(sdk.Config{
		Addresses:  addrs,
		ServerKeys: map[string][]byte{e.key.ID: e.key.Public},
		AppKey:     appKey, Account: account, Token: token, DeviceType: "phone",
		DeviceID:   account + "-phone",
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		Logger: logger().With("who", account),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	c := startClient(e.t, sc, account)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sc.WaitConnected(ctx); err != nil {
		e.t.Fatalf("%s: %v", account, err)
	}
	return c
}

// inConv returns the seqs received in conv (in delivery order).
func (c *client) inConv(conv string) []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seqsLocked(conv)
}

// seqsLocked is inConv with c.mu held (in waitUntil conditions).
func (c *client) seqsLocked(conv string) []int64 {
	var out []int64
	for _, m := range c.msgs {
		if m.ConvID == conv {
			out = append(out, m.Seq)
		}
	}
	return out
}

func (c *client) conv(t *testing.T, id string) imapi.Conversation {
	t.Helper()
	var resp imapi.ConvListResp
	if err := c.Request(context.Background(), imapi.OpConvList, nil, &resp); err != nil {
		t.Fatal(err)
	}
	for _, cv := range resp.Conversations {
		if cv.ConvID == id {
			return cv
		}
	}
	t.Fatalf("%s: %s not in the conversation list %+v", c.account, id, resp.Conversations)
	return imapi.Conversation{}
}

func seqs(n int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i + 1)
	}
	return out
}

// TestSuperGroup100k: a 100,000-member super-group made through the server
// API (users and members in batches of 1,000), 30 sampled members of which
// 20 are online on two gateways: every online member gets each message
// once, offline ones sync by the group sequence after connecting, unread
// and mentions are right, a removed member stops receiving, and the
// member limit is enforced with its code.
func TestSuperGroup100k(t *testing.T) {
	for _, d := range storetest.Drivers {
		t.Run(d, func(t *testing.T) { testSuperGroup100k(t, d) })
	}
}

func testSuperGroup100k(t *testing.T, driver string) {
	e := newSuperEnv(t, 2, driver)
	pusher := &offlineRecorder{}
	svc := e.startService(e.st, e.conn("svc-a"), pusher)
	e.startAPI(svc)

	const members = 100_000 // the owner and 99,999 others: the default limit
	start := time.Now()
	accounts := make([]string, 0, members)
	accounts = append(accounts, "owner")
	for i := range members - 1 {
		accounts = append(accounts, fmt.Sprintf("m%06d", i))
	}
	for off := 0; off < len(accounts); off += serverapi.MaxUserBatch {
		var req serverapi.UserBatchReq
		for _, a := range accounts[off:min(off+serverapi.MaxUserBatch, len(accounts))] {
			req.Users = append(req.Users, serverapi.UserReq{Account: a})
		}
		e.ok(http.MethodPost, "/v1/users/batch", &req, nil)
	}
	e.ok(http.MethodPost, "/v1/users/batch", &serverapi.UserBatchReq{Users: []serverapi.UserReq{{Account: "extra"}}}, nil)
	t.Logf("%d users created in %v", len(accounts), time.Since(start))

	start = time.Now()
	var g imapi.SuperGroup
	e.ok(http.MethodPost, "/v1/supergroups", &serverapi.SuperCreateReq{Owner: "owner", Name: "Everyone", Members: accounts[1:1000]}, &g)
	for off := 1000; off < len(accounts); off += 1000 {
		var r imapi.SuperMembersResp
		e.ok(http.MethodPost, "/v1/supergroups/"+g.GroupID+"/members",
			&serverapi.GroupMembersReq{As: "owner", Members: accounts[off:min(off+1000, len(accounts))]}, &r)
		if r.Count != min(off+1000, len(accounts)) {
			t.Fatalf("count after batch at %d: %d", off, r.Count)
		}
	}
	t.Logf("super-group of %d members made in %v (batches of 1,000)", members, time.Since(start))
	var info imapi.SuperGroup
	e.ok(http.MethodGet, "/v1/supergroups/"+g.GroupID+"?as=m000123", nil, &info)
	if info.Count != members || info.MaxMembers != 100_000 {
		t.Fatalf("info: %+v", info)
	}
	status, body := e.call(http.MethodPost, "/v1/supergroups/"+g.GroupID+"/members", &serverapi.GroupMembersReq{As: "owner", Members: []string{"extra"}}, nil)
	if status != http.StatusConflict || !bytes.Contains(body, []byte(`"code":1201`)) {
		t.Fatalf("member 100,001: %d %s, want 409 with code 1201", status, body)
	}
	var page imapi.SuperPage
	e.ok(http.MethodGet, "/v1/supergroups/"+g.GroupID+"/members?as=owner&after=m050000&limit=3", nil, &page)
	if !slices.Equal(page.Members, []string{"m050001", "m050002", "m050003"}) || page.Next != "m050003" {
		t.Fatalf("member page: %+v", page)
	}

	// 30 sampled members: 20 online (split over the gateways), 10 offline.
	conv := imapi.SuperConvID(g.GroupID)
	var sample []string
	for i := range 30 {
		sample = append(sample, fmt.Sprintf("m%06d", i*3301))
	}
	tokens := map[string]string{"owner": e.token("owner")}
	for _, a := range sample {
		tokens[a] = e.token(a)
	}
	owner := e.client("owner", tokens["owner"], 0)
	var online []*client
	for i, a := range sample[:20] {
		online = append(online, e.client(a, tokens[a], i%2))
	}
	mentioned, offMentioned := sample[3], sample[25]
	ctx := context.Background()
	send := func(text string, mentions ...string) imapi.SendAck {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"text": text})
		ack, err := owner.Send(ctx, imapi.SendReq{ConvType: imapi.ConvSuper, To: g.GroupID, Type: "text", Body: body, Mentions: mentions})
		if err != nil {
			t.Fatalf("send %q: %v", text, err)
		}
		return ack
	}
	sendStart := time.Now()
	send("hello all")
	send("you two", mentioned, offMentioned)
	send("everyone listen", imapi.MentionAll)
	send("four")
	send("five")
	for _, c := range online {
		c.waitUntil("five messages", 15*time.Second, func(c *client) bool { return len(c.seqsLocked(conv)) >= 5 })
	}
	t.Logf("5 sends reached 20 online members on 2 gateways in %v", time.Since(sendStart))
	time.Sleep(200 * time.Millisecond) // a duplicate would arrive by now
	for _, c := range online {
		if got := c.inConv(conv); !slices.Equal(got, seqs(5)) {
			t.Fatalf("%s got seqs %v, want each of 1..5 once", c.account, got)
		}
	}
	// A non-member cannot send, sync or read.
	outsider := e.client("extra", e.token("extra"), 1)
	if _, err := outsider.SendText(ctx, imapi.ConvSuper, g.GroupID, "let me in"); !isCode(err, imapi.ErrForbidden) {
		t.Fatalf("outsider send: %v", err)
	}
	if err := outsider.Request(ctx, imapi.OpSync, imapi.SyncReq{ConvID: conv}, nil); !isCode(err, imapi.ErrForbidden) {
		t.Fatalf("outsider sync: %v", err)
	}

	// Unread and mentions (mentions are stored by the JetStream workers).
	waitConv := func(c *client, what string, ok func(imapi.Conversation) bool) imapi.Conversation {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			cv := c.conv(t, conv)
			if ok(cv) {
				return cv
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s: %+v", c.account, what, cv)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitConv(online[3], "unread 5, mentions 2", func(cv imapi.Conversation) bool { return cv.Unread == 5 && cv.Mentions == 2 && cv.LastSeq == 5 })
	waitConv(online[4], "unread 5, mentions 1 (@all)", func(cv imapi.Conversation) bool { return cv.Unread == 5 && cv.Mentions == 1 })
	waitConv(owner, "own messages are read", func(cv imapi.Conversation) bool { return cv.Unread == 0 && cv.Mentions == 0 })
	if err := online[3].Request(ctx, imapi.OpRead, imapi.ReadReq{ConvID: conv, Seq: 2}, nil); err != nil {
		t.Fatal(err)
	}
	waitConv(online[3], "after reading to 2", func(cv imapi.Conversation) bool { return cv.Unread == 3 && cv.Mentions == 1 && cv.ReadSeq == 2 })

	// Offline members connect and sync by the group sequence.
	var offline []*client
	for i, a := range sample[20:] {
		offline = append(offline, e.client(a, tokens[a], i%2))
	}
	for _, c := range offline {
		c.waitUntil("synced 1..5", 15*time.Second, func(c *client) bool { return len(c.seqsLocked(conv)) >= 5 })
		if got := c.inConv(conv); !slices.Equal(got, seqs(5)) {
			t.Fatalf("%s synced seqs %v", c.account, got)
		}
	}
	waitConv(offline[5], "offline mentioned", func(cv imapi.Conversation) bool { return cv.Unread == 5 && cv.Mentions == 2 })
	// Offline push: only the message naming them, to the two named members
	// (@all and plain messages notify nobody offline).
	if got := pusher.calls(); len(got) != 1 || !slices.Equal(got[0].rcpt, []string{mentioned, offMentioned}) || got[0].seq != 2 {
		t.Fatalf("offline push calls: %+v", got)
	}
	// Now online, they get the next message by push.
	send("six")
	for _, c := range append(slices.Clip(online), offline...) {
		c.waitUntil("six", 10*time.Second, func(c *client) bool { return len(c.seqsLocked(conv)) >= 6 })
	}

	// A removed member is told and stops receiving; the others go on.
	removed := online[1]
	var rr imapi.SuperMembersResp
	e.ok(http.MethodPost, "/v1/supergroups/"+g.GroupID+"/members/remove", &serverapi.GroupMembersReq{As: "owner", Members: []string{removed.account}}, &rr)
	if !slices.Equal(rr.Changed, []string{removed.account}) || rr.Count != members-1 {
		t.Fatalf("remove: %+v", rr)
	}
	removed.waitUntil("removed event", 10*time.Second, func(c *client) bool {
		return slices.ContainsFunc(c.supers, func(ev imapi.SuperEvent) bool { return ev.Kind == imapi.SuperRemoved && ev.GroupID == g.GroupID })
	})
	send("seven")
	for _, c := range online {
		if c != removed {
			c.waitUntil("seven", 10*time.Second, func(c *client) bool { return len(c.seqsLocked(conv)) >= 7 })
		}
	}
	time.Sleep(300 * time.Millisecond)
	if got := removed.inConv(conv); len(got) != 6 {
		t.Fatalf("removed member got %v", got)
	}
	if err := removed.Request(ctx, imapi.OpSync, imapi.SyncReq{ConvID: conv, AfterSeq: 6}, nil); !isCode(err, imapi.ErrForbidden) {
		t.Fatalf("removed member sync: %v", err)
	}

	// A gateway goes away: its clients reconnect to the other one, which
	// subscribes to the group for them at login, and they sync what was
	// sent meanwhile (through the server API) by the group sequence.
	ctx2, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := e.gws[0].Shutdown(ctx2); err != nil {
		t.Fatal(err)
	}
	cancel()
	for i := range 2 {
		body, _ := json.Marshal(map[string]string{"text": fmt.Sprintf("while moving %d", i)})
		e.ok(http.MethodPost, "/v1/messages", &serverapi.SendMessageReq{From: "owner", SendReq: imapi.SendReq{
			ConvType: imapi.ConvSuper, To: g.GroupID, ClientMsgID: fmt.Sprintf("api-%d", i), Body: body}}, nil)
	}
	stayed := append(slices.Clip(online), offline...)
	stayed = slices.DeleteFunc(stayed, func(c *client) bool { return c == removed })
	for _, c := range stayed {
		c.waitUntil("1..9 after the gateway left", 20*time.Second, func(c *client) bool { return len(c.seqsLocked(conv)) >= 9 })
	}
	send("ten") // the owner, reconnected too
	for _, c := range stayed {
		c.waitUntil("ten", 10*time.Second, func(c *client) bool { return len(c.seqsLocked(conv)) >= 10 })
		if got := c.inConv(conv); !slices.Equal(got, seqs(10)) {
			t.Fatalf("%s after the gateway left: %v", c.account, got)
		}
	}

	// Dismissal: one push on the group subject reaches every online member.
	e.ok(http.MethodPost, "/v1/supergroups/"+g.GroupID+"/dismiss", &serverapi.GroupActReq{As: "owner"}, nil)
	for _, c := range offline {
		c.waitUntil("dismissed event", 10*time.Second, func(c *client) bool {
			return slices.ContainsFunc(c.supers, func(ev imapi.SuperEvent) bool { return ev.Kind == imapi.SuperDismissed })
		})
	}
}

// offlineRecorder stands in for core/push.
type offlineRecorder struct {
	mu  sync.Mutex
	got []offlineCall
}

type offlineCall struct {
	seq  int64
	rcpt []string
}

func (o *offlineRecorder) MessageStored(_ string, m *imapi.Message, rcpt []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, offlineCall{m.Seq, rcpt})
}

func (o *offlineRecorder) calls() []offlineCall {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]offlineCall(nil), o.got...)
}

func isCode(err error, code imapi.Code) bool {
	var ie *imapi.Error
	return errors.As(err, &ie) && ie.Code == code
}

// stallingStore blocks the side work of super-group messages until
// released: a worker that hangs or dies mid-job.
type stallingStore struct {
	store.Store
	entered chan struct{}
	release chan struct{}
}

func (s *stallingStore) AddSuperMentions(ctx context.Context, appkey, groupID string, seq int64, accounts []string) error {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.release
	return errors.New("worker died")
}

// TestSuperGroupWorkerCrash: the service node whose worker took a mention
// job is cut off the bus mid-job (as a crashed process); JetStream
// redelivers the unacknowledged job to another node's worker, and the
// mention is stored.
func TestSuperGroupWorkerCrash(t *testing.T) {
	e := newSuperEnv(t, 1)
	stall := &stallingStore{Store: e.st, entered: make(chan struct{}, 1), release: make(chan struct{})}
	ncA := e.conn("svc-a")
	svcA := e.startService(stall, ncA)
	e.startAPI(svcA)
	e.ok(http.MethodPost, "/v1/users/batch", &serverapi.UserBatchReq{Users: []serverapi.UserReq{{Account: "boss"}, {Account: "amy"}, {Account: "ben"}}}, nil)
	var g imapi.SuperGroup
	e.ok(http.MethodPost, "/v1/supergroups", &serverapi.SuperCreateReq{Owner: "boss", Members: []string{"amy", "ben"}}, &g)
	boss := e.client("boss", e.token("boss"), 0)
	amy := e.client("amy", e.token("amy"), 0)
	body, _ := json.Marshal(map[string]string{"text": "amy, look"})
	if _, err := boss.Send(context.Background(), imapi.SendReq{ConvType: imapi.ConvSuper, To: g.GroupID, Body: body, Mentions: []string{"amy"}}); err != nil {
		t.Fatal(err)
	}
	amy.waitUntil("the message", 10*time.Second, func(c *client) bool { return len(c.seqsLocked(imapi.SuperConvID(g.GroupID))) == 1 })
	select {
	case <-stall.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker never took the job")
	}
	ncA.Close() // node A is gone, its job unacknowledged
	defer close(stall.release)
	e.startService(e.st, e.conn("svc-b"))
	deadline := time.Now().Add(20 * time.Second)
	for {
		cs, err := e.st.SuperConversations(context.Background(), appKey, "amy", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 1 && cs[0].Mentions == 1 && cs[0].Unread == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mention not stored after the crash: %+v", cs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The conversation list (served by node B now) shows it too.
	if cv := amy.conv(t, imapi.SuperConvID(g.GroupID)); cv.Mentions != 1 || cv.Unread != 1 {
		t.Fatalf("amy's conversation: %+v", cv)
	}
}
