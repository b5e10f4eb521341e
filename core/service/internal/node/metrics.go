package node

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the counters several domains share.
type Metrics struct {
	pushes *prometheus.CounterVec
	// PushErrors counts pushes and events not published.
	PushErrors prometheus.Counter
	// Oversize counts requests or bodies refused for their size.
	Oversize prometheus.Counter
	// HookErrors counts webhook events that could not be queued.
	HookErrors  prometheus.Counter
	superPushes prometheus.Counter
}

// NewMetrics registers the shared counters.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_pushes_total", Help: "Pushes published to user subjects, by op.",
		}, []string{"op"}),
		PushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_push_errors_total", Help: "Pushes that could not be published.",
		}),
		Oversize: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_oversize_requests_total", Help: "Requests or message bodies refused for their size.",
		}),
		HookErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_webhook_errors_total", Help: "Webhook events (message copies, logins, logouts) that could not be queued.",
		}),
		superPushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_super_pushes_total", Help: "Pushes published once on a super-group subject (each reaches every gateway holding members).",
		}),
	}
	for _, c := range []prometheus.Collector{m.pushes, m.PushErrors, m.Oversize, m.HookErrors, m.superPushes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
