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
// The rate is the workers over the time a worker spends on a login
// (EWMA over every login): with every worker busy that is the rate at
// which logins finish (Little's law), and when some are idle it is what
// the node would serve at the present service time. An earlier version
// measured the rate only while every worker was busy, so a rate measured
// once (during the first logins, or while a site's clients arrived with
// the gateway busy with their handshakes: 16/s, 60/s) was never revised:
// the hints paced the clients at that rate, the node kept up with them,
// and it was never busy again (two-site failover, BENCHMARKS.md); doubling
// it when a worker went idle while refusals were scheduled helped only
// the logins refused after the raise, not those refused in the rush,
// whose moments had been handed out at the low rate.

// loginAdmission measures the login queue and decides.
type loginAdmission struct {
	wait    time.Duration // the budget: the longest expected wait admitted
	workers int

	mu      sync.Mutex
	queued  int       // admitted logins not finished (waiting or being served)
	service float64   // seconds a worker spends on a login (EWMA); 0: none finished yet
	sched   time.Time // the return moment handed to the last refused login
}

// serviceWeight is the weight of the latest login in the service time's
// EWMA: about the last 16 logins count.
const serviceWeight = 1.0 / 16

// rateLocked is the node's login rate (logins/s); 0 until a login
// finished. a.mu is held.
func (a *loginAdmission) rateLocked() float64 {
	if a.service <= 0 {
		return 0
	}
	return float64(a.workers) / a.service
}

// admit reports whether a login arriving now joins the queue, and if not,
// when its client should come back. Until a login finished every login is
// admitted.
func (a *loginAdmission) admit(now time.Time) (bool, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rate := a.rateLocked()
	if rate <= 0 || float64(a.queued)/rate <= a.wait.Seconds() {
		a.queued++
		return true, 0
	}
	expected := time.Duration(float64(a.queued) / rate * float64(time.Second))
	back := now.Add(expected - a.wait) // the queue will be down to the budget
	if a.sched.Before(back) {
		a.sched = back
	}
	a.sched = a.sched.Add(time.Duration(float64(time.Second) / rate))
	hint := a.sched.Sub(now)
	hint += time.Duration((rand.Float64() - 0.5) * 0.2 * float64(hint))
	return false, min(max(hint, 100*time.Millisecond), time.Minute)
}

// done records a finished login that kept a worker for took (0: it was
// never served).
func (a *loginAdmission) done(took time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.queued--
	if took <= 0 {
		return
	}
	if s := took.Seconds(); a.service > 0 {
		a.service += serviceWeight * (s - a.service)
	} else {
		a.service = s
	}
}

// measured is the rate of logins in use and the queue's length.
func (a *loginAdmission) measured() (float64, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rateLocked(), a.queued
}

// admitLogin runs on the login subscription's goroutine: a login is queued
// for the login workers or refused at once with a hint.
func (d *Dispatcher) admitLogin(m *nats.Msg, r Route) {
	ok, hint := d.logins.admit(time.Now())
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
	case d.loginQ <- job{m: m, route: r}:
	default:
		// Beyond the queue's room (never at the default sizes): dropped
		// unanswered, the gateway answers the client 504.
		d.metrics.loginQueue.Dec()
		d.logins.done(0)
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
			d.logins.done(time.Since(start))
			rate, _ := d.logins.measured()
			d.metrics.loginRate.Set(rate)
		case <-d.stop:
			return
		}
	}
}
