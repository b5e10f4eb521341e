package user

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	// limits counts changes refused by a count limit.
	limits *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		limits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_relation_limits_total", Help: "Relationship changes refused by a count limit, by limit (friends, blacklist, mutes).",
		}, []string{"limit"}),
	}
	if err := reg.Register(m.limits); err != nil {
		return nil, err
	}
	return m, nil
}
