package dispatch

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inflight prometheus.Gauge
	info     *prometheus.GaugeVec
	stale    prometheus.Counter
	stalls   prometheus.Counter
	stalled  prometheus.Gauge
	// stallBusy: checks that found no request finished while the node was
	// busy on the CPU (saturated), so it stayed.
	stallBusy prometheus.Counter

	loginQueue    prometheus.Gauge
	loginRate     prometheus.Gauge
	loginRefusals prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_requests_total", Help: "Requests handled, by op and result code.",
		}, []string{"op", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "longlink_service_request_seconds", Help: "Time to handle a request, by op (send includes the durable commit).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"op"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_service_inflight_requests", Help: "Requests being handled on this node.",
		}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "longlink_service_node_info", Help: "1 while the node serves: its id, cluster, version label, whether it is a canary and its site.",
		}, []string{"id", "cluster", "version", "canary", "site"}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_stale_requests_total", Help: "Requests dropped unanswered because their gateway sent them longer ago than max_request_age (this node was paused or stalled).",
		}),
		stalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_stalls_total", Help: "Times this node left its queue groups because no request finished for stall_timeout while some were in flight.",
		}),
		loginQueue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_service_login_queue", Help: "Admitted logins waiting for a login worker (login admission).",
		}),
		loginRate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_service_login_rate", Help: "Logins per second this node serves with every login worker busy: login_workers over the mean time a worker spends on a login that waited for one (the rate the login admission plans with; 0: not measured in the last 5 s).",
		}),
		loginRefusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_login_refusals_total", Help: "Logins answered 503 at once with a retry-after hint because their expected wait in the login queue exceeded login_queue_wait.",
		}),
		stallBusy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_stall_busy_total", Help: "Watchdog checks that found no request finished for stall_timeout while the node's process used at least a quarter of a CPU (saturated, not stalled), so the node stayed in its queue groups.",
		}),
		stalled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_service_stalled", Help: "1 while this node is out of its queue groups for a stall.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.inflight, m.info, m.stale, m.stalls, m.stalled, m.stallBusy, m.loginQueue, m.loginRate, m.loginRefusals} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
