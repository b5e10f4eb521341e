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

// TestLoginAdmissionPlan: every login is admitted until one that waited
// for a worker finished; then the rate is the workers over their service
// time, a login whose expected wait exceeds the budget is refused with a
// hint that sends it back when the queue is down to the budget, the next
// refused one a service time later, with ±10% jitter; once the queue is
// short again logins are admitted.
func TestLoginAdmissionPlan(t *testing.T) {
	a := loginAdmission{wait: time.Second, workers: 2}
	now := time.Unix(1000, 0)
	var samples []bool
	for i := range 300 {
		ok, _, sample := a.admit(now)
		if !ok {
			t.Fatalf("login %d refused before the rate was measured", i)
		}
		samples = append(samples, sample)
	}
	if samples[0] || samples[1] || !samples[2] {
		t.Fatalf("sampled %v for the first three logins with 2 workers; want the third on", samples[:3])
	}
	// 20 ms a login on each of the 2 workers: 100 logins/s.
	for i := range 60 {
		now = now.Add(10 * time.Millisecond)
		a.done(now, 20*time.Millisecond, samples[i])
	}
	rate, queued := a.measured(now)
	if rate < 99 || rate > 101 || queued != 240 {
		t.Fatalf("rate %.1f/s, queued %d; want 100/s, 240", rate, queued)
	}
	// 240 queued at 100/s: 2.4 s expected, 1.4 s over the budget.
	for i := range 5 {
		ok, hint, _ := a.admit(now)
		want := 1400*time.Millisecond + time.Duration(i+1)*10*time.Millisecond
		if ok || hint < want*9/10 || hint > want*11/10 {
			t.Fatalf("refusal %d: admitted %v, hint %s, want about %s", i, ok, hint, want)
		}
	}
	for range 150 {
		now = now.Add(10 * time.Millisecond)
		a.done(now, 20*time.Millisecond, true)
	}
	if ok, _, _ := a.admit(now); !ok {
		t.Fatal("refused with 90 queued at 100/s (0.9 s within the 1 s budget)")
	}
}

// TestLoginAdmissionRateRises: the rate follows the service time of logins
// served with every worker busy, up and down; logins served while workers
// are idle leave it (one login alone is no measure of 32 at once), and a
// rate not sampled for staleAfter is forgotten. A rate measured over whole
// half seconds of saturation stayed at the first one: the hints paced the
// clients at it and the node was never saturated that long again.
func TestLoginAdmissionRateRises(t *testing.T) {
	a := loginAdmission{wait: time.Second, workers: 32}
	now := time.Unix(1000, 0)
	burst := func(n int, took time.Duration) {
		var samples []bool
		for range n {
			if ok, _, sample := a.admit(now); ok {
				samples = append(samples, sample)
			}
		}
		for _, sample := range samples {
			now = now.Add(time.Millisecond)
			a.done(now, took, sample)
		}
	}
	// Slow logins in a rush (the core busy with handshakes): 32 workers at
	// 500 ms a login, 64/s.
	burst(96, 500*time.Millisecond)
	if rate, _ := a.measured(now); rate < 63 || rate > 65 {
		t.Fatalf("rate %.1f/s, want 64/s", rate)
	}
	// Logins one at a time, fast: no measure of the node's limit.
	for range 100 {
		burst(1, 5*time.Millisecond)
	}
	if rate, _ := a.measured(now); rate < 63 || rate > 65 {
		t.Fatalf("rate %.1f/s after logins alone, want 64/s still", rate)
	}
	// The next rush at 20 ms a login with every worker busy: 1,600/s (the
	// first logins of it beyond the budget at 64/s are refused).
	for range 3 {
		burst(200, 20*time.Millisecond)
	}
	if rate, _ := a.measured(now); rate < 1400 {
		t.Fatalf("rate %.1f/s after busy logins of 20 ms, want about 1,600/s", rate)
	}
	// Not sampled for longer than staleAfter: forgotten, logins admitted.
	now = now.Add(staleAfter + time.Second)
	if rate, _ := a.measured(now); rate != 0 {
		t.Fatalf("rate %.1f/s %s after its last sample, want none", rate, staleAfter+time.Second)
	}
	for i := range 1000 {
		if ok, _, _ := a.admit(now); !ok {
			t.Fatalf("login %d refused with a stale rate", i)
		}
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
