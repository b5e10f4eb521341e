package msg

import "github.com/prometheus/client_golang/prometheus"

// metrics are the super-group side work's counters.
type metrics struct {
	jobs      *prometheus.CounterVec
	jobTime   prometheus.Histogram
	queueErrs prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_super_jobs_total", Help: "Super-group side-work jobs (mentions, webhook copy) by result: done, retry, bad, dropped.",
		}, []string{"result"}),
		jobTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "longlink_service_super_job_seconds", Help: "Time from a super-group send to the end of its side work.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		queueErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_super_queue_errors_total", Help: "Super-group jobs that could not be queued on JetStream (the send fails and the client resends).",
		}),
	}
	for _, c := range []prometheus.Collector{m.jobs, m.jobTime, m.queueErrs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
