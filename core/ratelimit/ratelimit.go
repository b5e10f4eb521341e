// Package ratelimit enforces rates that hold for a whole cluster, not per
// process: a server API app's request rate, a chatroom's message rate. A
// limit is a budget per window (rate × window, windows aligned to the unix
// clock) kept in a JetStream counter stream (replicated like the core's
// other streams). Nodes do not ask the engine per request: each leases
// chunks of the budget (one atomic counter increment, whose answer is the
// window's running total) and admits requests from its chunk until it is
// used up, then leases the next.
//
// The bound: in one window, the requests admitted cluster-wide never exceed
// the budget (a chunk is only granted from room left under it; an increment
// that overshoots grants the remainder or nothing), so over any span of T
// seconds at most rate × (T + window) pass; across a window boundary up to
// two windows' budgets can fall within one window's time, and a node whose
// clock is off by δ shifts its windows by δ. The price is under-admission:
// a node can be left holding at most one unused chunk per key per window
// (chunk = budget / 16, at least 1). Once a node learns that a window's
// budget is spent it refuses locally until the window ends, so a flood costs
// no round trips.
//
// When the engine cannot be reached within lease_timeout, each node admits
// by a local token bucket at the full rate (so up to nodes × rate pass) and
// keeps deciding alone for a second before it tries the engine again; those
// decisions are counted (longlink_ratelimit_local_total). Rates are never
// enforced by refusing everything because the bus is down, nor by making
// every request wait for it.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/logging"
)

// Config tunes the limiter.
type Config struct {
	// Stream is the counter stream; its subjects are Stream's lower case
	// name ("ll_limits.>"). Default LL_LIMITS.
	Stream string `yaml:"stream"`
	// Window is the budget period. Default 1s; rates below one per window
	// get a longer window (a budget of at least 1).
	Window config.Duration `yaml:"window"`
	// LeaseTimeout bounds one lease; past it the node decides alone.
	// Default 500ms.
	LeaseTimeout config.Duration `yaml:"lease_timeout"`
}

// Default returns the defaults.
func Default() Config {
	return Config{Stream: "LL_LIMITS", Window: config.Duration(time.Second), LeaseTimeout: config.Duration(500 * time.Millisecond)}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs config.Errors
	if c.Stream == "" || len(c.Stream) > 32 {
		errs.Addf("ratelimit.stream: want 1-32 characters")
	}
	for _, r := range c.Stream {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			errs.Addf("ratelimit.stream: %q: want A-Z 0-9 _", c.Stream)
			break
		}
	}
	if c.Window.D() < 100*time.Millisecond || c.Window.D() > time.Minute {
		errs.Addf("ratelimit.window: %s not in 100ms..1m", c.Window.D())
	}
	if c.LeaseTimeout.D() < 10*time.Millisecond || c.LeaseTimeout.D() > 10*time.Second {
		errs.Addf("ratelimit.lease_timeout: %s not in 10ms..10s", c.LeaseTimeout.D())
	}
	return errs.Err()
}

// Deps are the limiter's dependencies.
type Deps struct {
	// JetStream holds the budgets. Nil: every decision is this node's own
	// (a token bucket per key; one-process use and tests).
	JetStream jetstream.JetStream
	// Replicas of the counter stream (bus.jetstream_replicas).
	Replicas   int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Limiter admits requests against cluster-wide budgets; safe for
// concurrent use.
type Limiter struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	m       *metrics
	now     func() time.Time
	subject string

	// downUntil (unix ns): after a failed lease the node decides alone
	// until then, rather than make every request wait for a dead engine.
	downUntil atomic.Int64

	mu     sync.Mutex
	leases map[string]*lease
	local  map[string]*rate.Limiter
}

// retryAfter is how long a node decides alone after a failed lease.
const retryAfter = time.Second

var errEngineDown = errors.New("ratelimit: engine unreachable")

// lease is one key's share of its current window on this node.
type lease struct {
	mu     sync.Mutex
	window int64 // window index (unix time / window length)
	left   int64 // tokens leased and not yet used
	spent  bool  // the window's budget is known to be spent
}

// maxKeys bounds the per-key state a node keeps; beyond it old windows'
// leases are dropped.
const maxKeys = 100_000

// New validates cfg; Start creates the stream.
func New(cfg Config, deps Deps) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	return &Limiter{cfg: cfg, deps: deps, log: logging.OrDiscard(deps.Logger).With("component", "ratelimit"), m: m, now: now,
		subject: lower(cfg.Stream), leases: map[string]*lease{}, local: map[string]*rate.Limiter{}}, nil
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Start creates (or updates) the counter stream.
func (l *Limiter) Start(ctx context.Context) error {
	if l.deps.JetStream == nil {
		return nil
	}
	// A window's counter is read only while the window lasts; keep a few.
	age := 4 * time.Minute
	replicas := max(l.deps.Replicas, 1)
	_, err := l.deps.JetStream.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: l.cfg.Stream, Description: "longlink cluster-wide rate limit budgets (counters)",
		Subjects: []string{l.subject + ".>"}, AllowMsgCounter: true, MaxAge: age, Duplicates: time.Second,
		MaxMsgsPerSubject: 1, Storage: jetstream.MemoryStorage, Replicas: replicas,
	})
	if err != nil {
		return fmt.Errorf("ratelimit: stream %s: %w", l.cfg.Stream, err)
	}
	return nil
}

// Shutdown is a no-op: the limiter holds no goroutines.
func (l *Limiter) Shutdown(context.Context) error { return nil }

// windowFor is the window length for a rate: Config.Window, stretched so
// that the budget is at least one request.
func (l *Limiter) windowFor(perSec float64) (time.Duration, int64) {
	w := l.cfg.Window.D()
	if n := perSec * w.Seconds(); n < 1 {
		w = time.Duration(math.Ceil(1/n)) * w
	}
	return w, int64(math.Floor(perSec * w.Seconds()))
}

// Allow reports whether one request of key (within scope, e.g. "serverapi")
// may pass at perSec requests per second cluster-wide. A rate ≤ 0 admits
// everything.
func (l *Limiter) Allow(ctx context.Context, scope, key string, perSec float64) bool {
	if perSec <= 0 || math.IsInf(perSec, 1) || math.IsNaN(perSec) {
		return true
	}
	w, budget := l.windowFor(perSec)
	now := l.now()
	if l.deps.JetStream == nil {
		ok := l.localAllow(scope+"\x00"+key, perSec, budget, now)
		if !ok {
			l.m.refused.WithLabelValues(scope).Inc()
		}
		return ok
	}
	idx := now.UnixNano() / int64(w)
	ls := l.leaseOf(scope+"\x00"+key, idx)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.window != idx {
		ls.window, ls.left, ls.spent = idx, 0, false
	}
	if ls.left > 0 {
		ls.left--
		return true
	}
	if ls.spent {
		l.m.refused.WithLabelValues(scope).Inc()
		return false
	}
	chunk := max(1, budget/16)
	var total int64
	err := errEngineDown
	if now.UnixNano() >= l.downUntil.Load() {
		if total, err = l.incr(ctx, scope, key, w, idx, chunk); err != nil {
			l.downUntil.Store(now.Add(retryAfter).UnixNano())
			l.log.Warn("rate limit lease failed; deciding locally for a while", "scope", scope, "for", retryAfter, "err", err)
		}
	}
	if err != nil {
		l.m.local.WithLabelValues(scope).Inc()
		ok := l.localAllow(scope+"\x00"+key, perSec, budget, now)
		if !ok {
			l.m.refused.WithLabelValues(scope).Inc()
		}
		return ok
	}
	l.m.leases.WithLabelValues(scope).Inc()
	granted := min(chunk, budget-(total-chunk))
	if total >= budget {
		ls.spent = true
	}
	if granted <= 0 {
		l.m.refused.WithLabelValues(scope).Inc()
		return false
	}
	ls.left = granted - 1
	return true
}

// leaseOf returns key's lease, dropping other windows' leases when the map
// is full.
func (l *Limiter) leaseOf(k string, idx int64) *lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.leases[k]
	if ls == nil {
		if len(l.leases) >= maxKeys {
			for kk, old := range l.leases {
				if old.mu.TryLock() {
					stale := old.window != idx
					old.mu.Unlock()
					if stale {
						delete(l.leases, kk)
					}
				}
			}
			if len(l.leases) >= maxKeys {
				clear(l.leases) // all current: forget them rather than grow
			}
		}
		ls = &lease{}
		l.leases[k] = ls
	}
	return ls
}

// incr adds n to the window's counter and returns the new total.
func (l *Limiter) incr(ctx context.Context, scope, key string, w time.Duration, idx, n int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.LeaseTimeout.D())
	defer cancel()
	h := sha256.Sum256([]byte(key))
	subj := l.subject + "." + scope + "." + strconv.FormatInt(w.Milliseconds(), 10) + "." + strconv.FormatInt(idx, 10) + "." + hex.EncodeToString(h[:12])
	msg := &nats.Msg{Subject: subj, Header: nats.Header{"Nats-Incr": []string{strconv.FormatInt(n, 10)}}}
	ack, err := l.deps.JetStream.PublishMsg(ctx, msg)
	if err != nil {
		return 0, err
	}
	total, err := strconv.ParseInt(ack.Value, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("counter value %q: %w", ack.Value, err)
	}
	return total, nil
}

// localAllow is the fallback when the engine is unreachable: this node's
// own token bucket at the full rate.
func (l *Limiter) localAllow(k string, perSec float64, burst int64, now time.Time) bool {
	l.mu.Lock()
	lim := l.local[k]
	if lim == nil || lim.Limit() != rate.Limit(perSec) {
		if len(l.local) >= maxKeys {
			clear(l.local)
		}
		lim = rate.NewLimiter(rate.Limit(perSec), int(max(1, burst)))
		l.local[k] = lim
	}
	l.mu.Unlock()
	return lim.AllowN(now, 1)
}
