package webhook

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	published  *prometheus.CounterVec
	skipped    prometheus.Counter
	oversize   prometheus.Counter
	deliveries *prometheus.CounterVec
	latency    prometheus.Histogram
	dead       prometheus.Counter
	replays    prometheus.Counter
	moderation *prometheus.CounterVec
	modLatency prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_webhook_events_published_total", Help: "Events put on the webhook stream, by kind.",
		}, []string{"kind"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_webhook_events_skipped_total", Help: "Events not published: the app has no URL or did not subscribe to the kind.",
		}),
		oversize: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_webhook_oversize_events_total", Help: "Events refused for exceeding max_event_bytes.",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_webhook_deliveries_total", Help: "Delivery attempts by result: ok, retry, dead, dropped (app no longer configured), bad (undecodable).",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "longlink_webhook_delivery_seconds", Help: "Duration of one delivery POST.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_webhook_dead_letters_total", Help: "Events moved to the dead-letter stream.",
		}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_webhook_replays_total", Help: "Dead letters re-queued.",
		}),
		moderation: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_webhook_moderation_total", Help: "Moderation decisions by action and source (hook, default).",
		}, []string{"action", "source"}),
		modLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "longlink_webhook_moderation_seconds", Help: "Duration of one moderation call.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 12),
		}),
	}
	for _, c := range []prometheus.Collector{m.published, m.skipped, m.oversize, m.deliveries, m.latency, m.dead, m.replays, m.moderation, m.modLatency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
