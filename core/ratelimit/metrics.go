package ratelimit

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	leases  *prometheus.CounterVec // scope
	refused *prometheus.CounterVec // scope
	local   *prometheus.CounterVec // scope
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		leases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_ratelimit_leases_total", Help: "Chunks of a cluster-wide budget leased from the engine (one round trip each), by scope."}, []string{"scope"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_ratelimit_refused_total", Help: "Requests refused by a cluster-wide rate limit, by scope."}, []string{"scope"}),
		local: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_ratelimit_local_total", Help: "Decisions taken by the node alone because the engine did not answer a lease in time, by scope."}, []string{"scope"}),
	}
	for _, c := range []prometheus.Collector{m.leases, m.refused, m.local} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
