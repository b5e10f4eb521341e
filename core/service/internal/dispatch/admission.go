package dispatch

import (
	"encoding/json"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/internal/buswire"
)

// Logins are admitted against this node's login queue. After a core
// restarts, every client comes back within seconds; a login that waits in
// the queue longer than its client's connect timeout is work for no one
// (the client has gone and comes back once more), and one that times out
// at its gateway told the client nothing about when to return. So the
// node serves logins in arrival order with LoginWorkers at once, keeps
// the expected wait of the queue (its length over the node's login rate)
// within LoginQueueWait, and answers the rest at once with 503 and a
// retry-after hint: the moments handed out are spaced at that rate after
// the queue will have drained to the budget (with ±10% jitter), so the
// refused clients return about as fast as the node serves them rather
// than together.
//
// The rate is the workers over the time a worker spends on a login that
// had to wait for one (EWMA): with every worker busy that is the rate at
// which logins finish (Little's law), sampled by every such login rather
// than by whole half seconds of saturation. Logins served while workers
// are idle say nothing of the limit (a login alone took 7 ms where 32
// at once on a busy core took 400: 4,700/s against ~100/s), and a rate
// not sampled for staleAfter is forgotten, so that a burst long after is
// not planned with it. A refusal needs a queue of the rate times the
// budget, every worker busy (unless a login takes longer than the budget),
// so the rate it plans with is sampled within a service time, or the
// burst's first logins are admitted until it is. An earlier version
// measured the rate over half seconds with every worker busy; the queue
// at the budget hovered around the worker count, the window ended at each
// idle moment, and a rate measured once (16/s during the first logins,
// 60/s while the gateway was busy with handshakes) paced every later
// refusal: the node kept up with the paced clients and was never measured
// again (two-site failover, BENCHMARKS.md).

// loginAdmission measures the login queue and decides.
type loginAdmission struct {
	wait    time.Duration // the budget: the longest expected wait admitted
	workers int

	mu      sync.Mutex
	queued  int       // admitted logins not finished (waiting or being served)
	service float64   // seconds a worker spends on a login with every worker busy (EWMA); 0: not measured
	sampled time.Time // when service was last sampled
	sched   time.Time // the return moment handed to the last refused login
}

// serviceWeight is the weight of the latest login in the service time's
// EWMA: about the last 16 logins count.
const serviceWeight = 1.0 / 16

// staleAfter: a service time not sampled for this long is forgotten.
const staleAfter = 5 * time.Second

// rateLocked is the node's login rate (logins/s) at now; 0 when not
// measured or stale. a.mu is held.
func (a *loginAdmission) rateLocked(now time.Time) float64 {
	if a.service <= 0 || now.Sub(a.sampled) > staleAfter {
		return 0
	}
	return float64(a.workers) / a.service
}

// admit reports whether a login arriving now joins the queue, and if not,
// when its client should come back; an admitted login that will wait for
// a worker (every one busy) is to be sampled (done). Until the rate is
// measured every login is admitted.
func (a *loginAdmission) admit(now time.Time) (ok bool, hint time.Duration, sample bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rate := a.rateLocked(now)
	if rate <= 0 || float64(a.queued)/rate <= a.wait.Seconds() {
		sample = a.queued >= a.workers
		a.queued++
		return true, 0, sample
	}
	expected := time.Duration(float64(a.queued) / rate * float64(time.Second))
	back := now.Add(expected - a.wait) // the queue will be down to the budget
	if a.sched.Before(back) {
		a.sched = back
	}
	a.sched = a.sched.Add(time.Duration(float64(time.Second) / rate))
	hint = a.sched.Sub(now)
	hint += time.Duration((rand.Float64() - 0.5) * 0.2 * float64(hint))
	return false, min(max(hint, 100*time.Millisecond), time.Minute), false
}

// done records a finished login that kept a worker for took (0: it was
// never served); sample says it had waited for a worker.
func (a *loginAdmission) done(now time.Time, took time.Duration, sample bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.queued--
	if !sample || took <= 0 {
		return
	}
	if s := took.Seconds(); a.service > 0 && now.Sub(a.sampled) <= staleAfter {
		a.service += serviceWeight * (s - a.service)
	} else {
		a.service = s
	}
	a.sampled = now
}

// measured is the rate of logins in use and the queue's length.
func (a *loginAdmission) measured(now time.Time) (float64, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rateLocked(now), a.queued
}

// admitLogin runs on the login subscription's goroutine: a login is queued
// for the login workers or refused at once with a hint.
func (d *Dispatcher) admitLogin(m *nats.Msg, r Route) {
	ok, hint, sample := d.logins.admit(time.Now())
	if !ok {
		d.metrics.loginRefusals.Inc()
		d.metrics.requests.WithLabelValues(r.Op.Name(), "503").Inc()
		ie := imapi.Error{Code: imapi.ErrUnavailable, Message: "busy: too many logins waiting", RetryAfterMs: max(1, hint.Milliseconds())}
		body, _ := json.Marshal(&ie)
		if m.Reply != "" {
			_ = m.Respond(buswire.AppendReply(nil, &buswire.Reply{Code: ie.Code, Message: ie.Message, Body: body}))
		}
		return
	}
	d.wg.Add(1)
	d.metrics.loginQueue.Inc()
	select {
	case d.loginQ <- job{m: m, route: r, sample: sample}:
	default:
		// Beyond the queue's room (never at the default sizes): dropped
		// unanswered, the gateway answers the client 504.
		d.metrics.loginQueue.Dec()
		d.logins.done(time.Now(), 0, false)
		d.wg.Done()
	}
}

// loginWorker serves queued logins in order, each under an in-flight slot.
func (d *Dispatcher) loginWorker() {
	defer d.workers.Done()
	for {
		select {
		case j := <-d.loginQ:
			d.metrics.loginQueue.Dec()
			start := time.Now()
			d.sem <- struct{}{}
			d.metrics.inflight.Inc()
			d.run(j)
			now := time.Now()
			d.logins.done(now, now.Sub(start), j.sample)
			rate, _ := d.logins.measured(now)
			d.metrics.loginRate.Set(rate)
		case <-d.stop:
			return
		}
	}
}
