package weblink

import "github.com/prometheus/client_golang/prometheus"

// metrics of the IM binding; the protocol server's own are in
// internal/server/metrics.go. All are named longlink_weblink_*.
type metrics struct {
	logins   *prometheus.CounterVec
	requests *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_weblink_logins_total",
			Help: "Logins through Socket.IO CONNECT, by result (ok or the imapi code text)."}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_weblink_requests_total",
			Help: "IM requests received as Socket.IO events, by op."}, []string{"op"}),
	}
	if reg != nil {
		reg.MustRegister(m.logins, m.requests)
	}
	return m
}
