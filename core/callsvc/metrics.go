package callsvc

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests  *prometheus.CounterVec
	issued    prometheus.Counter
	signals   *prometheus.CounterVec
	refusals  *prometheus.CounterVec
	pushFails prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_callsvc_requests_total", Help: "Call service requests, by op and result code."}, []string{"op", "code"}),
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_callsvc_credentials_issued_total", Help: "TURN credentials issued (bus and HTTP)."}),
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_callsvc_signals_total", Help: "Call signals relayed, by kind."}, []string{"kind"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_callsvc_refusals_total", Help: "Requests refused, by reason (bad_request, too_large, rate_limited, not_logged_in)."}, []string{"reason"}),
		pushFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_callsvc_push_errors_total", Help: "Call events that could not be published."}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.issued, m.signals, m.refusals, m.pushFails} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
