// Package push sends offline push notifications and keeps the presence
// registry they depend on, and records the gateways' kicks in the event
// log.
//
// When a message is stored, the app service hands its recipients to
// MessageStored. Recipients with an online device (Registry) are skipped;
// for the others a task goes to a JetStream stream. Workers expand a task
// into one send per registered device (after the mute, do-not-disturb and
// badge checks) and deliver each send through its provider adapter: the
// app's signed push webhook, APNs (HTTP/2, token auth) or FCM HTTP v1
// (OAuth2 service account). See README.md.
package push

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/webhook"
	"github.com/longlink/longlink/pkg/logging"
)

// MuteChecker reports whether account muted a conversation (the
// relationships service's mute lists). A muted conversation sends no
// notification.
type MuteChecker interface {
	Muted(ctx context.Context, appkey, account, convID string) (bool, error)
}

// EventPublisher queues an app's webhook events (core/webhook).
type EventPublisher interface {
	Publish(ctx context.Context, appkey string, ev webhook.Event) error
}

// Deps are the component's dependencies.
type Deps struct {
	NATS *nats.Conn
	// Replicas of the push stream and the sent bucket (bus.Bus.Replicas).
	// Default 1.
	Replicas int
	Store    store.Store
	// Presence is the registry that says who is online (started by the
	// caller before Start).
	Presence *Registry
	// Events, when set, receives the session events (logins, logouts,
	// kicks) for the app's webhook.
	Events EventPublisher
	// Mute, when set, is asked before a notification is sent.
	Mute       MuteChecker
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// HTTPClient, when set, replaces the default client (HTTP/2, no
	// redirects) for every provider.
	HTTPClient *http.Client
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Push is the component.
type Push struct {
	cfg       Config
	deps      Deps
	log       *slog.Logger
	m         *metrics
	now       func() time.Time
	apps      map[string]*AppConfig
	providers map[string]map[string]provider // appkey → provider name → adapter
	transport *http.Transport                // the default client's, closed at shutdown

	js     jetstream.JetStream
	sent   jetstream.KeyValue // send markers (dedupe.go)
	events *eventWriter       // logins and logouts (RecordSession)
	mu     sync.Mutex
	ccs    []jetstream.ConsumeContext
	work   chan func(context.Context)
	quit   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New checks the config, parses the provider keys and builds the
// component; Start creates the stream and the consumers.
func New(cfg Config, deps Deps) (*Push, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	if deps.NATS == nil || deps.Store == nil || deps.Presence == nil {
		return nil, errors.New("push: NATS, Store and Presence are required")
	}
	var err error
	if deps.Replicas, err = replicas(deps.Replicas); err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	log := logging.OrDiscard(deps.Logger)
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	client := deps.HTTPClient
	var own *http.Transport
	if client == nil {
		own = &http.Transport{ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second}
		client = &http.Client{
			Transport:     own,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	p := &Push{
		cfg: cfg, deps: deps, log: log.With("component", "push"), m: m, now: now, transport: own,
		apps: map[string]*AppConfig{}, providers: map[string]map[string]provider{},
	}
	for i := range p.cfg.Apps {
		a := &p.cfg.Apps[i]
		p.apps[a.AppKey] = a
		ps := map[string]provider{}
		if a.Webhook != nil {
			ps[imapi.ProviderWebhook] = &hookProvider{cfg: a.Webhook, client: client, now: now}
		}
		if a.APNs != nil {
			ap, err := newAPNs(a.APNs, client, cfg.AuthRefresh.D(), now, m)
			if err != nil {
				return nil, fmt.Errorf("push: %s apns: %w", a.AppKey, err)
			}
			ps[imapi.ProviderAPNs] = ap
		}
		if a.FCM != nil {
			fp, err := newFCM(a.FCM, client, cfg.AuthRefresh.D(), now, m)
			if err != nil {
				return nil, fmt.Errorf("push: %s fcm: %w", a.AppKey, err)
			}
			ps[imapi.ProviderFCM] = fp
		}
		p.providers[a.AppKey] = ps
	}
	return p, nil
}

func (p *Push) storage() jetstream.StorageType {
	if p.cfg.MemoryStorage {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

func (p *Push) taskSubject(appkey string) string { return p.cfg.Subject + ".task." + appkey }
func (p *Push) sendSubject(appkey string) string { return p.cfg.Subject + ".send." + appkey }

// Start creates the stream and the durable consumers (tasks, sends, and
// the gateways' session events) and starts the workers.
func (p *Push) Start(ctx context.Context) error {
	js, err := jetstream.New(p.deps.NATS,
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { p.m.enqueueErr.Inc() }),
		jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return fmt.Errorf("push: jetstream: %w", err)
	}
	p.js = js
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: p.cfg.Stream, Subjects: []string{p.cfg.Subject + ".>"}, Storage: p.storage(),
		MaxAge: p.cfg.MaxAge.D(), Duplicates: 2 * time.Minute, Replicas: p.deps.Replicas,
	}); err != nil {
		return fmt.Errorf("push: stream %s: %w", p.cfg.Stream, err)
	}
	if p.sent, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: p.sentBucket(), TTL: 2 * p.cfg.MaxAge.D(), Storage: p.storage(), History: 1, Replicas: p.deps.Replicas,
	}); err != nil {
		return fmt.Errorf("push: bucket %s: %w", p.sentBucket(), err)
	}
	pres := &p.deps.Presence.cfg
	if err := ensureEventStream(ctx, js, pres, p.deps.Replicas); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	p.events = newEventWriter(js, pres, p.log, p.deps.Presence.m)
	wctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.work, p.quit = make(chan func(context.Context)), make(chan struct{})
	for range p.cfg.Workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				select {
				case f := <-p.work:
					f(wctx)
				case <-p.quit:
					return
				}
			}
		}()
	}
	ackWait := p.cfg.DeliveryTimeout.D() + 30*time.Second
	for _, c := range []struct {
		stream, name, filter string
		maxDeliver           int
		handle               func(context.Context, jetstream.Msg)
	}{
		{p.cfg.Stream, "push_task", p.cfg.Subject + ".task.>", p.cfg.MaxAttempts + 1, p.handleTask},
		{p.cfg.Stream, "push_send", p.cfg.Subject + ".send.>", p.cfg.MaxAttempts + 1, p.handleSend},
		{pres.EventStream, "event_log", pres.EventSubject + ".>", -1, p.handleSessionEvent},
	} {
		cons, err := js.CreateOrUpdateConsumer(ctx, c.stream, jetstream.ConsumerConfig{
			Durable: c.name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, MaxDeliver: c.maxDeliver,
			MaxAckPending: 4 * p.cfg.Workers, FilterSubject: c.filter,
		})
		if err != nil {
			p.stop()
			return fmt.Errorf("push: consumer %s: %w", c.name, err)
		}
		handle := c.handle
		cc, err := cons.Consume(func(m jetstream.Msg) {
			select {
			case p.work <- func(ctx context.Context) { handle(ctx, m) }:
			case <-p.quit:
			}
		}, jetstream.PullMaxMessages(p.cfg.Workers), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			p.log.Debug("consume", "err", err)
		}))
		if err != nil {
			p.stop()
			return fmt.Errorf("push: consume %s: %w", c.name, err)
		}
		p.mu.Lock()
		p.ccs = append(p.ccs, cc)
		p.mu.Unlock()
	}
	p.wg.Add(1)
	go p.retention(wctx)
	p.log.Info("push workers started", "apps", len(p.apps), "workers", p.cfg.Workers)
	return nil
}

// retention deletes event log entries older than event_log_max_age, at
// start and hourly. Every app node does it; the deletes are idempotent.
func (p *Push) retention(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		n, err := p.deps.Store.DeleteEventsBefore(dctx, p.now().Add(-p.cfg.EventLogMaxAge.D()).UnixMilli())
		cancel()
		if err != nil && ctx.Err() == nil {
			p.log.Warn("event log retention", "err", err)
		}
		p.m.eventsPurged.Add(float64(n))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.quit:
			return
		}
	}
}

func (p *Push) stop() {
	if p.events != nil {
		done, cancel := context.WithCancel(context.Background())
		cancel()
		p.events.shutdown(done) // what Shutdown did not publish is shed
	}
	p.mu.Lock()
	ccs := p.ccs
	p.ccs = nil
	p.mu.Unlock()
	for _, cc := range ccs {
		cc.Stop()
	}
	if p.quit != nil {
		select {
		case <-p.quit:
		default:
			close(p.quit)
		}
	}
	p.wg.Wait()
	if p.cancel != nil {
		p.cancel()
	}
	if p.transport != nil {
		p.transport.CloseIdleConnections()
	}
}

// Shutdown waits for the tasks being queued to be stored, stops pulling
// and waits for the calls in flight (bounded by ctx; unacknowledged work
// is redelivered to another node). The services stop first, so no new
// tasks arrive.
func (p *Push) Shutdown(ctx context.Context) error {
	if p.events != nil {
		p.events.shutdown(ctx)
	}
	if p.js != nil {
		select {
		case <-p.js.PublishAsyncComplete():
		case <-ctx.Done():
		}
	}
	p.mu.Lock()
	ccs := p.ccs
	p.mu.Unlock()
	for _, cc := range ccs {
		cc.Drain()
	}
	for _, cc := range ccs {
		select {
		case <-cc.Closed():
		case <-ctx.Done():
		}
	}
	done := make(chan struct{})
	go func() { p.stop(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		if p.cancel != nil {
			p.cancel()
		}
		<-done
		return fmt.Errorf("push: shutdown: %w", ctx.Err())
	}
}

// task is one recipient of one stored message.
type task struct {
	AppKey  string        `json:"appkey"`
	Account string        `json:"account"`
	Message imapi.Message `json:"message"`
}

// MessageStored queues a push task for each recipient without an online
// device. It never blocks on JetStream (asynchronous publishes; failures
// are counted) and never fails the send.
func (p *Push) MessageStored(appkey string, m *imapi.Message, recipients []string) {
	if p.apps[appkey] == nil || p.js == nil {
		return
	}
	for _, acct := range recipients {
		if p.deps.Presence.Online(appkey, acct) {
			p.m.tasks.WithLabelValues("online").Inc()
			continue
		}
		b, err := json.Marshal(&task{AppKey: appkey, Account: acct, Message: *m})
		if err == nil {
			_, err = p.js.PublishAsync(p.taskSubject(appkey), b, jetstream.WithMsgID(m.MsgID+"."+acct))
		}
		if err != nil {
			p.m.enqueueErr.Inc()
			p.log.Warn("push task not queued", "appkey", appkey, "err", err)
			continue
		}
		p.m.tasks.WithLabelValues("queued").Inc()
	}
}

// backoff is the wait after failed attempt n (1-based).
func (p *Push) backoff(n int) time.Duration {
	i := min(n-1, len(p.cfg.Backoff)-1)
	return p.cfg.Backoff[max(i, 0)].D()
}

func attempt(m jetstream.Msg) int {
	md, err := m.Metadata()
	if err != nil {
		return 1
	}
	return int(md.NumDelivered)
}

// handleTask expands a task into one send per device.
func (p *Push) handleTask(ctx context.Context, msg jetstream.Msg) {
	t, err := decodeTask(msg.Data())
	if err != nil {
		p.m.tasks.WithLabelValues("bad").Inc()
		_ = msg.Term()
		return
	}
	app := p.apps[t.AppKey]
	now := p.now()
	switch {
	case app == nil:
		p.m.tasks.WithLabelValues("bad").Inc()
		_ = msg.Term()
		return
	case now.UnixMilli()-t.Message.Time > p.cfg.MaxAge.D().Milliseconds():
		p.m.tasks.WithLabelValues("stale").Inc()
		_ = msg.Ack()
		return
	case p.deps.Presence.Online(t.AppKey, t.Account):
		// Came online meanwhile: the client syncs the message itself.
		p.m.tasks.WithLabelValues("online").Inc()
		_ = msg.Ack()
		return
	}
	n := attempt(msg)
	retryLater := func(what string, err error) {
		if n >= p.cfg.MaxAttempts {
			p.log.Warn("push task dropped", "appkey", t.AppKey, "step", what, "err", err)
			p.m.tasks.WithLabelValues("bad").Inc()
			_ = msg.Term()
			return
		}
		p.log.Debug("push task failed, will retry", "step", what, "err", err)
		_ = msg.NakWithDelay(p.backoff(n))
	}
	if p.deps.Mute != nil {
		muted, err := p.deps.Mute.Muted(ctx, t.AppKey, t.Account, t.Message.ConvID)
		if err != nil {
			retryLater("mute", err)
			return
		}
		if muted {
			p.m.tasks.WithLabelValues("muted").Inc()
			_ = msg.Ack()
			return
		}
	}
	tokens, err := p.deps.Store.PushTokens(ctx, t.AppKey, t.Account)
	if err != nil {
		retryLater("tokens", err)
		return
	}
	if len(tokens) == 0 {
		p.m.tasks.WithLabelValues("no_tokens").Inc()
		_ = msg.Ack()
		return
	}
	settings, err := p.deps.Store.PushSettings(ctx, t.AppKey, t.Account)
	if err != nil {
		retryLater("settings", err)
		return
	}
	silent := false
	if InDND(settings, now) {
		if app.DND == DNDDrop {
			p.m.tasks.WithLabelValues("dnd").Inc()
			_ = msg.Ack()
			return
		}
		silent = true
	}
	var badge *int64
	if app.Badge == BadgeUnread {
		u, err := p.deps.Store.UnreadTotal(ctx, t.AppKey, t.Account)
		if err != nil {
			retryLater("badge", err)
			return
		}
		badge = &u
	}
	title, body := Content(app, &t.Message)
	data := map[string]string{
		"conv_id": t.Message.ConvID, "conv_type": strconv.Itoa(t.Message.ConvType),
		"msg_id": t.Message.MsgID, "from": t.Message.From,
	}
	if len(tokens) > p.cfg.MaxDevices {
		tokens = tokens[len(tokens)-p.cfg.MaxDevices:]
	}
	for _, tok := range tokens {
		nt := Notification{
			ID: t.Message.MsgID + "." + t.Account + "." + tok.DeviceID, AppKey: t.AppKey, Account: t.Account,
			DeviceID: tok.DeviceID, Provider: tok.Provider, Token: tok.Token, Sandbox: tok.Sandbox,
			Title: title, Body: body, Badge: badge, Silent: silent, Data: data, Time: t.Message.Time,
		}
		if !silent {
			nt.Sound = app.Sound
		}
		b, _ := json.Marshal(&nt)
		if _, err := p.js.Publish(ctx, p.sendSubject(t.AppKey), b, jetstream.WithMsgID(nt.ID)); err != nil {
			// The sends already queued are deduplicated when the task
			// comes back.
			p.m.enqueueErr.Inc()
			retryLater("queue send", err)
			return
		}
	}
	p.m.tasks.WithLabelValues("expanded").Inc()
	_ = msg.Ack()
}

func decodeTask(b []byte) (*task, error) {
	var t task
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, err
	}
	if t.AppKey == "" || t.Account == "" || t.Message.MsgID == "" {
		return nil, errors.New("push task: appkey, account and message id required")
	}
	return &t, nil
}

func decodeNotification(b []byte) (*Notification, error) {
	var n Notification
	if err := json.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	if n.AppKey == "" || n.Provider == "" || n.Token == "" {
		return nil, errors.New("push send: appkey, provider and token required")
	}
	return &n, nil
}

// handleSend makes one provider call and acts on the answer.
func (p *Push) handleSend(ctx context.Context, msg jetstream.Msg) {
	n, err := decodeNotification(msg.Data())
	if err != nil {
		p.m.deliveries.WithLabelValues("unknown", "bad").Inc()
		_ = msg.Term()
		return
	}
	prov := p.providers[n.AppKey][n.Provider]
	if prov == nil {
		p.m.deliveries.WithLabelValues(n.Provider, "unconfigured").Inc()
		_ = msg.Term()
		return
	}
	try := attempt(msg)
	if try > p.cfg.MaxAttempts {
		p.m.deliveries.WithLabelValues(n.Provider, "gave_up").Inc()
		_ = msg.Term()
		return
	}
	switch claimed, err := p.claimSend(ctx, n, msg); {
	case err != nil:
		p.log.Debug("push send marker", "err", err)
		p.m.deliveries.WithLabelValues(n.Provider, "retry").Inc()
		_ = msg.NakWithDelay(p.backoff(try))
		return
	case !claimed:
		// Another copy of this send (a redelivered task or side-work
		// job) was sent or is being sent.
		p.m.deliveries.WithLabelValues(n.Provider, "duplicate").Inc()
		_ = msg.Ack()
		return
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.DeliveryTimeout.D())
	start := time.Now()
	res := prov.send(cctx, n)
	cancel()
	p.m.latency.WithLabelValues(n.Provider).Observe(time.Since(start).Seconds())
	if res.outcome == retry && ctx.Err() != nil {
		return // shutting down: redelivered after the ack wait
	}
	if res.outcome != retry {
		p.sendDone(n)
	}
	switch res.outcome {
	case delivered:
		_ = msg.Ack()
	case unregistered:
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		ok, err := p.deps.Store.DeletePushTokenValue(dctx, n.AppKey, n.Provider, n.Token)
		dcancel()
		if err != nil {
			p.log.Warn("delete an unregistered token", "appkey", n.AppKey, "err", err)
		} else if ok {
			p.m.tokensPurged.WithLabelValues(n.Provider).Inc()
		}
		_ = msg.Ack()
	case retry:
		if try >= p.cfg.MaxAttempts {
			p.m.deliveries.WithLabelValues(n.Provider, "gave_up").Inc()
			p.log.Warn("push gave up", "appkey", n.AppKey, "provider", n.Provider, "attempts", try, "err", res.err)
			_ = msg.Term()
			return
		}
		_ = msg.NakWithDelay(p.backoff(try))
	case failed:
		p.log.Warn("push refused", "appkey", n.AppKey, "provider", n.Provider, "err", res.err)
		_ = msg.Ack()
	}
	p.m.deliveries.WithLabelValues(n.Provider, res.outcome.String()).Inc()
}

// NewEventID returns a unique, time-ordered event id.
func NewEventID(t time.Time) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%012x", t.UnixMilli()) + hex.EncodeToString(b[:])
}

// RecordSession queues a login or logout (EventLogin, EventLogout) of
// session s at time at for the event log and the app's webhook. It never
// blocks and never fails: an entry the event stream does not take at once
// is retried, and one shed because the queue is full is counted
// (eventlog.go). It is for the app services (service.Deps.EventLog).
func (p *Push) RecordSession(kind, reason string, at time.Time, s buswire.Session) {
	p.events.record(kind, reason, at, s)
}

// handleSessionEvent writes a session event to the event log and queues it
// for the app's webhook; a failure of either redelivers it (the store
// ignores an id it has, the webhook stream dedupes by id).
func (p *Push) handleSessionEvent(ctx context.Context, msg jetstream.Msg) {
	var ev SessionEvent
	if err := json.Unmarshal(msg.Data(), &ev); err != nil || ev.ID == "" || ev.Session.AppKey == "" || ev.Session.Account == "" {
		_ = msg.Term()
		return
	}
	s := &ev.Session
	if err := p.deps.Store.AppendEvents(ctx, []store.SessionEvent{{
		AppKey: s.AppKey, ID: ev.ID, Account: s.Account, Kind: ev.Kind, Time: ev.Time, DeviceID: s.DeviceID,
		DeviceType: s.DeviceType, ClientIP: s.ClientIP, SDK: s.SDK, SessionID: s.SessionID, Gateway: s.Gateway, Reason: ev.Reason,
	}}); err != nil {
		p.m.eventRewrites.Inc()
		p.log.Warn("event log write failed; will retry", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if p.deps.Events != nil {
		wev, err := webhook.SessionEvent(webhook.Kind(ev.Kind), s, ev.Reason, time.UnixMilli(ev.Time))
		if err == nil {
			wev.ID = ev.ID
			err = p.deps.Events.Publish(ctx, s.AppKey, wev)
		}
		if err != nil {
			p.m.eventRewrites.Inc()
			p.log.Warn("webhook session event not queued; will retry", "appkey", s.AppKey, "kind", ev.Kind, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
	}
	p.m.eventsWritten.Inc()
	_ = msg.Ack()
}
