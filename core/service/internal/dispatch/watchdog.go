package dispatch

import (
	"context"
	"sync"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

// The watchdog takes a stalled node out of service. A node whose store
// hangs (a stuck disk, a lock), or whose handlers do not get CPU, still
// answers the NATS server's pings, so the server keeps handing it its
// share of requests, which time out one by one. When requests are in
// flight but none has finished for StallAfter, the node leaves every queue
// group (unsubscribes: new requests go to the other nodes, those buffered
// here are dropped and resent by their gateways), logs what it is stuck on,
// and joins again once a request finishes. A node stopped outright
// (SIGSTOP) cannot watch itself: the NATS servers' own pings drop it.
//
// A saturated node is not a stalled one. In a reconnect storm thousands of
// logins are in flight, each slow because all share the CPU, and a few
// seconds can pass without one finishing although the node works flat
// out; leaving then turned every login away (503 "no live node") that the
// node would have served. So a node whose process used at least a quarter
// of a CPU over the window is busy, not stalled, and stays (counted in
// stall_busy_total); a stuck store or a starved process uses next to none.
type watchdog struct {
	mu       sync.Mutex
	running  map[*watched]struct{}
	lastDone time.Time
	left     bool
	// cpu samples the process's CPU time at each check, oldest first.
	cpu []cpuSample
}

type cpuSample struct {
	at   time.Time
	used time.Duration
}

// busyShare is the share of one CPU over the stall window above which the
// node is taken for saturated rather than stalled.
const busyShare = 4 // a quarter: window / busyShare

// busy records the CPU time used by now and reports whether the process
// used at least a quarter of a CPU over the last after (false until a
// whole window is sampled).
func (w *watchdog) busy(now time.Time, used, after time.Duration) bool {
	w.cpu = append(w.cpu, cpuSample{at: now, used: used})
	// Keep the newest sample at least a window old and those after it.
	i := 0
	for i+1 < len(w.cpu) && now.Sub(w.cpu[i+1].at) >= after {
		i++
	}
	w.cpu = w.cpu[i:]
	first := w.cpu[0]
	if now.Sub(first.at) < after {
		return false
	}
	return used-first.used >= now.Sub(first.at)/busyShare
}

type watched struct {
	op    imapi.Op
	start time.Time
}

func (w *watchdog) begin(op imapi.Op) *watched {
	x := &watched{op: op, start: time.Now()}
	w.mu.Lock()
	if w.running == nil {
		w.running = map[*watched]struct{}{}
	}
	w.running[x] = struct{}{}
	w.mu.Unlock()
	return x
}

func (w *watchdog) end(x *watched) {
	w.mu.Lock()
	delete(w.running, x)
	w.lastDone = time.Now()
	w.mu.Unlock()
}

// stalled reports whether requests are in flight, the oldest for longer
// than after, and none finished within after; with the oldest request.
func (w *watchdog) stalled(now time.Time, after time.Duration) (bool, *watched, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var oldest *watched
	for x := range w.running {
		if oldest == nil || x.start.Before(oldest.start) {
			oldest = x
		}
	}
	if oldest == nil || now.Sub(oldest.start) < after || now.Sub(w.lastDone) < after {
		return false, oldest, len(w.running)
	}
	return true, oldest, len(w.running)
}

// watchLoop checks for a stall a few times per StallAfter and leaves or
// joins the queue groups as it comes and goes.
func (d *Dispatcher) watchLoop() {
	defer d.workers.Done()
	t := time.NewTicker(d.cfg.StallAfter / 4)
	defer t.Stop()
	// The first CPU sample: by the time a request can have been in flight
	// for StallAfter, a whole window is sampled.
	d.watch.busy(time.Now(), d.cpuTime(), d.cfg.StallAfter)
	for {
		select {
		case <-d.stop:
			return
		case now := <-t.C:
			stalled, oldest, n := d.watch.stalled(now, d.cfg.StallAfter)
			busy := d.watch.busy(now, d.cpuTime(), d.cfg.StallAfter)
			switch {
			case stalled && busy && !d.watch.left:
				d.metrics.stallBusy.Inc()
				d.busyLog.Do(func() {
					d.log.Warn("no request finished lately, but the node is busy on the CPU (saturated, not stalled): staying in the queue groups",
						"in_flight", n, "oldest_op", oldest.op.Name(), "oldest_age", now.Sub(oldest.start).Round(time.Millisecond))
				})
			case stalled && !d.watch.left:
				d.watch.left = true
				d.leave()
				d.metrics.stalls.Inc()
				d.metrics.stalled.Set(1)
				d.log.Error("node stalled: no request finished lately; leaving the queue groups so that others serve",
					"in_flight", n, "oldest_op", oldest.op.Name(), "oldest_age", now.Sub(oldest.start).Round(time.Millisecond),
					"stall_after", d.cfg.StallAfter)
			case !stalled && d.watch.left:
				if d.rejoin() {
					d.watch.left = false
					d.metrics.stalled.Set(0)
					d.log.Warn("node serving again: requests finish; rejoined the queue groups", "in_flight", n)
				}
			}
		}
	}
}

// leave unsubscribes every route (the requests buffered here are dropped:
// their gateways resend them elsewhere).
func (d *Dispatcher) leave() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unsubscribeLocked()
}

// rejoin subscribes again (unless the dispatcher is stopping).
func (d *Dispatcher) rejoin() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.subscribeLocked(ctx); err != nil {
		d.log.Warn("rejoin the queue groups", "err", err)
		return false
	}
	return true
}
