package group

import "github.com/prometheus/client_golang/prometheus"

// metrics are the super-groups' membership counters.
type metrics struct {
	full    prometheus.Counter
	members *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		full: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_super_full_total", Help: "Member additions refused by the super-group member limit.",
		}),
		members: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_super_member_changes_total", Help: "Super-group members added or removed, by change.",
		}, []string{"change"}),
	}
	for _, c := range []prometheus.Collector{m.full, m.members} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
