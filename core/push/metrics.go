package push

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	tasks        *prometheus.CounterVec
	enqueueErr   prometheus.Counter
	deliveries   *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	tokensPurged *prometheus.CounterVec
	authTokens   *prometheus.CounterVec
	eventsPurged prometheus.Counter
	// The event_log consumer: entries written, and failed writes that are
	// redelivered.
	eventsWritten prometheus.Counter
	eventRewrites prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_push_tasks_total",
			Help: "Recipients of stored messages by outcome: online, queued, muted, dnd, no_tokens, stale, expanded, bad.",
		}, []string{"result"}),
		enqueueErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_push_enqueue_errors_total", Help: "Push tasks or sends that JetStream did not store.",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_push_deliveries_total",
			Help: "Provider calls by provider and result: ok, retry, unregistered, failed (permanent), gave_up, unconfigured, bad, duplicate (a copy not sent).",
		}, []string{"provider", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "longlink_push_delivery_seconds", Help: "Duration of one provider call.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"provider"}),
		tokensPurged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_push_tokens_deleted_total", Help: "Device tokens deleted because the provider reported them unregistered.",
		}, []string{"provider"}),
		authTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_push_auth_tokens_total", Help: "Provider credentials minted: APNs JWTs, FCM OAuth2 access tokens, by result.",
		}, []string{"provider", "result"}),
		eventsPurged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_push_event_log_deleted_total", Help: "Event log entries deleted for being older than event_log_max_age.",
		}),
		eventsWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_push_event_log_written_total", Help: "Session events (logins, logouts, kicks) written to the event log and queued for the app's webhook.",
		}),
		eventRewrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_push_event_log_retries_total", Help: "Session events whose store write or webhook queueing failed; they are redelivered.",
		}),
	}
	for _, c := range []prometheus.Collector{m.tasks, m.enqueueErr, m.deliveries, m.latency, m.tokensPurged, m.authTokens, m.eventsPurged,
		m.eventsWritten, m.eventRewrites} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// PresenceMetrics are shared by a node's Reporter and Registry (make them
// once per registry with NewPresenceMetrics).
type PresenceMetrics struct {
	updates       *prometheus.CounterVec
	errors        *prometheus.CounterVec
	leaseRenewals prometheus.Counter
	sessions      prometheus.Gauge
	sweeps        prometheus.Counter
	reconciles    prometheus.Counter
	// The event writers (eventlog.go) of the node: app nodes' logins and
	// logouts, gateways' kicks.
	events       *prometheus.CounterVec
	eventRetries prometheus.Counter
	eventsQueued prometheus.Gauge
}

// NewPresenceMetrics registers the presence metrics.
func NewPresenceMetrics(reg prometheus.Registerer) (*PresenceMetrics, error) {
	m := newPresenceMetrics()
	for _, c := range []prometheus.Collector{m.updates, m.errors, m.leaseRenewals, m.sessions, m.sweeps, m.reconciles,
		m.events, m.eventRetries, m.eventsQueued} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func nopPresenceMetrics() *PresenceMetrics { return newPresenceMetrics() }

func newPresenceMetrics() *PresenceMetrics {
	return &PresenceMetrics{
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_push_presence_updates_total", Help: "Presence writes by a gateway: open, close.",
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_push_presence_errors_total", Help: "Failed presence writes by op (open, close, lease, queue_full).",
		}, []string{"op"}),
		leaseRenewals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_push_presence_lease_renewals_total", Help: "Gateway lease renewals.",
		}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_push_presence_sessions", Help: "Sessions on live gateways as this app node's registry sees them.",
		}),
		sweeps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_push_presence_sweeps_total", Help: "Dead gateways whose sessions a registry removed.",
		}),
		reconciles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_push_presence_reconciles_total", Help: "Times a gateway rewrote its sessions in the bucket after lost writes.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_push_session_events_total",
			Help: "Session events for the event log by result: published to the event stream, shed_queue_full, shed_shutdown.",
		}, []string{"result"}),
		eventRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_push_session_event_retries_total", Help: "Session event publishes that failed and are retried.",
		}),
		eventsQueued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_push_session_events_queued", Help: "Session events waiting to be published to the event stream.",
		}),
	}
}
