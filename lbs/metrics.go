package lbs

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	httpAnswers   *prometheus.CounterVec // result
	dnsAnswers    *prometheus.CounterVec // rcode
	dnsDropped    *prometheus.CounterVec // reason
	dnsTruncated  prometheus.Counter
	selectSeconds prometheus.Histogram
	heartbeats    prometheus.Counter
	transitions   *prometheus.CounterVec // to
	adminRequests *prometheus.CounterVec // result
	proposeErrors prometheus.Counter
	policyVersion prometheus.Gauge
	raftIndex     prometheus.Gauge
	isLeader      prometheus.Gauge
	reloads       *prometheus.CounterVec // result
	caughtUp      prometheus.Gauge
	rumReports    *prometheus.CounterVec // result
	rumSamples    *prometheus.CounterVec // result
	rumBatches    *prometheus.CounterVec // result
	rumPrefixes   prometheus.Gauge
	rumSteered    prometheus.Counter
	rotations     prometheus.Counter

	rumSamplesAccepted, rumSamplesDropped prometheus.Counter

	adminNotReady                                        prometheus.Counter
	httpOK, httpBad, httpUnknown, httpSig, httpNotReady  prometheus.Counter
	dnsNoErr, dnsNX, dnsFormErr, dnsRefused, dnsServFail prometheus.Counter
	dnsRateLimited, dnsMalformed                         prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		httpAnswers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_lbs_http_answers_total",
			Help: "SDK HTTP queries (/v1/lbs, /resolve) by result (ok, bad_request, unknown_app, bad_signature, not_ready)."}, []string{"result"}),
		dnsAnswers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_lbs_dns_answers_total",
			Help: "DNS responses sent by rcode."}, []string{"rcode"}),
		dnsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_lbs_dns_dropped_total",
			Help: "DNS queries dropped without an answer, by reason (rate_limited, malformed)."}, []string{"reason"}),
		dnsTruncated: prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_lbs_dns_truncated_total",
			Help: "UDP DNS answers truncated (TC set) because they did not fit."}),
		selectSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "longlink_lbs_selection_seconds",
			Help: "Time to run the selection chain for one query (sampled 1 in 64).", Buckets: prometheus.ExponentialBuckets(1e-6, 2, 14)}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_lbs_heartbeats_total",
			Help: "Node heartbeats received by this member."}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_lbs_health_transitions_total",
			Help: "Health transitions this member committed, by new state."}, []string{"state"}),
		adminRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_lbs_admin_requests_total",
			Help: "Admin API requests by result (ok, unauthorized, not_ready: node reports before the member caught up)."}, []string{"result"}),
		proposeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_lbs_propose_errors_total",
			Help: "Writes to the replicated state that failed."}),
		policyVersion: prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_lbs_policy_version",
			Help: "Routing policy version this member serves."}),
		raftIndex: prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_lbs_raft_applied_index",
			Help: "Raft index of the state this member serves."}),
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_lbs_raft_leader",
			Help: "1 while this member is the raft leader."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_lbs_config_reloads_total",
			Help: "Config reloads (SIGHUP, ctl reload) by result (ok, refused)."}, []string{"result"}),
		caughtUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_lbs_caught_up",
			Help: "1 once this member's state has caught up with the cluster after its start and it serves clients."}),
		rumReports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_lbs_rum_reports_total",
			Help: "SDK measurement reports (POST /v1/rum) by result (ok, bad_request, too_large, bad_signature, unknown_app, rate_limited, disabled, not_ready)."}, []string{"result"}),
		rumSamples: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_lbs_rum_samples_total",
			Help: "Raced attempts from accepted reports: accepted, or dropped (rum.max_pending sums already waiting for the next proposal)."}, []string{"result"}),
		rumBatches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_lbs_rum_batches_total",
			Help: "Batches of measurement sums this member proposed to the cluster, by result (ok, error: dropped)."}, []string{"result"}),
		rumPrefixes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_lbs_rum_prefixes",
			Help: "Client prefixes in the replicated measurement table (bounded by the policy's rum.max_prefixes)."}),
		rotations: prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_lbs_rotations_total",
			Help: "Apps this member rotated to their reserve pools by the policy's rotation rule."}),
		rumSteered: prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_lbs_rum_steered_answers_total",
			Help: "Answers (HTTP and DNS) whose order came from users' measurements rather than distance alone."}),
	}
	m.rumSamplesAccepted = m.rumSamples.WithLabelValues("accepted")
	m.rumSamplesDropped = m.rumSamples.WithLabelValues("dropped")
	m.adminNotReady = m.adminRequests.WithLabelValues("not_ready")
	m.httpOK = m.httpAnswers.WithLabelValues("ok")
	m.httpBad = m.httpAnswers.WithLabelValues("bad_request")
	m.httpUnknown = m.httpAnswers.WithLabelValues("unknown_app")
	m.httpSig = m.httpAnswers.WithLabelValues("bad_signature")
	m.httpNotReady = m.httpAnswers.WithLabelValues("not_ready")
	m.dnsNoErr = m.dnsAnswers.WithLabelValues("NOERROR")
	m.dnsNX = m.dnsAnswers.WithLabelValues("NXDOMAIN")
	m.dnsFormErr = m.dnsAnswers.WithLabelValues("FORMERR")
	m.dnsRefused = m.dnsAnswers.WithLabelValues("REFUSED")
	m.dnsServFail = m.dnsAnswers.WithLabelValues("SERVFAIL")
	m.dnsRateLimited = m.dnsDropped.WithLabelValues("rate_limited")
	m.dnsMalformed = m.dnsDropped.WithLabelValues("malformed")
	if reg != nil {
		reg.MustRegister(m.httpAnswers, m.dnsAnswers, m.dnsDropped, m.dnsTruncated, m.selectSeconds, m.heartbeats,
			m.transitions, m.adminRequests, m.proposeErrors, m.policyVersion, m.raftIndex, m.isLeader, m.reloads, m.caughtUp,
			m.rumReports, m.rumSamples, m.rumBatches, m.rumPrefixes, m.rumSteered, m.rotations)
	}
	return m
}
