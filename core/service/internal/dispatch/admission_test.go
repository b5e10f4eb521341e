package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/core/bus/bustest"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/route"
	"github.com/longlink/longlink/pkg/waittest"
)

// TestLoginAdmissionPlan: every login is admitted until the rate is
// measured over a window with every worker busy; then a login whose
// expected wait exceeds the budget is refused with a hint that sends it
// back when the queue is down to the budget, the next refused one a
// service time later, with ±10% jitter; once the queue is short again
// logins are admitted.
func TestLoginAdmissionPlan(t *testing.T) {
	a := loginAdmission{wait: time.Second, workers: 2}
	t0 := time.Unix(1000, 0)
	for i := range 300 {
		if ok, _ := a.admit(t0); !ok {
			t.Fatalf("login %d refused before the rate was measured", i)
		}
	}
	// 100 logins/s served with both workers busy.
	now := t0
	for range 60 {
		now = now.Add(10 * time.Millisecond)
		a.done(now)
	}
	rate, queued := a.measured()
	if rate < 95 || rate > 105 || queued != 240 {
		t.Fatalf("rate %.1f/s, queued %d; want 100/s, 240", rate, queued)
	}
	// 240 queued at 100/s: 2.4 s expected, 1.4 s over the budget.
	for i := range 5 {
		ok, hint := a.admit(now)
		want := 1400*time.Millisecond + time.Duration(i+1)*10*time.Millisecond
		if ok || hint < want*9/10 || hint > want*11/10 {
			t.Fatalf("refusal %d: admitted %v, hint %s, want about %s", i, ok, hint, want)
		}
	}
	for range 150 {
		now = now.Add(10 * time.Millisecond)
		a.done(now)
	}
	if ok, _ := a.admit(now); !ok {
		t.Fatal("refused with 90 queued at 100/s (0.9 s within the 1 s budget)")
	}
}

// TestLoginAdmissionRateRises: a rate measured low in a rush is doubled
// when a worker goes idle while refused logins are still scheduled (they
// arrive at the measured pace and the node keeps up), at most once a
// window, and the next refusal's hint is shorter for it; with no refusal
// scheduled, idle workers leave the rate as measured.
func TestLoginAdmissionRateRises(t *testing.T) {
	measure := func() (*loginAdmission, time.Time) {
		a := &loginAdmission{wait: time.Second, workers: 2}
		now := time.Unix(1000, 0)
		for range 300 {
			a.admit(now)
		}
		for range 60 { // 100 logins/s with both workers busy
			now = now.Add(10 * time.Millisecond)
			a.done(now)
		}
		return a, now
	}

	a, now := measure()
	_, before := a.admit(now) // 240 queued at 100/s: refused, back in ~1.41 s
	for range 239 {           // the queue drains, a worker goes idle
		now = now.Add(time.Millisecond)
		a.done(now)
	}
	if rate, queued := a.measured(); rate < 190 || rate > 210 || queued != 1 {
		t.Fatalf("rate %.1f/s, queued %d after keeping up with a refusal scheduled; want 200/s, 1", rate, queued)
	}
	a.admit(now) // idle again at once: not raised twice in a window
	a.done(now)
	if rate, _ := a.measured(); rate > 210 {
		t.Fatalf("rate raised to %.1f/s twice within a window", rate)
	}
	// The schedule ahead was halved with the raise: the next refused login
	// comes back in about half what was left of the first one's wait
	// (1.41 - 0.24 s) / 2, not after it.
	after := time.Duration(0)
	for ok := true; ok; {
		ok, after = a.admit(now)
	}
	if want := (before - 239*time.Millisecond) / 2; after < want*8/10 || after > want*12/10 {
		t.Fatalf("hint after the raise %s, want about %s (the first refusal's %s)", after, want, before)
	}

	a, now = measure()
	for range 239 {
		now = now.Add(time.Millisecond)
		a.done(now)
	}
	if rate, _ := a.measured(); rate < 95 || rate > 105 {
		t.Fatalf("rate %.1f/s after keeping up with no refusal scheduled; want 100/s as measured", rate)
	}
}

// TestLoginAdmissionServesEveryone: logins beyond what the node serves
// within the budget are answered 503 at once with a hint, and a client
// that comes back after its hint is served: every login succeeds, none
// times out, and the refusals are counted.
func TestLoginAdmissionServesEveryone(t *testing.T) {
	ns := bustest.Embedded(t)
	cfg := Config{Node: route.Node{Cluster: "c"}, ID: t.Name(), Announce: time.Second, MaxInFlight: 64, MaxRequestBytes: 1 << 16,
		RequestTimeout: 5 * time.Second, LoginQueueWait: 200 * time.Millisecond, LoginWorkers: 2}
	d, err := New(cfg, connect(t, ns), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	// A login's service time: 10 ms of the node's work, 2 at a time.
	d.Add(Route{Op: imapi.OpLogin, Handle: func(context.Context, *buswire.Session, []byte) (any, error) {
		time.Sleep(10 * time.Millisecond)
		return "ok", nil
	}})
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Shutdown(ctx)
	})
	nc := connect(t, ns)
	login := func() (time.Duration, error) {
		b, _ := json.Marshal(&buswire.Request{Body: json.RawMessage(`{}`)})
		m, err := nc.Request(buswire.ServiceSubject("c", imapi.OpLogin), b, 10*time.Second)
		if err != nil {
			return 0, err
		}
		var rep buswire.Reply
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			return 0, err
		}
		if rep.Code == imapi.OK {
			return 0, nil
		}
		var ie imapi.Error
		if rep.Code != imapi.ErrUnavailable || json.Unmarshal(rep.Body, &ie) != nil || ie.RetryAfterMs <= 0 {
			return 0, errors.New("refused without a hint: " + string(m.Data))
		}
		return time.Duration(ie.RetryAfterMs) * time.Millisecond, nil
	}
	var mu sync.Mutex
	var refusedOnce int
	errs := make(chan error, 200)
	client := func() {
		for {
			hint, err := login()
			if err != nil || hint == 0 {
				errs <- err
				return
			}
			mu.Lock()
			refusedOnce++
			mu.Unlock()
			time.Sleep(hint) // the client's pause, as the SDK waits it
		}
	}
	// The first wave measures the rate (with every worker busy), the
	// second finds a queue longer than 200 ms.
	for range 100 {
		go client()
	}
	waittest.Until(t, 10*time.Second, "the login rate measured", func() bool { return testutil.ToFloat64(d.metrics.loginRate) > 0 })
	for range 100 {
		go client()
	}
	for range 200 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := testutil.ToFloat64(d.metrics.loginRefusals); n == 0 || int(n) != refusedOnce {
		t.Fatalf("refusals counted %v, seen by the clients %d (want some, the same)", n, refusedOnce)
	}
	if q := testutil.ToFloat64(d.metrics.loginQueue); q != 0 {
		t.Fatalf("login queue gauge %v after all", q)
	}
}
