package push

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/logging"
)

// Presence: which accounts have an online device.
//
// Gateways write their sessions into a JetStream key-value bucket (one key
// per session, under the gateway's name) and keep a lease key of their own
// fresh. App service nodes watch the bucket and keep the whole registry in
// memory, so asking "is this account online?" costs a map lookup. A session
// counts only while its gateway's lease is fresh: a gateway that crashes
// (no clean session deletes) stops refreshing its lease and all its
// sessions go offline within one lease time. Its stale keys are deleted by
// the registries once the lease is long dead, and by the gateway itself when
// it starts again under the same id.

// PresenceConfig is shared by gateways (Reporter) and app nodes (Registry).
type PresenceConfig struct {
	// Bucket is the key-value bucket of sessions and leases. Default
	// LL_PRESENCE.
	Bucket string `yaml:"bucket"`
	// Lease is how long a gateway counts as alive after its last refresh;
	// gateways refresh every lease/3. Default 15s.
	Lease config.Duration `yaml:"lease"`
	// EventStream and EventSubject carry the session events (logins and
	// logouts from app nodes, kicks from gateways) to the event log.
	// Defaults LL_SESSION_EVENTS and ll.session_events.
	EventStream  string `yaml:"event_stream"`
	EventSubject string `yaml:"event_subject"`
	// EventQueue bounds a node's session events waiting to be published to
	// the event stream (a publish that fails is retried); when full, new
	// ones are shed and counted (eventlog.go). Default 65536.
	EventQueue int `yaml:"event_queue"`
	// MemoryStorage keeps the bucket and stream in memory (tests).
	MemoryStorage bool `yaml:"memory_storage"`
	// Queue bounds a gateway's pending presence writes; when full, updates
	// are dropped and counted (the registry then errs towards "offline",
	// which costs a spurious push, never a lost one). Default 65536.
	Queue int `yaml:"queue"`
}

// DefaultPresence returns the defaults.
func DefaultPresence() PresenceConfig {
	return PresenceConfig{
		Bucket: "LL_PRESENCE", Lease: config.Duration(15 * time.Second),
		EventStream: "LL_SESSION_EVENTS", EventSubject: "ll.session_events", Queue: 65536, EventQueue: 65536,
	}
}

func (c *PresenceConfig) applyDefaults() {
	d := DefaultPresence()
	if c.Bucket == "" {
		c.Bucket = d.Bucket
	}
	if c.Lease == 0 {
		c.Lease = d.Lease
	}
	if c.EventStream == "" {
		c.EventStream = d.EventStream
	}
	if c.EventSubject == "" {
		c.EventSubject = d.EventSubject
	}
	if c.Queue == 0 {
		c.Queue = d.Queue
	}
	if c.EventQueue == 0 {
		c.EventQueue = d.EventQueue
	}
}

// Validate reports every problem at once.
func (c *PresenceConfig) Validate() error {
	c.applyDefaults()
	var errs config.Errors
	if c.Lease.D() < time.Second || c.Lease.D() > 10*time.Minute {
		errs.Addf("presence.lease: %v not in 1s..10m", c.Lease.D())
	}
	if c.Queue < 1 {
		errs.Addf("presence.queue: at least 1")
	}
	if c.EventQueue < 1 {
		errs.Addf("presence.event_queue: at least 1")
	}
	if strings.ContainsAny(c.Bucket, ". *>") || strings.ContainsAny(c.EventStream, ". *>") {
		errs.Addf("presence.bucket, event_stream: no dots, spaces or wildcards")
	}
	return errs.Err()
}

func (c *PresenceConfig) storage() jetstream.StorageType {
	if c.MemoryStorage {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// SessionEvent is an entry of the event log on the event stream: a login
// or logout (from an app node) or a kick (from a gateway: another device,
// an operator, a drain, a slow consumer), with its session.
type SessionEvent struct {
	ID      string          `json:"id"`
	Kind    string          `json:"kind"`
	Reason  string          `json:"reason,omitempty"`
	Time    int64           `json:"time"` // unix milliseconds
	Session buswire.Session `json:"session"`
}

// The kinds of session events (the webhook's kinds of the same name).
const (
	EventLogin  = "login"
	EventLogout = "logout"
	EventKick   = "kick"
)

var enc = base64.RawURLEncoding

func leaseKey(gw string) string { return "gw." + enc.EncodeToString([]byte(gw)) }

func sessionPrefix(gw string) string { return "s." + enc.EncodeToString([]byte(gw)) }

func sessionKey(s *buswire.Session) string {
	return sessionPrefix(s.Gateway) + "." + enc.EncodeToString([]byte(s.AppKey)) + "." +
		enc.EncodeToString([]byte(s.Account)) + "." + enc.EncodeToString([]byte(s.SessionID))
}

// parseSessionKey returns the gateway, appkey, account and session id.
func parseSessionKey(key string) (gw, appkey, account, sid string, ok bool) {
	parts := strings.Split(key, ".")
	if len(parts) != 5 || parts[0] != "s" {
		return "", "", "", "", false
	}
	dec := make([]string, 4)
	for i, p := range parts[1:] {
		b, err := enc.DecodeString(p)
		// Only the canonical encoding of a non-empty value is a key we wrote.
		if err != nil || len(b) == 0 || enc.EncodeToString(b) != p {
			return "", "", "", "", false
		}
		dec[i] = string(b)
	}
	return dec[0], dec[1], dec[2], dec[3], true
}

func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg *PresenceConfig, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: cfg.Bucket, History: 1, Storage: cfg.storage(), Replicas: replicas,
		Description: "longlink presence: gateway sessions and leases",
	})
	if err != nil {
		return nil, fmt.Errorf("presence bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

func ensureEventStream(ctx context.Context, js jetstream.JetStream, cfg *PresenceConfig, replicas int) error {
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: cfg.EventStream, Subjects: []string{cfg.EventSubject + ".>"}, Storage: cfg.storage(), Replicas: replicas,
		MaxAge: 72 * time.Hour, Duplicates: 2 * time.Minute,
	}); err != nil {
		return fmt.Errorf("session event stream %s: %w", cfg.EventStream, err)
	}
	return nil
}

// ReporterDeps are a Reporter's dependencies.
type ReporterDeps struct {
	JetStream jetstream.JetStream
	// Replicas of the bucket and the event stream (bus.Bus.Replicas).
	// Default 1.
	Replicas int
	// Gateway is the id of the gateway whose sessions are reported.
	Gateway string
	Logger  *slog.Logger
	Metrics *PresenceMetrics
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Reporter runs beside a gateway: it writes the gateway's sessions into the
// presence bucket, keeps its lease fresh and publishes kicks to the session
// event stream (eventlog.go). It implements gateway.Presence; its calls
// never block.
type Reporter struct {
	cfg    PresenceConfig
	js     jetstream.JetStream
	reps   int
	gw     string
	log    *slog.Logger
	m      *PresenceMetrics
	now    func() time.Time
	kv     jetstream.KeyValue
	events *eventWriter // the kicks
	q      chan reportOp
	quit   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once

	// lister, once set (SetLive), lists the gateway's open sessions for
	// reconcile. Until then live is the open sessions by key, updated as
	// they are reported: a copy of every session and its key, ~330 bytes
	// per connection, which the gateway already holds (issue 16). dirty is
	// set when a write failed or the queue overflowed: the next reconcile
	// makes the bucket match the live sessions.
	lister atomic.Pointer[func() []buswire.Session]
	mu     sync.Mutex
	live   map[string]buswire.Session
	dirty  atomic.Bool
}

// SetLive gives the reporter the gateway's own list of its open sessions,
// which reconcile then asks instead of a copy kept here. Call it before
// the first session opens.
func (r *Reporter) SetLive(list func() []buswire.Session) {
	r.lister.Store(&list)
	r.mu.Lock()
	r.live = nil
	r.mu.Unlock()
}

type reportOp struct {
	open bool
	sess buswire.Session
}

// NewReporter checks the config; Start connects it.
func NewReporter(cfg PresenceConfig, deps ReporterDeps) (*Reporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	if deps.JetStream == nil || deps.Gateway == "" {
		return nil, errors.New("presence: JetStream and Gateway are required")
	}
	reps, err := replicas(deps.Replicas)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	log := logging.OrDiscard(deps.Logger)
	m := deps.Metrics
	if m == nil {
		m = nopPresenceMetrics()
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	return &Reporter{
		cfg: cfg, js: deps.JetStream, reps: reps, gw: deps.Gateway, log: log.With("component", "presence", "gateway", deps.Gateway),
		m: m, now: now, q: make(chan reportOp, cfg.Queue), quit: make(chan struct{}), live: map[string]buswire.Session{},
	}, nil
}

// Start creates the bucket and the event stream, deletes what an earlier
// run of this gateway left behind, takes the lease and starts writing.
func (r *Reporter) Start(ctx context.Context) error {
	kv, err := ensureBucket(ctx, r.js, &r.cfg, r.reps)
	if err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	if err := ensureEventStream(ctx, r.js, &r.cfg, r.reps); err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	r.kv = kv
	if err := r.deleteOwn(ctx); err != nil {
		return fmt.Errorf("presence: clean up: %w", err)
	}
	if err := r.renew(ctx); err != nil {
		return fmt.Errorf("presence: lease: %w", err)
	}
	r.events = newEventWriter(r.js, &r.cfg, r.log, r.m)
	r.wg.Add(1)
	go r.run()
	return nil
}

// deleteOwn deletes this gateway's session keys (a restart under the same
// id must not leave its old sessions online).
func (r *Reporter) deleteOwn(ctx context.Context) error {
	return deleteGatewaySessions(ctx, r.kv, r.gw)
}

func deleteGatewaySessions(ctx context.Context, kv jetstream.KeyValue, gw string) error {
	kl, err := kv.ListKeysFiltered(ctx, sessionPrefix(gw)+".>")
	if err != nil {
		return err
	}
	var keys []string
	for k := range kl.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if err := kv.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
	}
	return nil
}

func (r *Reporter) renew(ctx context.Context) error {
	b, _ := json.Marshal(map[string]int64{"at": r.now().UnixMilli()})
	_, err := r.kv.Put(ctx, leaseKey(r.gw), b)
	if err == nil {
		r.m.leaseRenewals.Inc()
	}
	return err
}

func (r *Reporter) run() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.Lease.D() / 3)
	defer t.Stop()
	for {
		select {
		case op := <-r.q:
			r.apply(op)
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Lease.D()/3)
			if err := r.renew(ctx); err != nil {
				r.m.errors.WithLabelValues("lease").Inc()
				r.log.Warn("lease renewal failed", "err", err)
			} else if r.dirty.Load() && len(r.q) == 0 {
				r.reconcile(ctx)
			}
			cancel()
		case <-r.quit:
			// Write what is queued (the sessions closed by the drain).
			for {
				select {
				case op := <-r.q:
					r.apply(op)
				default:
					return
				}
			}
		}
	}
}

func (r *Reporter) apply(op reportOp) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	what := "close"
	if op.open {
		what = "open"
		b, _ := json.Marshal(&op.sess)
		_, err = r.kv.Put(ctx, sessionKey(&op.sess), b)
	} else {
		err = r.kv.Delete(ctx, sessionKey(&op.sess))
	}
	if err != nil {
		r.m.errors.WithLabelValues(what).Inc()
		r.log.Warn("presence write failed", "op", what, "err", err)
		r.dirty.Store(true)
		return
	}
	r.m.updates.WithLabelValues(what).Inc()
}

// reconcile makes the bucket hold exactly the gateway's live sessions
// after writes were lost (a bus outage, a full queue): a lost delete would
// otherwise keep an account "online" for as long as the gateway lives, a
// lost put would send it notifications while it is connected.
//
// It runs on the writer goroutine, so the writes queued meanwhile are
// applied after it, in order.
func (r *Reporter) reconcile(ctx context.Context) {
	var live map[string]buswire.Session
	if list := r.lister.Load(); list != nil {
		ss := (*list)()
		live = make(map[string]buswire.Session, len(ss))
		for _, s := range ss {
			s.Gateway = r.gw
			live[sessionKey(&s)] = s
		}
	} else {
		r.mu.Lock()
		live = make(map[string]buswire.Session, len(r.live))
		for k, s := range r.live {
			live[k] = s
		}
		r.mu.Unlock()
	}
	kl, err := r.kv.ListKeysFiltered(ctx, sessionPrefix(r.gw)+".>")
	if err != nil {
		return
	}
	stored := map[string]bool{}
	for k := range kl.Keys() {
		stored[k] = true
	}
	for k := range stored {
		if _, ok := live[k]; !ok {
			if err := r.kv.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				return
			}
		}
	}
	for k, s := range live {
		if !stored[k] {
			b, _ := json.Marshal(&s)
			if _, err := r.kv.Put(ctx, k, b); err != nil {
				return
			}
		}
	}
	r.dirty.Store(false)
	r.m.reconciles.Inc()
}

func (r *Reporter) enqueue(op reportOp) {
	select {
	case r.q <- op:
	default:
		r.m.errors.WithLabelValues("queue_full").Inc()
		r.dirty.Store(true) // the live set has the change
	}
}

// SessionOpened records a logged-in session.
func (r *Reporter) SessionOpened(s buswire.Session) {
	s.Gateway = r.gw
	if r.lister.Load() == nil {
		r.mu.Lock()
		if r.live != nil {
			r.live[sessionKey(&s)] = s
		}
		r.mu.Unlock()
	}
	r.enqueue(reportOp{open: true, sess: s})
}

// SessionClosed removes a session; a kick (kicked true) also goes to the
// event log with its reason.
func (r *Reporter) SessionClosed(s buswire.Session, reason string, kicked bool) {
	s.Gateway = r.gw
	if r.lister.Load() == nil {
		r.mu.Lock()
		delete(r.live, sessionKey(&s))
		r.mu.Unlock()
	}
	if kicked {
		r.events.record(EventKick, reason, r.now(), s)
	}
	r.enqueue(reportOp{sess: s})
}

// Shutdown writes what is queued, deletes the gateway's remaining sessions
// and gives up its lease (the gateway has closed its sessions by then).
func (r *Reporter) Shutdown(ctx context.Context) error {
	first := false
	r.once.Do(func() { first = true; close(r.quit) })
	if !first || r.kv == nil {
		return nil
	}
	r.wg.Wait()
	r.events.shutdown(ctx)
	if err := r.deleteOwn(ctx); err != nil {
		return fmt.Errorf("presence: shutdown: %w", err)
	}
	if err := r.kv.Delete(ctx, leaseKey(r.gw)); err != nil {
		return fmt.Errorf("presence: shutdown: %w", err)
	}
	return nil
}

// RegistryDeps are a Registry's dependencies.
type RegistryDeps struct {
	JetStream jetstream.JetStream
	// Replicas of the bucket (bus.Bus.Replicas). Default 1.
	Replicas int
	Logger   *slog.Logger
	Metrics  *PresenceMetrics
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Registry is the app side's in-memory view of the presence bucket.
type Registry struct {
	cfg  PresenceConfig
	js   jetstream.JetStream
	reps int
	log  *slog.Logger
	m    *PresenceMetrics
	now  func() time.Time
	kv   jetstream.KeyValue

	mu sync.RWMutex
	// accounts: appkey "/" account → its sessions. A slice, not a map per
	// account: most accounts have one or two sessions, and a map each
	// cost ~400 bytes per online account (issue 16, idle memory).
	accounts map[string][]presentSession
	leases   map[string]time.Time // gateway → last renewal (server time)
	// names interns gateway ids and device types, which repeat across
	// sessions: each session then holds no copy of its own.
	names map[string]string

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type presentSession struct {
	id         string // session id
	gateway    string // interned
	deviceType string // interned
}

// intern returns the registry's copy of s; g.mu is held.
func (g *Registry) intern(s string) string {
	if v, ok := g.names[s]; ok {
		return v
	}
	if len(g.names) >= 4096 {
		return s // device types are the client's choice: bounded
	}
	s = strings.Clone(s)
	g.names[s] = s
	return s
}

// NewRegistry checks the config; Start loads the bucket.
func NewRegistry(cfg PresenceConfig, deps RegistryDeps) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	if deps.JetStream == nil {
		return nil, errors.New("presence: JetStream is required")
	}
	reps, err := replicas(deps.Replicas)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	log := logging.OrDiscard(deps.Logger)
	m := deps.Metrics
	if m == nil {
		m = nopPresenceMetrics()
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	return &Registry{
		cfg: cfg, js: deps.JetStream, reps: reps, log: log.With("component", "presence"), m: m, now: now,
		accounts: map[string][]presentSession{}, leases: map[string]time.Time{}, names: map[string]string{},
	}, nil
}

func accountKey(appkey, account string) string { return appkey + "/" + account }

// Start watches the bucket and returns once the current content is loaded.
func (g *Registry) Start(ctx context.Context) error {
	kv, err := ensureBucket(ctx, g.js, &g.cfg, g.reps)
	if err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	g.kv = kv
	wctx, cancel := context.WithCancel(context.Background())
	w, err := g.watch(ctx, wctx, kv)
	if err != nil {
		cancel()
		return fmt.Errorf("presence: watch: %w", err)
	}
	g.cancel = cancel
	loaded := make(chan struct{})
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		defer func() { _ = w.Stop() }()
		initial := true
		// Lease times must not depend on how this host's clock compares
		// with the JetStream server's: live renewals are timed by this
		// host as they arrive; a lease in the initial snapshot gets this
		// host's now minus its age relative to the snapshot's newest write
		// (some gateway renews every lease/3, so that is nearly the
		// server's now).
		var newest time.Time
		snapshot := map[string]time.Time{}
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if initial {
						initial = false
						now := g.now()
						g.mu.Lock()
						for gw, created := range snapshot {
							g.leases[gw] = now.Add(-newest.Sub(created))
						}
						g.mu.Unlock()
						close(loaded)
					}
					continue
				}
				if initial {
					if newest.Before(e.Created()) {
						newest = e.Created()
					}
					if gw, ok := leaseOf(e); ok {
						snapshot[gw] = e.Created()
						continue
					}
				}
				g.apply(e)
			case <-wctx.Done():
				return
			}
		}
	}()
	go g.sweep(wctx)
	select {
	case <-loaded:
		return nil
	case <-ctx.Done():
		g.stop()
		return fmt.Errorf("presence: load: %w", ctx.Err())
	}
}

// watchRetry is the pause before the bucket's watch is asked for again.
const watchRetry = 200 * time.Millisecond

// watch starts watching the bucket under wctx, trying again while ctx
// lasts when JetStream did not answer in time. The watch outlives Start,
// so its consumer is not created under ctx: nats.go then gives the request
// its own default wait (5 s), which a loaded JetStream can exceed (a
// consumer created on a busy file store, or by an R3 cluster's leader)
// long before ctx (the node's start) is over.
func (g *Registry) watch(ctx, wctx context.Context, kv jetstream.KeyValue) (jetstream.KeyWatcher, error) {
	for {
		w, err := kv.WatchAll(wctx)
		if err == nil || !transientJSError(err) {
			return w, err
		}
		g.log.Warn("presence watch not created, trying again", "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(watchRetry):
		}
	}
}

// transientJSError: a JetStream request that may succeed when sent again
// (no answer in time, or no server to answer yet).
func transientJSError(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)
}

// leaseOf returns the gateway of a lease put.
func leaseOf(e jetstream.KeyValueEntry) (string, bool) {
	rest, ok := strings.CutPrefix(e.Key(), "gw.")
	if !ok || e.Operation() != jetstream.KeyValuePut {
		return "", false
	}
	b, err := enc.DecodeString(rest)
	if err != nil || len(b) == 0 {
		return "", false
	}
	return string(b), true
}

func (g *Registry) apply(e jetstream.KeyValueEntry) {
	key := e.Key()
	del := e.Operation() != jetstream.KeyValuePut
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if rest, ok := strings.CutPrefix(key, "gw."); ok {
		b, err := enc.DecodeString(rest)
		if err != nil {
			return
		}
		if del {
			delete(g.leases, string(b))
		} else {
			g.leases[string(b)] = now
		}
		return
	}
	gw, appkey, account, sid, ok := parseSessionKey(key)
	if !ok {
		return
	}
	ak := accountKey(appkey, account)
	ss := g.accounts[ak]
	i := slices.IndexFunc(ss, func(p presentSession) bool { return p.id == sid })
	if del {
		if i >= 0 {
			ss = slices.Delete(ss, i, i+1)
			if len(ss) == 0 {
				delete(g.accounts, ak)
			} else {
				g.accounts[ak] = slices.Clip(ss)
			}
		}
		return
	}
	var s buswire.Session
	_ = json.Unmarshal(e.Value(), &s)
	p := presentSession{id: sid, gateway: g.intern(gw), deviceType: g.intern(s.DeviceType)}
	if i >= 0 {
		ss[i] = p
		return
	}
	g.accounts[ak] = append(ss, p)
}

// alive: the gateway renewed its lease within the lease time, by this
// host's clock.
func (g *Registry) alive(gw string, now time.Time) bool {
	t, ok := g.leases[gw]
	return ok && now.Sub(t) < g.cfg.Lease.D()
}

// Online reports whether the account has a session on a live gateway.
func (g *Registry) Online(appkey, account string) bool {
	now := g.now()
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, s := range g.accounts[accountKey(appkey, account)] {
		if g.alive(s.gateway, now) {
			return true
		}
	}
	return false
}

// Sessions is the number of sessions on live gateways.
func (g *Registry) Sessions() int {
	now := g.now()
	g.mu.RLock()
	defer g.mu.RUnlock()
	n := 0
	for _, ss := range g.accounts {
		for _, s := range ss {
			if g.alive(s.gateway, now) {
				n++
			}
		}
	}
	return n
}

// sweep deletes the keys of gateways whose lease has been dead for ten
// lease times (crashed, never restarted under the same id). Several app
// nodes may do it at once; deletes are idempotent.
func (g *Registry) sweep(ctx context.Context) {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.Lease.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := g.now()
		var dead []string
		g.mu.RLock()
		for gw, at := range g.leases {
			if now.Sub(at) > 10*g.cfg.Lease.D() {
				dead = append(dead, gw)
			}
		}
		g.mu.RUnlock()
		g.m.sessions.Set(float64(g.Sessions()))
		for _, gw := range dead {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := deleteGatewaySessions(dctx, g.kv, gw)
			if err == nil {
				err = g.kv.Delete(dctx, leaseKey(gw))
			}
			cancel()
			if err != nil {
				g.log.Warn("sweep a dead gateway", "gateway", gw, "err", err)
				continue
			}
			g.m.sweeps.Inc()
			g.log.Info("dead gateway's sessions removed", "gateway", gw)
		}
	}
}

func (g *Registry) stop() {
	if g.cancel != nil {
		g.cancel()
	}
	g.wg.Wait()
}

// Shutdown stops watching.
func (g *Registry) Shutdown(context.Context) error {
	g.stop()
	return nil
}

// replicas checks a replica count from the deps (0: one).
func replicas(n int) (int, error) {
	switch {
	case n == 0:
		return 1, nil
	case n < 0 || n > 5:
		return 0, fmt.Errorf("replicas: %d not in 1..5", n)
	}
	return n, nil
}
