package store

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	appends     *prometheus.CounterVec
	batches     prometheus.Counter
	batchSize   prometheus.Histogram
	commitTime  prometheus.Histogram
	retries     prometheus.Counter
	queueLength prometheus.GaugeFunc
}

// newMetrics registers the store's metrics; pg (nil on SQLite) adds
// PostgreSQL's connection attempts.
func newMetrics(reg prometheus.Registerer, queueLen func() float64, pg *pgConnector) (*metrics, error) {
	m := &metrics{
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_store_appends_total",
			Help: "Message appends by result: stored, duplicate, rejected (not a member, unknown peer), error, or shed (refused with ErrBusy: the commit queue was over its latency budget).",
		}, []string{"result"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_store_batches_total", Help: "Group-commit transactions.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "longlink_store_batch_size", Help: "Appends per group-commit transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
		}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "longlink_store_batch_seconds", Help: "Duration of a group-commit transaction, commit (fsync) included.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_store_batch_retries_total", Help: "Group-commit transactions retried after a deadlock, serialization failure or racing duplicate.",
		}),
		queueLength: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "longlink_store_append_queue_length", Help: "Appends queued for a group commit or inside one.",
		}, queueLen),
	}
	cs := []prometheus.Collector{m.appends, m.batches, m.batchSize, m.commitTime, m.retries, m.queueLength}
	if pg != nil {
		cs = append(cs,
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "longlink_store_connect_failures_total",
				Help: "Attempts to connect to PostgreSQL that failed (no server answered, or none was writable).",
			}, func() float64 { return float64(pg.failures.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "longlink_store_connect_refused_total",
				Help: "New PostgreSQL connections refused at once (ErrUnavailable) because the last attempt failed less than connect_retry ago or one is under way.",
			}, func() float64 { return float64(pg.refused.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "longlink_store_reachable",
				Help: "1 while the last attempt to connect to PostgreSQL succeeded.",
			}, func() float64 {
				if pg.reachable() {
					return 1
				}
				return 0
			}))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
