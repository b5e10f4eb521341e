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
			Name: "longlink_serverapi_auth_failures_total", Help: "Rejected requests by reason: headers, timestamp, appkey, checksum, replay, nonce_store_full, nonce_store_unavailable.",
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

// frontMetrics are the front's (its own process may run no services).
type frontMetrics struct {
	forwarded *prometheus.CounterVec // status
	seconds   prometheus.Histogram
}

func newFrontMetrics(reg prometheus.Registerer) (*frontMetrics, error) {
	m := &frontMetrics{
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_serverapi_front_requests_total", Help: "Requests the front answered, by HTTP status (503: the app's cluster has no live node; 504: no answer in forward_timeout).",
		}, []string{"status"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "longlink_serverapi_front_request_seconds", Help: "Time from a request's arrival at the front to its answer, the trip to the service node included.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}),
	}
	for _, c := range []prometheus.Collector{m.forwarded, m.seconds} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
