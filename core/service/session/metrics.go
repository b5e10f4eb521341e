package session

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	kicks prometheus.Counter
	// eventLogErrors counts logins and logouts not written to the event log.
	eventLogErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		kicks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_kicks_total", Help: "Kick pushes sent by the multi-device policy at login.",
		}),
		eventLogErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_event_log_errors_total", Help: "Logins and logouts that could not be written to the event log.",
		}),
	}
	for _, c := range []prometheus.Collector{m.kicks, m.eventLogErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
