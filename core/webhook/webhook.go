// Package webhook delivers an app's events (a copy of every message,
// logins, logouts) to the app's HTTP endpoint through JetStream, with
// signed bodies, retries with exponential backoff and a dead-letter stream
// that an operator lists and replays; and asks the app's moderation hook,
// synchronously, before a message is sent. See README.md.
package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/internal/jsworkers"
	"github.com/longlink/longlink/pkg/logging"
)

// Headers of a delivery POST besides SignatureHeader.
const (
	EventIDHeader = "X-Longlink-Event-Id"
	AttemptHeader = "X-Longlink-Attempt"
)

// Headers on a dead letter.
const (
	hdrAttempts  = "Ll-Attempts"
	hdrLastError = "Ll-Last-Error"
)

// ErrNotFound is returned by Replay for an unknown dead letter.
var ErrNotFound = errors.New("webhook: no such dead letter")

// Event is what the app's endpoint receives (the POST body, JSON).
type Event struct {
	// ID is unique per event (set by Publish when empty); receivers use it
	// to drop duplicates, since delivery is at least once.
	ID     string `json:"id"`
	Kind   Kind   `json:"kind"`
	AppKey string `json:"appkey"`
	// Time is when the event happened, unix milliseconds (set by Publish
	// when zero).
	Time int64 `json:"time"`
	// Data is the kind's payload: an imapi.Message for message, the
	// session (account, device, gateway, client IP) for login and logout.
	Data json.RawMessage `json:"data"`
}

// DeadLetter is an event that failed every attempt.
type DeadLetter struct {
	// ID names it for Replay.
	ID        string    `json:"id"`
	Event     Event     `json:"event"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error"`
	Time      time.Time `json:"time"` // when it became a dead letter
}

// Deps are the injected dependencies.
type Deps struct {
	JetStream jetstream.JetStream
	// Replicas of the event and dead-letter streams (bus.Bus.Replicas).
	// Default 1.
	Replicas   int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// HTTPClient, when set, replaces the default client (no redirects).
	HTTPClient *http.Client
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Webhooks is the component.
type Webhooks struct {
	cfg      Config
	js       jetstream.JetStream
	replicas int
	log      *slog.Logger
	metrics  *metrics
	client   *http.Client
	now      func() time.Time
	apps     map[string]*AppConfig

	mu      sync.Mutex
	pool    *jsworkers.Pool
	started bool
}

// New checks the config and builds the component; Start creates the
// streams and the consumer.
func New(cfg Config, deps Deps) (*Webhooks, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	if deps.JetStream == nil {
		return nil, errors.New("webhook: JetStream is required")
	}
	if deps.Replicas == 0 {
		deps.Replicas = 1
	}
	if deps.Replicas < 1 || deps.Replicas > 5 {
		return nil, fmt.Errorf("webhook: replicas: %d not in 1..5", deps.Replicas)
	}
	log := logging.OrDiscard(deps.Logger)
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	client := deps.HTTPClient
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	w := &Webhooks{
		cfg: cfg, js: deps.JetStream, replicas: deps.Replicas, log: log.With("component", "webhook"), metrics: m,
		client: client, now: now, apps: make(map[string]*AppConfig, len(cfg.Apps)),
	}
	for i := range cfg.Apps {
		w.apps[cfg.Apps[i].AppKey] = &w.cfg.Apps[i]
	}
	return w, nil
}

func (w *Webhooks) storage() jetstream.StorageType {
	if w.cfg.MemoryStorage {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// Start creates or updates the streams and the durable consumer and starts
// the delivery workers.
func (w *Webhooks) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return errors.New("webhook: already started")
	}
	if _, err := w.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: w.cfg.Stream, Subjects: []string{w.cfg.Subject + ".>"}, Storage: w.storage(),
		MaxAge: w.cfg.MaxAge.D(), MaxMsgSize: int32(w.cfg.MaxEventBytes), Duplicates: 2 * time.Minute, Replicas: w.replicas,
	}); err != nil {
		return fmt.Errorf("webhook: stream %s: %w", w.cfg.Stream, err)
	}
	if _, err := w.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: w.cfg.DeadStream, Subjects: []string{w.cfg.DeadSubject + ".>"}, Storage: w.storage(),
		MaxAge: w.cfg.DeadMaxAge.D(), Duplicates: 2 * time.Minute, Replicas: w.replicas,
	}); err != nil {
		return fmt.Errorf("webhook: stream %s: %w", w.cfg.DeadStream, err)
	}
	// The server redelivers an unacknowledged event after AckWait (a
	// crashed worker); MaxDeliver is one more than the attempts so that
	// the delivery after a crash during the last attempt still reaches a
	// worker, which moves it to the dead letters.
	cons, err := w.js.CreateOrUpdateConsumer(ctx, w.cfg.Stream, jetstream.ConsumerConfig{
		Durable: w.cfg.Consumer, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: w.cfg.DeliveryTimeout.D() + 30*time.Second, MaxDeliver: w.cfg.MaxAttempts + 1,
		MaxAckPending: 4 * w.cfg.Workers, FilterSubject: w.cfg.Subject + ".>",
	})
	if err != nil {
		return fmt.Errorf("webhook: consumer: %w", err)
	}
	// A message not handed to a worker before shutdown stays unacknowledged
	// and is redelivered after the ack wait.
	pool, err := jsworkers.Start(cons, w.cfg.Workers, w.cfg.Workers, w.deliver, func(err error) {
		w.log.Debug("consume", "err", err)
	})
	if err != nil {
		return fmt.Errorf("webhook: consume: %w", err)
	}
	w.pool = pool
	w.started = true
	w.log.Info("webhook delivery started", "apps", len(w.apps), "workers", w.cfg.Workers)
	return nil
}

// Shutdown stops pulling, lets deliveries in flight finish (or cancels
// them when ctx ends; they are redelivered later) and waits for the
// workers.
func (w *Webhooks) Shutdown(ctx context.Context) error {
	w.mu.Lock()
	if !w.started {
		w.mu.Unlock()
		return nil
	}
	w.started = false
	pool := w.pool
	w.pool = nil
	w.mu.Unlock()
	if err := pool.Stop(ctx); err != nil {
		return fmt.Errorf("webhook: shutdown: %w", err)
	}
	return nil
}

func newEventID(t time.Time) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatInt(t.UnixMilli(), 36) + hex.EncodeToString(b[:])
}

// Publish queues an event for the app's endpoint. It returns nil without
// queuing when the app has no endpoint or did not subscribe to the kind,
// so callers publish every event. It waits only for JetStream to store the
// event, never for the delivery.
func (w *Webhooks) Publish(ctx context.Context, appkey string, ev Event) error {
	app := w.apps[appkey]
	if app == nil || !app.Wants(ev.Kind) {
		w.metrics.skipped.Inc()
		return nil
	}
	now := w.now()
	if ev.ID == "" {
		ev.ID = newEventID(now)
	}
	if ev.Time == 0 {
		ev.Time = now.UnixMilli()
	}
	ev.AppKey = appkey
	data, err := json.Marshal(&ev)
	if err != nil {
		return fmt.Errorf("webhook: encode event: %w", err)
	}
	if len(data) > w.cfg.MaxEventBytes {
		w.metrics.oversize.Inc()
		return fmt.Errorf("webhook: event of %d bytes exceeds %d", len(data), w.cfg.MaxEventBytes)
	}
	if _, err := w.js.Publish(ctx, w.cfg.Subject+"."+appkey, data, jetstream.WithMsgID(ev.ID)); err != nil {
		return fmt.Errorf("webhook: publish: %w", err)
	}
	w.metrics.published.WithLabelValues(string(ev.Kind)).Inc()
	return nil
}

// backoff is the wait after failed attempt n (1-based).
func (w *Webhooks) backoff(n int) time.Duration {
	i := min(n-1, len(w.cfg.Backoff)-1)
	return w.cfg.Backoff[max(i, 0)].D()
}

func (w *Webhooks) deliver(ctx context.Context, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		w.metrics.deliveries.WithLabelValues("bad").Inc()
		_ = m.Term()
		return
	}
	attempt := int(md.NumDelivered)
	var ev Event
	if err := json.Unmarshal(m.Data(), &ev); err != nil {
		w.log.Warn("undecodable event dropped", "seq", md.Sequence.Stream, "err", err)
		w.metrics.deliveries.WithLabelValues("bad").Inc()
		_ = m.Term()
		return
	}
	app := w.apps[ev.AppKey]
	if app == nil || app.URL == "" {
		w.metrics.deliveries.WithLabelValues("dropped").Inc()
		_ = m.Term()
		return
	}
	var lastErr error
	if attempt > w.cfg.MaxAttempts {
		// Redelivered after a crash during the last attempt.
		lastErr = errors.New("no answer to the last attempt")
	} else {
		lastErr = w.post(ctx, app, &ev, m.Data(), attempt)
		if lastErr == nil {
			w.metrics.deliveries.WithLabelValues("ok").Inc()
			_ = m.Ack()
			return
		}
		if ctx.Err() != nil {
			// Shutting down: leave it to the redelivery after AckWait.
			return
		}
		if attempt < w.cfg.MaxAttempts {
			w.metrics.deliveries.WithLabelValues("retry").Inc()
			w.log.Debug("delivery failed, will retry", "appkey", ev.AppKey, "event", ev.ID, "attempt", attempt, "err", lastErr)
			_ = m.NakWithDelay(w.backoff(attempt))
			return
		}
	}
	w.metrics.deliveries.WithLabelValues("dead").Inc()
	if err := w.bury(m.Data(), &ev, attempt, lastErr); err != nil {
		w.log.Error("dead letter", "appkey", ev.AppKey, "event", ev.ID, "err", err)
		_ = m.NakWithDelay(w.backoff(attempt))
		return
	}
	w.log.Warn("event moved to dead letters", "appkey", ev.AppKey, "event", ev.ID, "attempts", attempt, "err", lastErr)
	_ = m.Ack()
}

func (w *Webhooks) bury(data []byte, ev *Event, attempts int, lastErr error) error {
	msg := nats.NewMsg(w.cfg.DeadSubject + "." + ev.AppKey)
	msg.Data = data
	msg.Header.Set(hdrAttempts, strconv.Itoa(attempts))
	e := lastErr.Error()
	if len(e) > 512 {
		e = e[:512]
	}
	msg.Header.Set(hdrLastError, e)
	msg.Header.Set(jetstream.MsgIDHeader, "dead-"+ev.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := w.js.PublishMsg(ctx, msg)
	if err == nil {
		w.metrics.dead.Inc()
	}
	return err
}

// post sends one signed delivery; any 2xx answer is success.
func (w *Webhooks) post(ctx context.Context, app *AppConfig, ev *Event, body []byte, attempt int) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.DeliveryTimeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, app.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "longlink-webhook/1")
	req.Header.Set(SignatureHeader, Sign(app.Secret.Reveal(), w.now(), body))
	req.Header.Set(EventIDHeader, ev.ID)
	req.Header.Set(AttemptHeader, strconv.Itoa(attempt))
	start := time.Now()
	resp, err := w.client.Do(req)
	w.metrics.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// DeadLetters lists up to limit of the app's dead letters, oldest first.
func (w *Webhooks) DeadLetters(ctx context.Context, appkey string, limit int) ([]DeadLetter, error) {
	s, err := w.js.Stream(ctx, w.cfg.DeadStream)
	if err != nil {
		return nil, fmt.Errorf("webhook: dead letters: %w", err)
	}
	subj := w.cfg.DeadSubject + "." + appkey
	var out []DeadLetter
	for seq := uint64(1); len(out) < limit; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("webhook: dead letters: %w", err)
		}
		seq = m.Sequence + 1
		if m.Subject != subj {
			continue
		}
		d := DeadLetter{ID: strconv.FormatUint(m.Sequence, 10), Time: m.Time, LastError: m.Header.Get(hdrLastError)}
		d.Attempts, _ = strconv.Atoi(m.Header.Get(hdrAttempts))
		if err := json.Unmarshal(m.Data, &d.Event); err != nil {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// Replay re-queues one of the app's dead letters (its attempts start
// again) and removes it from the dead letters.
func (w *Webhooks) Replay(ctx context.Context, appkey, id string) error {
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return ErrNotFound
	}
	s, err := w.js.Stream(ctx, w.cfg.DeadStream)
	if err != nil {
		return fmt.Errorf("webhook: replay: %w", err)
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("webhook: replay: %w", err)
	}
	if m.Subject != w.cfg.DeadSubject+"."+appkey {
		return ErrNotFound
	}
	var ev Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return fmt.Errorf("webhook: replay: %w", err)
	}
	// A fresh message id: the original id is still in the stream's
	// duplicate window when the replay is quick.
	if _, err := w.js.Publish(ctx, w.cfg.Subject+"."+appkey, m.Data,
		jetstream.WithMsgID(ev.ID+"-replay-"+id)); err != nil {
		return fmt.Errorf("webhook: replay: %w", err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("webhook: replay: remove dead letter: %w", err)
	}
	w.metrics.replays.Inc()
	return nil
}
