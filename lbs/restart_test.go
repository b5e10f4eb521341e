package lbs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/waittest"
)

// heldListener hands raft no connection until release is called: the
// leader cannot reach the member, which holds a catch-up window open for as
// long as the test needs it.
type heldListener struct {
	net.Listener
	open, done chan struct{}
	once       sync.Once
}

func (h *heldListener) Accept() (net.Conn, error) {
	c, err := h.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case <-h.open:
		return c, nil
	case <-h.done:
		c.Close()
		return nil, net.ErrClosed
	}
}

func (h *heldListener) release() { close(h.open) }

func (h *heldListener) Close() error {
	h.once.Do(func() { close(h.done) })
	return h.Listener.Close()
}

// TestRestartedMemberWaitsForCatchUp restarts a follower whose local state
// (a snapshot, then log entries) is behind the cluster, and queries it over
// HTTP, /resolve and DNS (and once with dig) from the moment it starts: until
// it has applied what the leader had committed, it must answer 503 with
// Retry-After and SERVFAIL, and not be ready; never 404, NXDOMAIN or an old
// policy version.
func TestRestartedMemberWaitsForCatchUp(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	ms := startCluster(t)
	ld := leader(t, ms)
	f := followers(ms, ld)[0]
	a := newAdmin(t, ld.l, testAdminToken)
	policy := string(mustRead(t, "testdata/policy.yaml"))
	apply := func(doc, comment string) uint64 {
		t.Helper()
		var res struct {
			Version uint64 `json:"version"`
		}
		// Under load the leader may lose its lease or step down for a
		// moment (503, CI saw it): the apply is asked again, through
		// whichever member leads by then (a member forwards proposals).
		var code int
		waittest.Until(t, 20*time.Second, "policy "+comment+" applied", func() bool {
			code = a.json("POST", "/v1/policy/apply?comment="+comment, []byte(doc), &res)
			return code != http.StatusServiceUnavailable
		})
		if code != http.StatusOK {
			t.Fatalf("apply %s: %d", comment, code)
		}
		return res.Version
	}
	// The follower snapshots an early version, then logs later ones.
	v := apply(strings.Replace(policy, "description: lbs package tests", "description: two", 1), "two")
	waittest.Until(t, 5*time.Second, "the follower applying version 2", func() bool { return f.l.fsm.Current().State.Version >= v })
	if err := f.l.cl.TakeSnapshot(); err != nil {
		t.Fatal(err)
	}
	apply(strings.Replace(policy, "description: lbs package tests", "description: three", 1), "three")
	raftAddr := f.l.raftAddr()
	f.l.Kill()
	// While it is down, an app is added: its old state does not know it.
	late := strings.Replace(policy, "  - {appkey: acme, pools: [world]}", "  - {appkey: acme, pools: [world]}\n  - {appkey: late, pools: [world]}", 1)
	latest := apply(late, "late")

	ln, err := net.Listen("tcp", raftAddr)
	if err != nil {
		t.Fatal(err)
	}
	held := &heldListener{Listener: ln, open: make(chan struct{}), done: make(chan struct{})}
	r, err := New(f.cfg, Deps{Registerer: prometheus.NewRegistry(), RaftListener: held})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Kill)

	// bad records what must never happen; the counts show both phases ran.
	var bad atomic.Value
	var notReady, served atomic.Int64
	check := func(what string, ready bool, ok, refused bool, detail string) {
		switch {
		case ok:
			served.Add(1)
		case refused && !ready:
			notReady.Add(1)
		default:
			bad.CompareAndSwap(nil, fmt.Sprintf("%s (ready %v): %s", what, ready, detail))
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// repeat runs ask until stop, or until it fails to get an answer.
	repeat := func(ask func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := ask(); err != nil {
					bad.CompareAndSwap(nil, err.Error())
					return
				}
			}
		}()
	}
	dc := &dns.Client{Timeout: 2 * time.Second}
	for _, appkey := range []string{"demo", "late"} {
		repeat(func() error { // SDK HTTP
			ready := r.Ready() == nil
			resp, err := httpDo(r.ClientAddr().String(), lbsapi.PathQuery+"?appkey="+appkey)
			var ans lbsapi.Answer
			_ = json.Unmarshal(resp.body, &ans)
			check("GET /v1/lbs?appkey="+appkey, ready, resp.code == 200 && ans.PolicyVersion >= latest,
				resp.code == 503 && resp.retryAfter != "", fmt.Sprintf("%d %s", resp.code, resp.body))
			return err
		})
		repeat(func() error { // DNS-over-HTTPS JSON
			ready := r.Ready() == nil
			resp, err := httpDo(r.ClientAddr().String(), lbsapi.PathResolve+"?name=link."+appkey+".lbs.test&type=A")
			var out resolveAnswer
			_ = json.Unmarshal(resp.body, &out)
			check("/resolve link."+appkey, ready, resp.code == 200 && out.Status == dns.RcodeSuccess && len(out.Answer) > 0,
				resp.code == 503 && resp.retryAfter != "", fmt.Sprintf("%d %s", resp.code, resp.body))
			return err
		})
		repeat(func() error { // DNS
			ready := r.Ready() == nil
			q := new(dns.Msg)
			q.SetQuestion("link."+appkey+".lbs.test.", dns.TypeA)
			resp, _, err := dc.Exchange(q, r.DNSAddr().String())
			if err != nil {
				return err
			}
			check("DNS link."+appkey, ready, resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0,
				resp.Rcode == dns.RcodeServerFailure && !resp.Authoritative, resp.String())
			return nil
		})
	}
	waittest.Until(t, 10*time.Second, "answers while catching up", func() bool { return notReady.Load() >= 100 || bad.Load() != nil })
	if err := r.Ready(); err == nil {
		t.Error("ready before the leader could reach it")
	}
	if out := digStatus(t, r.DNSAddr().String(), "link.late.lbs.test"); out != "SERVFAIL" {
		t.Errorf("dig while catching up: status %s, want SERVFAIL", out)
	}
	held.release()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := r.WaitReady(ctx); err != nil {
		t.Fatalf("not ready after the leader could reach it: %v", err)
	}
	waittest.Until(t, 10*time.Second, "answers once caught up", func() bool { return served.Load() >= 100 || bad.Load() != nil })
	close(stop)
	wg.Wait()
	t.Logf("%d refusals while catching up, %d answers after", notReady.Load(), served.Load())
	if b := bad.Load(); b != nil {
		t.Fatalf("answered from a state behind the cluster: %v", b)
	}
	if v := r.fsm.Current().State.Version; v < latest {
		t.Fatalf("ready at version %d < %d", v, latest)
	}
	if out := digStatus(t, r.DNSAddr().String(), "link.late.lbs.test"); out != "NOERROR" {
		t.Errorf("dig once caught up: status %s, want NOERROR", out)
	}
}

type httpResult struct {
	code       int
	retryAfter string
	body       []byte
}

var testHTTP = &http.Client{Timeout: 3 * time.Second}

func httpDo(addr, path string) (httpResult, error) {
	resp, err := testHTTP.Get("http://" + addr + path)
	if err != nil {
		return httpResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return httpResult{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: b}, err
}

// digStatus asks the real dig and returns the answer's status (NOERROR,
// SERVFAIL, NXDOMAIN…).
func digStatus(t *testing.T, addr, name string) string {
	t.Helper()
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Fatal("dig not installed (tools/testdeps/install.sh installs it)")
	}
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, dig, "@"+host, "-p", port, "+time=2", "+tries=1", name, "A").CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", name, err, out)
	}
	_, rest, ok := strings.Cut(string(out), "status: ")
	if !ok {
		t.Fatalf("dig %s: no status in\n%s", name, out)
	}
	status, _, _ := strings.Cut(rest, ",")
	return status
}
