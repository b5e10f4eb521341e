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

func newMetrics(reg prometheus.Registerer, queueLen func() float64) (*metrics, error) {
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
	for _, c := range []prometheus.Collector{m.appends, m.batches, m.batchSize, m.commitTime, m.retries, m.queueLength} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
