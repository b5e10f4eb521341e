package lbs

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/lbs/lbsclient"
)

type member struct {
	l   *LBS
	cfg Config
}

// startCluster starts three members bootstrapped together over loopback.
func startCluster(t *testing.T) []*member {
	t.Helper()
	base := t.TempDir()
	caDir := filepath.Join(base, "ca")
	var lns []net.Listener
	var peers []Peer
	for i := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		peers = append(peers, Peer{ID: fmt.Sprintf("lbs%d", i+1), Address: ln.Addr().String()})
	}
	// the CA must exist before members start concurrently
	if _, err := New(testConfig(t, "ca-maker", filepath.Join(base, "tmp"), caDir), Deps{}); err != nil {
		t.Fatal(err)
	}
	var ms []*member
	for i := range 3 {
		cfg := testConfig(t, peers[i].ID, filepath.Join(base, peers[i].ID), caDir)
		cfg.Cluster.Bootstrap = true
		cfg.Cluster.Peers = peers
		cfg.InitialPolicy = "testdata/policy.yaml"
		cfg.DNS.RateLimit = -1 // the test's clients hammer from one address
		l, err := New(cfg, Deps{Registerer: prometheus.NewRegistry(), RaftListener: lns[i]})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, &member{l: l, cfg: cfg})
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.l.Kill()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range ms {
		if err := m.l.WaitReady(ctx); err != nil { // with the initial policy in
			t.Fatal(err)
		}
	}
	return ms
}

func leader(t *testing.T, ms []*member) *member {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range ms {
			if !m.l.closed && m.l.IsLeader() {
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader")
	return nil
}

// followers are the members other than ld.
func followers(ms []*member, ld *member) []*member {
	var out []*member
	for _, m := range ms {
		if m != ld {
			out = append(out, m)
		}
	}
	return out
}

type regInput struct {
	write bool
	value string
}

// TestClusterLinearizable records concurrent policy writes and
// linearizable reads against all members, while a follower is partitioned
// away and healed, and checks the history with porcupine.
func TestClusterLinearizable(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	ms := startCluster(t)
	policy := string(mustRead(t, "testdata/policy.yaml"))
	start := time.Now()
	var mu sync.Mutex
	var hist []porcupine.Operation
	var writesOK, readsOK atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for c := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := newAdmin(t, ms[c].l, testAdminToken)
			a.hc.Timeout = 3 * time.Second
			for n := 0; ctx.Err() == nil; n++ {
				op := porcupine.Operation{ClientId: c, Call: time.Since(start).Nanoseconds()}
				if n%2 == 0 {
					v := fmt.Sprintf("c%d-%d", c, n)
					doc := strings.Replace(policy, "description: lbs package tests", "description: "+v, 1)
					code, _ := a.do("POST", "/v1/policy/apply", []byte(doc))
					op.Input = regInput{write: true, value: v}
					op.Return = time.Since(start).Nanoseconds()
					if code != 200 {
						op.Return = math.MaxInt64 // outcome unknown: may take effect any time later
					} else {
						writesOK.Add(1)
					}
				} else {
					var got struct {
						Doc struct{ Description string }
					}
					code := a.json("GET", "/v1/policy?consistent=1&format=json", nil, &got)
					op.Return = time.Since(start).Nanoseconds()
					if code != 200 {
						continue // a failed read tells nothing
					}
					readsOK.Add(1)
					op.Input = regInput{}
					op.Output = got.Doc.Description
				}
				mu.Lock()
				hist = append(hist, op)
				mu.Unlock()
			}
		}()
	}
	// partition a follower for a while, then heal it
	time.Sleep(1500 * time.Millisecond)
	ld := leader(t, ms)
	f := followers(ms, ld)[0]
	f.l.SetPartitioned(true)
	time.Sleep(2 * time.Second)
	// while cut off it still answers clients, from its local state
	if code, _ := query(t, f.l, "appkey=demo", "101.0.0.7"); code != 200 {
		t.Fatalf("partitioned member stopped answering: %d", code)
	}
	f.l.SetPartitioned(false)
	wg.Wait()
	model := porcupine.Model{
		Init: func() any { return "lbs package tests" },
		Step: func(state, input, output any) (bool, any) {
			in := input.(regInput)
			if in.write {
				return true, in.value
			}
			return output.(string) == state.(string), state
		},
		Equal: func(a, b any) bool { return a.(string) == b.(string) },
	}
	res := porcupine.CheckOperationsTimeout(model, hist, 60*time.Second)
	t.Logf("history: %d ops, %d writes ok, %d reads ok; %v", len(hist), writesOK.Load(), readsOK.Load(), res)
	if res != porcupine.Ok {
		t.Fatalf("history is not linearizable: %v", res)
	}
	if writesOK.Load() < 5 || readsOK.Load() < 5 {
		t.Fatal("too few successful operations to mean anything")
	}
	// the healed member caught up
	deadline := time.Now().Add(5 * time.Second)
	for f.l.fsm.Current().State.Index < ld.l.fsm.Current().State.Index {
		if time.Now().After(deadline) {
			t.Fatal("healed member did not catch up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLeaderLoss kills the leader while clients query HTTP and DNS on the
// other members without pause: no answer may fail, and policy writes must
// succeed again within 3 s.
func TestLeaderLoss(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	ms := startCluster(t)
	ld := leader(t, ms)
	rest := followers(ms, ld)
	stop := make(chan struct{})
	var answers, failures atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	var wg sync.WaitGroup
	for _, m := range rest {
		wg.Add(2)
		go func() { // HTTP
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, a := query(t, m.l, "appkey=demo", "9.9.9.9")
				if code != 200 || len(a.Link) == 0 || a.Link[0].ID != "edge-fra" {
					fail(fmt.Errorf("http %d %+v", code, a))
				} else {
					answers.Add(1)
				}
			}
		}()
		go func() { // DNS with ECS
			defer wg.Done()
			c := &dns.Client{Timeout: time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				q := new(dns.Msg)
				q.SetQuestion("link.demo.lbs.test.", dns.TypeA)
				q.SetEdns0(1232, false)
				q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(9, 9, 9, 0).To4()})
				r, _, err := c.Exchange(q, m.l.DNSAddr().String())
				if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 || r.Answer[0].(*dns.A).A.String() != "192.0.2.12" {
					fail(fmt.Errorf("dns %v %v", err, r))
				} else {
					answers.Add(1)
				}
			}
		}()
	}
	// an SDK-side client with all three members in its bootstrap list
	var servers []string
	for _, m := range ms {
		servers = append(servers, "http://"+m.l.ClientAddr().String())
	}
	sdk, _ := lbsclient.New(lbsclient.Config{Servers: servers, AppKey: "demo", Stagger: 100 * time.Millisecond, Timeout: time.Second}, nil, nil)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := sdk.Refresh(context.Background()); err != nil {
				fail(fmt.Errorf("lbsclient: %w", err))
			} else {
				answers.Add(1)
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	ld.l.Kill()
	killed := time.Now()
	a := newAdmin(t, rest[0].l, testAdminToken)
	a.hc.Timeout = time.Second
	policy := mustRead(t, "testdata/policy.yaml")
	var writeAfter time.Duration
	for {
		code, b := a.do("POST", "/v1/policy/apply?comment=after-leader-loss", policy)
		if code == 200 {
			writeAfter = time.Since(killed)
			break
		}
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("no write within 10s: %d %s", code, b)
		}
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("RESULT lbs_leader_loss_failed_answers %d answers", failures.Load())
	t.Logf("RESULT lbs_leader_loss_write_recovery %.3f s", writeAfter.Seconds())
	t.Logf("answers during the test: %d", answers.Load())
	fmt.Printf("RESULT lbs_leader_loss_failed_answers %d answers\nRESULT lbs_leader_loss_write_recovery_seconds %.3f s\n", failures.Load(), writeAfter.Seconds())
	if failures.Load() != 0 {
		t.Fatalf("%d failed answers; first: %v", failures.Load(), firstErr.Load())
	}
	if writeAfter > 3*time.Second {
		t.Fatalf("writes accepted again only after %v", writeAfter)
	}
	if answers.Load() < 100 {
		t.Fatalf("only %d answers", answers.Load())
	}
	// the new leader's answers report a version past the write
	if _, ans := query(t, rest[1].l, "appkey=demo", ""); ans.PolicyVersion < 2 {
		t.Fatalf("version %d after the write", ans.PolicyVersion)
	}
}

var _ = json.Marshal
var _ = lbsapi.PathQuery

// TestJoinAndRemove grows a one-member cluster with cluster.join, checks the
// newcomer gets the state, then removes it.
func TestJoinAndRemove(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	first := startSingle(t)
	base := t.TempDir()
	// the newcomer uses the same CA (ca_dir) as the first member
	cfg := testConfig(t, "lbs2", base, first.cfg.TLS.CADir)
	cfg.Cluster.Join = []string{"https://" + first.AdminAddr().String()}
	second, err := New(cfg, Deps{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer second.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for second.fsm.Current().State.Version < 1 {
		if time.Now().After(deadline) {
			t.Fatal("joined member never got the state")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(first.cl.Status().Servers); n != 2 {
		t.Fatalf("%d servers after join", n)
	}
	// a write through the newcomer is forwarded to the leader
	a := newAdmin(t, second, testAdminToken)
	if code, b := a.do("POST", "/v1/nodes/edge-fra/drain", nil); code != 200 {
		t.Fatalf("write via the newcomer: %d %s", code, b)
	}
	body, _ := json.Marshal(map[string]string{"id": "lbs2"})
	if code, b := newAdmin(t, first, testAdminToken).do("POST", "/v1/raft/remove", body); code != 200 {
		t.Fatalf("remove: %d %s", code, b)
	}
	if n := len(first.cl.Status().Servers); n != 1 {
		t.Fatalf("%d servers after remove", n)
	}
}

// TestOwnerLoss: a node reports to one member; that member dies (and stays in
// the configuration) while the node is silent too. The leader marks the node
// down because nobody vouches for it any more.
func TestOwnerLoss(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	ms := startCluster(t)
	ld := leader(t, ms)
	f := followers(ms, ld)[0]
	n := newAdmin(t, f.l, testNodeToken)
	b, _ := json.Marshal(lbsapi.Heartbeat{Node: "edge-syd", Connections: 1})
	deadline := time.Now().Add(5 * time.Second)
	for ld.l.fsm.Current().State.Health["edge-syd"].State != "up" {
		if time.Now().After(deadline) {
			t.Fatal("node never came up")
		}
		n.do("POST", lbsapi.PathHeartbeat, b)
		time.Sleep(50 * time.Millisecond)
	}
	if o := ld.l.fsm.Current().State.Health["edge-syd"].Owner; o != f.cfg.NodeID {
		t.Fatalf("owner %q, want %q", o, f.cfg.NodeID)
	}
	f.l.Kill()
	t0 := time.Now()
	for {
		h := ld.l.fsm.Current().State.Health["edge-syd"]
		if h.State == "down" {
			t.Logf("down after %v: %s", time.Since(t0), h.Reason)
			break
		}
		if time.Since(t0) > 5*time.Second {
			t.Fatalf("still %+v", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
