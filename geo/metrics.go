package geo

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	lookups      *prometheus.CounterVec
	reloads      prometheus.Counter
	reloadErrors prometheus.Counter

	fromOverride, fromCache, fromDB, fromNone prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_geo_lookups_total",
			Help: "IP lookups by where the answer came from (override, cache, db, none).",
		}, []string{"source"}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_geo_reloads_total",
			Help: "Database files reloaded after they changed.",
		}),
		reloadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_geo_reload_errors_total",
			Help: "Reloads that failed; the previous databases stay in service.",
		}),
	}
	m.fromOverride = m.lookups.WithLabelValues("override")
	m.fromCache = m.lookups.WithLabelValues("cache")
	m.fromDB = m.lookups.WithLabelValues("db")
	m.fromNone = m.lookups.WithLabelValues("none")
	if reg != nil {
		reg.MustRegister(m.lookups, m.reloads, m.reloadErrors)
	}
	return m
}
