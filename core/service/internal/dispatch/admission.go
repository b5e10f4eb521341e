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
// the expected wait of the queue (its length over the measured rate of
// logins) within LoginQueueWait, and answers the rest at once with 503 and
// a retry-after hint: the moments handed out are spaced at the measured
// rate after the queue will have drained to the budget (with ±10% jitter),
// so the refused clients return about as fast as the node serves them
// rather than together.

// loginAdmission measures the login queue and decides.
type loginAdmission struct {
	wait    time.Duration // the budget: the longest expected wait admitted
	workers int

	mu     sync.Mutex
	queued int     // admitted logins not finished (waiting or being served)
	rate   float64 // logins finished per second while every worker was busy (EWMA); 0: not measured
	// The measuring window: logins done since winStart, and whether every
	// worker stayed busy throughout (the node was the bottleneck; a
	// window in which the node kept up says nothing of its limit).
	winStart time.Time
	winDone  int
	winBusy  bool
	sched    time.Time // the return moment handed to the last refused login
	raised   time.Time // when the rate was last raised for keeping up (done)
}

// rateWindow is how long the login rate is measured for each sample.
const rateWindow = 500 * time.Millisecond

// admit reports whether a login arriving now joins the queue, and if not,
// when its client should come back. Until the rate is measured (the first
// busy window) every login is admitted.
func (a *loginAdmission) admit(now time.Time) (bool, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rate <= 0 || float64(a.queued)/a.rate <= a.wait.Seconds() {
		a.queued++
		if a.queued == a.workers && !a.winBusy {
			// Every worker busy from now: a window starts.
			a.winStart, a.winDone, a.winBusy = now, 0, true
		}
		return true, 0
	}
	expected := time.Duration(float64(a.queued) / a.rate * float64(time.Second))
	back := now.Add(expected - a.wait) // the queue will be down to the budget
	if a.sched.Before(back) {
		a.sched = back
	}
	a.sched = a.sched.Add(time.Duration(float64(time.Second) / a.rate))
	hint := a.sched.Sub(now)
	hint += time.Duration((rand.Float64() - 0.5) * 0.2 * float64(hint))
	return false, min(max(hint, 100*time.Millisecond), time.Minute)
}

// done records a finished login.
func (a *loginAdmission) done(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.queued--
	if a.queued < a.workers {
		// A worker is idle: the node keeps up, the window ends unmeasured.
		a.winBusy = false
		a.raiseIfPacedBelow(now)
		return
	}
	if !a.winBusy {
		return
	}
	a.winDone++
	if el := now.Sub(a.winStart); el >= rateWindow {
		sample := float64(a.winDone) / el.Seconds()
		if a.rate > 0 {
			a.rate = 0.7*a.rate + 0.3*sample
		} else {
			a.rate = sample
		}
		a.winStart, a.winDone = now, 0
	}
}

// raiseIfPacedBelow doubles the rate when a worker is idle while refused
// logins are still scheduled to come back (sched is ahead): they arrive
// at the measured rate and the node keeps up with them, so it serves
// more than was measured. The rate is only measured while every worker is
// busy, and the hints keep arrivals below it, so without this a rate
// measured low once (in a rush, while handshakes or another process took
// the CPU: 326 logins/s in a 19,000-client storm that then ran at
// 1,400-1,600/s, 7.9/s at load 30) would pace every later refusal for
// good. The schedule ahead is shortened by as much, so the next refused
// logins come back sooner; if the node cannot keep up, its workers fill
// and the next busy window measures it again. At most once a window.
func (a *loginAdmission) raiseIfPacedBelow(now time.Time) {
	if a.rate <= 0 || !a.sched.After(now) || now.Sub(a.raised) < rateWindow {
		return
	}
	a.rate *= 2
	a.sched = now.Add(a.sched.Sub(now) / 2)
	a.raised = now
}

// measured is the rate of logins in use and the queue's length.
func (a *loginAdmission) measured() (float64, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rate, a.queued
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
		d.logins.done(time.Now())
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
			d.sem <- struct{}{}
			d.metrics.inflight.Inc()
			d.run(j)
			d.logins.done(time.Now())
			rate, _ := d.logins.measured()
			d.metrics.loginRate.Set(rate)
		case <-d.stop:
			return
		}
	}
}
