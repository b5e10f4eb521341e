package serverapi

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	authFailures *prometheus.CounterVec
	oversize     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_serverapi_requests_total", Help: "Server API requests by route and result code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "longlink_serverapi_request_seconds", Help: "Server API request duration by route.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}, []string{"route"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_serverapi_auth_failures_total", Help: "Rejected signatures by reason: headers, timestamp, appkey, checksum, replay, nonce_cache_full.",
		}, []string{"reason"}),
		oversize: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_serverapi_oversize_requests_total", Help: "Requests refused for their body size.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.authFailures, m.oversize} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
