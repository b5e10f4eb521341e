package push

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/longlink/longlink/core/internal/buswire"
)

// The session event log (logins, logouts, kicks) is a product feature: the
// app reads it through the server API and its webhook. Every entry takes
// one path: the node where it happens (an app node for a login or logout,
// a gateway for a kick) queues it in an eventWriter, which publishes it to
// the event stream; the event_log consumer of the app nodes writes it to
// the store and queues the app's webhook (Push.handleSessionEvent). Neither
// side waits for the store, and neither gives up on an entry:
//   - the writer retries a publish that fails (a bus away, a slow
//     JetStream) until the stream takes it; the stream dedupes the retries
//     by event id;
//   - the consumer redelivers an entry until the store took it and its
//     webhook is queued (the store ignores an id it has).
//
// What is bounded is the writer's queue (PresenceConfig.EventQueue): an
// entry recorded while it is full is shed, and so are the entries still
// queued when the node stops and the bus does not take them within its
// shutdown deadline; both are counted
// (longlink_push_session_events_total{result="shed_queue_full"|
// "shed_shutdown"}).

// eventWriter publishes session events to the event stream from a bounded
// queue, in order, on one goroutine; recording never blocks.
type eventWriter struct {
	js      jetstream.JetStream
	subject string // the event subject; the appkey is appended
	log     *slog.Logger
	m       *PresenceMetrics
	q       chan *SessionEvent
	mu      sync.RWMutex  // record holds it for reading: shutdown sees no entry come after it
	stopped bool          // shutdown began: record sheds
	flush   chan struct{} // closed by shutdown: publish what is queued, then end
	quit    chan struct{} // closed when shutdown's deadline passed: end now
	done    chan struct{} // closed when run ended
	flushed sync.Once
	quitted sync.Once
}

// eventRetry bounds the wait between publish attempts of one entry, and
// one attempt.
const (
	eventRetryMin = 50 * time.Millisecond
	eventRetryMax = 5 * time.Second
)

func newEventWriter(js jetstream.JetStream, cfg *PresenceConfig, log *slog.Logger, m *PresenceMetrics) *eventWriter {
	w := &eventWriter{js: js, subject: cfg.EventSubject, log: log, m: m, q: make(chan *SessionEvent, cfg.EventQueue),
		flush: make(chan struct{}), quit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// record queues an entry for the event log, or sheds and counts it when
// the queue is full or the writer stopped.
func (w *eventWriter) record(kind, reason string, at time.Time, s buswire.Session) {
	ev := &SessionEvent{ID: NewEventID(at), Kind: kind, Reason: reason, Time: at.UnixMilli(), Session: s}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.stopped {
		w.m.events.WithLabelValues("shed_shutdown").Inc()
		return
	}
	select {
	case w.q <- ev:
		w.m.eventsQueued.Inc()
	default:
		w.m.events.WithLabelValues("shed_queue_full").Inc()
		w.log.Warn("event log queue full: entry shed", "appkey", s.AppKey, "kind", kind)
	}
}

func (w *eventWriter) run() {
	defer close(w.done)
	for {
		select {
		case ev := <-w.q:
			w.publish(ev)
		case <-w.flush:
			for {
				select {
				case ev := <-w.q:
					w.publish(ev)
				case <-w.quit:
					return
				default:
					return // all published
				}
			}
		case <-w.quit:
			return
		}
	}
}

// publish publishes ev, retrying with a doubling pause until the stream
// takes it or shutdown's deadline passed.
func (w *eventWriter) publish(ev *SessionEvent) {
	w.m.eventsQueued.Dec()
	b, _ := json.Marshal(ev)
	pause := eventRetryMin
	for {
		ctx, cancel := context.WithTimeout(context.Background(), eventRetryMax)
		_, err := w.js.Publish(ctx, w.subject+"."+ev.Session.AppKey, b, jetstream.WithMsgID(ev.ID))
		cancel()
		if err == nil {
			w.m.events.WithLabelValues("published").Inc()
			return
		}
		w.m.eventRetries.Inc()
		w.log.Warn("event log entry not published; retrying", "appkey", ev.Session.AppKey, "kind", ev.Kind, "err", err)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-w.quit:
			t.Stop()
			w.m.events.WithLabelValues("shed_shutdown").Inc()
			return
		}
		pause = min(2*pause, eventRetryMax)
	}
}

// shutdown publishes what is queued until ctx ends; the entries left then
// are shed and counted.
func (w *eventWriter) shutdown(ctx context.Context) {
	w.flushed.Do(func() {
		w.mu.Lock()
		w.stopped = true
		w.mu.Unlock()
		close(w.flush)
	})
	select {
	case <-w.done:
	case <-ctx.Done():
		w.quitted.Do(func() { close(w.quit) })
		<-w.done
	}
	for {
		select {
		case <-w.q:
			w.m.eventsQueued.Dec()
			w.m.events.WithLabelValues("shed_shutdown").Inc()
		default:
			return
		}
	}
}
