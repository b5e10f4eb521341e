// Package dispatch is the service node's thin bus layer: it subscribes to
// every registered op's subject in the queue group buswire.ServiceQueue,
// bounds the requests in flight, runs handlers on a pool of workers, encodes
// the replies and counts requests. (A session's sends are ordered by its
// gateway, which has at most one batch of them out: core/gateway/ORDER.md.) The domains (core/service/msg, room, …)
// register their ops on it; it knows nothing of what they do.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/route"
)

// Handler answers one request of a logged-in session (of anyone for
// imapi.OpLogin). A returned *imapi.Error goes to the client as it is;
// any other error is logged and answered as imapi.ErrInternal.
type Handler func(ctx context.Context, sess *buswire.Session, body []byte) (any, error)

// Route binds an op to its handler.
type Route struct {
	Op     imapi.Op
	Handle Handler
}

// Config tunes a dispatcher.
type Config struct {
	// Node is the cluster (subject prefix) and version served: the routes'
	// subjects are those of the node's routes (core/route).
	Node route.Node
	// ID names the node in its announcements (route.NodeSubject), every
	// Announce.
	ID              string
	Announce        time.Duration
	MaxInFlight     int           // concurrent handlers
	MaxRequestBytes int           // larger requests are refused (ErrTooLarge)
	RequestTimeout  time.Duration // each handler's context
	// MaxRequestAge: a request stamped by its gateway (buswire.Request.Sent)
	// longer ago than this is dropped unanswered; 0 keeps every one.
	MaxRequestAge time.Duration
	// StallAfter: when requests are in flight but none has finished for
	// this long, the node leaves its queue groups (so that the requests go
	// to the other nodes) until one finishes; 0 never leaves (watchdog.go).
	StallAfter time.Duration
	// LoginQueueWait: a login whose expected wait in this node's login
	// queue (its length over the measured login rate) is longer is
	// answered 503 at once with a retry-after hint (admission.go); 0: no
	// login admission (logins are served as any request).
	LoginQueueWait time.Duration
	// LoginWorkers is how many logins are served at once with the login
	// admission; the others wait in order. Default 32.
	LoginWorkers int
	// CPUTime is the process's CPU time, which tells the watchdog a
	// saturated node from a stalled one; nil: the process's own.
	CPUTime func() time.Duration
}

// Dispatcher serves the registered routes on the bus.
type Dispatcher struct {
	cfg      Config
	nc       *nats.Conn
	log      *slog.Logger
	metrics  *metrics
	oversize prometheus.Counter
	routes   map[string]Route // by subject

	sem chan struct{}
	wg  sync.WaitGroup // requests in flight
	// Workers: a request runs on an idle worker when there is one (its
	// stack already grown by earlier requests; a fresh goroutine per
	// request spent a tenth of the CPU of a send growing its stack while
	// decoding), else on a new one. Idle workers exit after workerIdle.
	idle     chan job
	stop     chan struct{}
	stopOnce sync.Once
	workers  sync.WaitGroup
	mu       sync.Mutex
	subs     []*nats.Subscription
	announce *route.Announcer
	stopped  bool // Shutdown began: the watchdog subscribes nothing again

	watch   watchdog
	logins  loginAdmission
	loginQ  chan job // admitted logins, in arrival order
	cpuTime func() time.Duration
	busyLog rate.Sometimes

	late       atomic.Int64 // requests more than a second old, ever
	lateLogged atomic.Int64 // late when the last line was logged
	lateLog    rate.Sometimes
}

type job struct {
	m     *nats.Msg
	route Route
	// sample: a login that waited for a login worker, whose service time
	// the login admission samples.
	sample bool
}

// workerIdle is how long an idle worker waits for a request before it exits.
const workerIdle = 2 * time.Second

// New builds a dispatcher; oversize counts the requests refused for their
// size (a counter the domains share).
func New(cfg Config, nc *nats.Conn, log *slog.Logger, reg prometheus.Registerer, oversize prometheus.Counter) (*Dispatcher, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	cpuTime := cfg.CPUTime
	if cpuTime == nil {
		cpuTime = processCPU
	}
	if cfg.LoginWorkers <= 0 {
		cfg.LoginWorkers = 32
	}
	return &Dispatcher{
		cfg: cfg, nc: nc, log: log, metrics: m, oversize: oversize, routes: map[string]Route{},
		logins: loginAdmission{wait: cfg.LoginQueueWait, workers: cfg.LoginWorkers}, loginQ: make(chan job, maxLoginQueue),
		sem: make(chan struct{}, cfg.MaxInFlight), idle: make(chan job), stop: make(chan struct{}),
		lateLog: rate.Sometimes{Interval: time.Second}, busyLog: rate.Sometimes{Interval: 10 * time.Second},
		cpuTime: cpuTime,
	}, nil
}

// Add registers routes; it is called before Start. Each is served on the
// subject of every route of the node (stable and versioned).
func (d *Dispatcher) Add(routes ...Route) {
	for _, r := range routes {
		for _, rt := range d.cfg.Node.Routes() {
			d.routes[rt.Subject(r.Op)] = r
		}
	}
}

// Ops lists the ops registered.
func (d *Dispatcher) Ops() []imapi.Op {
	out := make([]imapi.Op, 0, len(d.routes))
	for _, r := range d.routes {
		if !slices.Contains(out, r.Op) {
			out = append(out, r.Op)
		}
	}
	return out
}

// Start subscribes to every route's subject and starts the watchdog.
func (d *Dispatcher) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.subscribeLocked(ctx); err != nil {
		return err
	}
	// Subscribed: the gateways may count this node as live.
	n := d.cfg.Node
	d.announce = route.NewAnnouncer(d.nc, route.NodeAnnounce{ID: d.cfg.ID, Cluster: n.Cluster, Version: n.Version, Site: n.Site, Canary: n.Canary}, d.cfg.Announce, d.log)
	if err := d.announce.Start(ctx); err != nil {
		d.unsubscribeLocked()
		return err
	}
	d.metrics.info.WithLabelValues(d.cfg.ID, n.Cluster, n.Version, strconv.FormatBool(n.Canary), n.Site).Set(1)
	if d.cfg.StallAfter > 0 {
		d.workers.Add(1)
		go d.watchLoop()
	}
	if d.cfg.LoginQueueWait > 0 {
		d.workers.Add(d.cfg.LoginWorkers)
		for range d.cfg.LoginWorkers {
			go d.loginWorker()
		}
	}
	return nil
}

// maxLoginQueue bounds the admitted logins waiting for a worker (the
// admission keeps far fewer: its wait budget's worth).
const maxLoginQueue = 1 << 16

// subscribeLocked joins the queue group of every route's subject; d.mu is
// held.
func (d *Dispatcher) subscribeLocked(ctx context.Context) error {
	for subj, r := range d.routes {
		handle := d.dispatch
		if r.Op == imapi.OpLogin && d.cfg.LoginQueueWait > 0 {
			handle = d.admitLogin
		}
		sub, err := d.nc.QueueSubscribe(subj, buswire.ServiceQueue, func(m *nats.Msg) { handle(m, r) })
		if err != nil {
			d.unsubscribeLocked()
			return fmt.Errorf("subscribe %s: %w", subj, err)
		}
		// Requests wait in the client buffer while MaxInFlight are handled;
		// a generous buffer rides out bursts instead of dropping requests.
		_ = sub.SetPendingLimits(1<<20, 256<<20)
		d.subs = append(d.subs, sub)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.nc.FlushWithContext(fctx); err != nil {
		d.unsubscribeLocked()
		return fmt.Errorf("flush subscriptions: %w", err)
	}
	return nil
}

func (d *Dispatcher) unsubscribeLocked() {
	for _, sub := range d.subs {
		_ = sub.Unsubscribe()
	}
	d.subs = nil
}

// Shutdown stops taking requests (the queue group sends new ones to other
// nodes), lets the buffered ones finish and waits for in-flight handlers.
func (d *Dispatcher) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	subs, an := d.subs, d.announce
	d.subs = nil
	d.stopped = true
	d.mu.Unlock()
	if an != nil {
		_ = an.Shutdown(ctx) // announced draining before it leaves the queue groups
	}
	for _, sub := range subs {
		_ = sub.Drain()
	}
	for _, sub := range subs {
		for sub.IsValid() {
			select {
			case <-ctx.Done():
				_ = sub.Unsubscribe()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		d.stopOnce.Do(func() { close(d.stop) })
		d.workers.Wait()
		return nil
	case <-ctx.Done():
		d.stopOnce.Do(func() { close(d.stop) })
		return ctx.Err()
	}
}

// dispatch runs on the subscription's goroutine: it takes an in-flight slot
// (blocking the subscription when the node is saturated) and hands the
// request to a worker that owns the slot until it has replied.
func (d *Dispatcher) dispatch(m *nats.Msg, r Route) {
	d.sem <- struct{}{}
	d.wg.Add(1)
	d.metrics.inflight.Inc()
	j := job{m: m, route: r}
	select {
	case d.idle <- j:
	default:
		d.workers.Add(1)
		go d.work(j)
	}
}

// work serves j, then whatever request comes while it is idle, until it has
// been idle for workerIdle or the dispatcher stops.
func (d *Dispatcher) work(j job) {
	defer d.workers.Done()
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		d.run(j)
		t.Reset(workerIdle)
		select {
		case j = <-d.idle:
		case <-t.C:
			return
		case <-d.stop:
			return
		}
	}
}

func (d *Dispatcher) run(j job) {
	w := d.watch.begin(j.route.Op)
	defer func() {
		d.watch.end(w)
		d.metrics.inflight.Dec()
		<-d.sem
		d.wg.Done()
	}()
	d.serve(j.m, j.route)
}

// serve answers m.
func (d *Dispatcher) serve(m *nats.Msg, r Route) {
	start := time.Now()
	name := r.Op.Name()
	var resp any
	var err error
	if len(m.Data) > d.cfg.MaxRequestBytes {
		d.oversize.Inc()
		err = imapi.Errorf(imapi.ErrTooLarge, "request of %d bytes exceeds %d", len(m.Data), d.cfg.MaxRequestBytes)
	} else {
		req := new(buswire.Request)
		if jerr := buswire.DecodeRequest(m.Data, req); jerr != nil {
			err = imapi.Errorf(imapi.ErrBadRequest, "bus request: %v", jerr)
		} else if d.stale(req, name) {
			return
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), d.cfg.RequestTimeout)
			resp, err = d.call(ctx, r, req)
			cancel()
		}
	}
	reply := buswire.Reply{}
	if err != nil {
		var ie *imapi.Error
		if !errors.As(err, &ie) {
			d.log.Error("request failed", "op", name, "err", err)
			ie = &imapi.Error{Code: imapi.ErrInternal}
		}
		reply.Code, reply.Message = ie.Code, ie.Message
		if ie.RetryAfterMs > 0 {
			// The hint travels as the error body, which the gateway passes
			// to the client as it is.
			reply.Body, _ = json.Marshal(ie)
		}
	} else if a, ok := resp.(jsonAppender); ok {
		reply.Body = a.AppendJSON(nil)
	} else if resp != nil {
		b, merr := json.Marshal(resp)
		if merr != nil {
			reply.Code, reply.Message = imapi.ErrInternal, ""
			d.log.Error("encode reply", "op", name, "err", merr)
		} else {
			reply.Body = b
		}
	}
	d.metrics.requests.WithLabelValues(name, strconv.Itoa(int(reply.Code))).Inc()
	d.metrics.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
	if m.Reply == "" {
		return
	}
	if err := m.Respond(buswire.AppendReply(make([]byte, 0, 32+len(reply.Message)+len(reply.Body)), &reply)); err != nil {
		d.log.Warn("reply failed", "op", name, "err", err)
	}
}

// jsonAppender is an answer with a hand-written encoder (the send
// batch's, answered for every send): it writes what json.Marshal would,
// without the reflection.
type jsonAppender interface{ AppendJSON(dst []byte) []byte }

func (d *Dispatcher) call(ctx context.Context, r Route, req *buswire.Request) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("handler panic", "op", r.Op.Name(), "panic", p)
			err = imapi.Errorf(imapi.ErrInternal, "")
		}
	}()
	if r.Op != imapi.OpLogin && (req.Session.AppKey == "" || req.Session.Account == "") {
		return nil, imapi.Errorf(imapi.ErrNotLoggedIn, "")
	}
	return r.Handle(ctx, &req.Session, req.Body)
}

// stale reports (and counts, and logs when it is more than a second late)
// a request its gateway sent longer ago than MaxRequestAge: this node was
// paused or stalled with it queued, and the gateway has resent it or
// given its session up, so answering it now can only store a message
// after ones sent later.
func (d *Dispatcher) stale(req *buswire.Request, op string) bool {
	if req.Sent == 0 {
		return false
	}
	age := time.Since(time.UnixMilli(req.Sent))
	if age > time.Second {
		// After a pause they come by the thousand: one line a second.
		n := d.late.Add(1)
		d.lateLog.Do(func() {
			d.log.Warn("requests waited long on this node (it was paused or stalled)", "count", n-d.lateLogged.Swap(n),
				"op", op, "session", req.Session.SessionID, "gateway", req.Session.Gateway, "age", age.Round(time.Millisecond))
		})
	}
	if d.cfg.MaxRequestAge <= 0 || age <= d.cfg.MaxRequestAge {
		return false
	}
	d.metrics.stale.Inc()
	return true
}
