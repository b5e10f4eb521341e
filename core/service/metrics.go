package service

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	inflight   prometheus.Gauge
	pushes     *prometheus.CounterVec
	pushErrors prometheus.Counter
	kicks      prometheus.Counter
	oversize   prometheus.Counter
	hookErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_requests_total", Help: "Requests handled, by op and result code.",
		}, []string{"op", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "longlink_service_request_seconds", Help: "Time to handle a request, by op (send includes the durable commit).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"op"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_service_inflight_requests", Help: "Requests being handled on this node.",
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_pushes_total", Help: "Pushes published to user subjects, by op.",
		}, []string{"op"}),
		pushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_push_errors_total", Help: "Pushes that could not be published.",
		}),
		kicks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_kicks_total", Help: "Kick pushes sent by the multi-device policy at login.",
		}),
		oversize: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_oversize_requests_total", Help: "Requests or message bodies refused for their size.",
		}),
		hookErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_webhook_errors_total", Help: "Webhook events (message copies, logins, logouts) that could not be queued.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.inflight, m.pushes, m.pushErrors, m.kicks, m.oversize, m.hookErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
