package session

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	kicks prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		kicks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_kicks_total", Help: "Kick pushes sent by the multi-device policy at login.",
		}),
	}
	for _, c := range []prometheus.Collector{m.kicks} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
