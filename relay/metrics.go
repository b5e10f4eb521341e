package relay

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/longlink/longlink/relay/transport"
)

// Metrics of the tunnel layer: streams and flows carried, bytes, per-path
// probe results and path switches. Edges register the same set, so their
// per-path figures use the same names.
type Metrics struct {
	Streams          *prometheus.CounterVec // kind, result
	ActiveStreams    *prometheus.GaugeVec   // kind
	Bytes            *prometheus.CounterVec // direction: up (towards the core), down
	Datagrams        *prometheus.CounterVec // direction
	DatagramsDropped *prometheus.CounterVec // reason
	PathRTT          *prometheus.GaugeVec   // path
	PathJitter       *prometheus.GaugeVec   // path
	PathLoss         *prometheus.GaugeVec   // path
	PathUp           *prometheus.GaugeVec   // path
	PathSelected     *prometheus.GaugeVec   // cluster, path, role (primary, backup)
	PathSwitches     *prometheus.CounterVec // cluster, reason
	PathStreams      *prometheus.CounterVec // path
	PeerDials        *prometheus.CounterVec // path, result
	EgressDials      *prometheus.CounterVec // service, result
	HopsExhausted    prometheus.Counter

	// Sequenced streams (TUNNEL.md, "Sequenced streams").
	RedundantCopies         *prometheus.CounterVec // event
	RedundantFirst          *prometheus.CounterVec // copy
	RedundantDuplicateBytes prometheus.Counter
	RedundantFlows          prometheus.Gauge
	RedundantTombstones     *prometheus.CounterVec // event

	// Disjoint copies (TUNNEL.md, "Disjoint copies"); flow is stream
	// (records of sequenced streams) or udp (datagrams of numbered flows).
	DisjointCopies     *prometheus.CounterVec // flow, event
	DisjointSent       *prometheus.CounterVec // flow
	DisjointDuplicates *prometheus.CounterVec // flow
	DisjointWins       *prometheus.CounterVec // flow, copy

	// Resumed streams (TUNNEL.md, "Sequenced streams").
	ResumeBuffered prometheus.Gauge
	Resumes        *prometheus.CounterVec // result
	ResumeSeconds  prometheus.Histogram
	PathSuspects   *prometheus.CounterVec // path

	// PathSite is 1 for each next hop labelled with a site (path, site).
	PathSite *prometheus.GaugeVec
}

// NewMetrics registers the tunnel metrics on reg. stats, when set, exports
// the KCP packet layer's rejected-packet count.
func NewMetrics(reg prometheus.Registerer, stats *transport.SealStats) *Metrics {
	m := &Metrics{
		Streams: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_streams_total",
			Help: "Tunnel streams handled by this node, by kind and result (forwarded, terminated, rejected reasons)."}, []string{"kind", "result"}),
		ActiveStreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "longlink_relay_active_streams",
			Help: "Tunnel streams open through this node."}, []string{"kind"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_bytes_total",
			Help: "Stream payload bytes carried, up (towards the core) and down."}, []string{"direction"}),
		Datagrams: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_datagrams_total",
			Help: "UDP flow datagrams carried, up and down."}, []string{"direction"}),
		DatagramsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_datagrams_dropped_total",
			Help: "Datagrams dropped, by reason (unknown_flow, too_large, malformed, send_error)."}, []string{"reason"}),
		PathRTT: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "longlink_relay_path_rtt_seconds",
			Help: "Smoothed probe round-trip time to a next hop."}, []string{"path"}),
		PathJitter: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "longlink_relay_path_jitter_seconds",
			Help: "Mean deviation of probe round-trip times to a next hop."}, []string{"path"}),
		PathLoss: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "longlink_relay_path_loss_ratio",
			Help: "Fraction of recent probes to a next hop that went unanswered."}, []string{"path"}),
		PathUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "longlink_relay_path_up",
			Help: "1 while a next hop is connected and answering probes."}, []string{"path"}),
		PathSelected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "longlink_relay_path_selected",
			Help: "1 for the path that carries new flows to a cluster (role primary) and its warm backup."}, []string{"cluster", "path", "role"}),
		PathSwitches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_path_switches_total",
			Help: "Changes of the primary path to a cluster, by reason (down, better, initial)."}, []string{"cluster", "reason"}),
		PathStreams: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_path_streams_total",
			Help: "Streams and flows opened on a next hop."}, []string{"path"}),
		PeerDials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_peer_dials_total",
			Help: "Connection attempts to next hops, by result."}, []string{"path", "result"}),
		EgressDials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_egress_dials_total",
			Help: "Connections from the egress to core services, by result."}, []string{"service", "result"}),
		HopsExhausted: prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_relay_hop_budget_exhausted_total",
			Help: "Streams refused because their hop budget reached zero (a routing loop)."}),
		RedundantCopies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_redundant_copies_total",
			Help: "Copies of redundant streams, by event: opened and open_failed (sender), joined (egress: a copy of a flow already open), refused_late (egress: a copy of a flow that ended), lost_error, lost_lagging, lost_refused, lost_other_flow (a copy ended, was dropped or refused while its stream went on; the sender's lost_refused also counts copies of a refused stream)."}, []string{"event"}),
		RedundantFirst: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_redundant_first_records_total",
			Help: "Records of redundant streams delivered, by the index of the copy that brought them first."}, []string{"copy"}),
		RedundantDuplicateBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_relay_redundant_duplicate_bytes_total",
			Help: "Payload bytes of redundant streams dropped as duplicates (the cost of redundancy)."}),
		RedundantFlows: prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_relay_redundant_flows",
			Help: "Redundant flows the egress is pairing copies for."}),
		RedundantTombstones: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_redundant_tombstones_total",
			Help: "Ended redundant flows remembered so that late copies are refused, by event: added, evicted (the table was full; counted, as a limit)."}, []string{"event"}),
		DisjointCopies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_disjoint_copies_total",
			Help: "Disjoint copies (small frames over a second relay), by flow (stream, udp) and event: opened, no_path (another relay than the flow's own was not up: the flow went without), open_failed, lost (the copy ended while its flow went on)."}, []string{"flow", "event"}),
		DisjointSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_disjoint_sent_total",
			Help: "Small records (stream) or datagrams (udp) this node sent a second time, on a disjoint copy."}, []string{"flow"}),
		DisjointDuplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_disjoint_duplicates_total",
			Help: "Small records or datagrams of flows with a disjoint copy that arrived a second time and were dropped."}, []string{"flow"}),
		DisjointWins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_disjoint_wins_total",
			Help: "Small records or datagrams of flows with a disjoint copy delivered, by the copy that brought them first: primary (the flow's own path) or disjoint."}, []string{"flow", "copy"}),
		ResumeBuffered: prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_relay_resume_buffered_bytes",
			Help: "Bytes of sequenced streams this node keeps until the far end acknowledges them (each stream holds at most routing.resume.buffer)."}),
		Resumes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_resumes_total",
			Help: "Copies of sequenced streams replaced after their path failed, by result: ok (the replacement took over), failed (no path took one within routing.resume.grace: the stream ended), gone (the egress no longer had the flow)."}, []string{"result"}),
		ResumeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "longlink_relay_resume_seconds",
			Help:    "Time from a copy's failure (or its path's silence) to its replacement's answer from the egress.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		PathSite: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "longlink_relay_path_site_info",
			Help: "1 for each next hop labelled with a site (the core site of an egress): its path name and site."}, []string{"path", "site"}),
		PathSuspects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_relay_path_suspects_total",
			Help: "Times a next hop was silent for routing.resume.after: the sequenced streams on it moved to other paths."}, []string{"path"}),
	}
	reg.MustRegister(m.Streams, m.ActiveStreams, m.Bytes, m.Datagrams, m.DatagramsDropped, m.PathRTT, m.PathJitter,
		m.PathLoss, m.PathUp, m.PathSelected, m.PathSwitches, m.PathStreams, m.PeerDials, m.EgressDials, m.HopsExhausted,
		m.RedundantCopies, m.RedundantFirst, m.RedundantDuplicateBytes, m.RedundantFlows, m.RedundantTombstones,
		m.DisjointCopies, m.DisjointSent, m.DisjointDuplicates, m.DisjointWins,
		m.ResumeBuffered, m.Resumes, m.ResumeSeconds, m.PathSuspects, m.PathSite)
	if stats != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "longlink_relay_kcp_rejected_packets_total",
			Help: "KCP-transport packets dropped by the authenticated packet layer (bad MAC or tag, replay, stale or unknown peer)."},
			func() float64 { return float64(stats.Rejected.Load()) }))
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "longlink_relay_kcp_gso_fallbacks_total",
			Help: "KCP-transport sockets that fell back from UDP segmentation offload (GSO) to one packet per send."},
			func() float64 { return float64(stats.GSOFallbacks.Load()) }))
		registerKCPCounters(reg)
	}
	return m
}

// registerKCPCounters exports kcp-go's loss-repair counters. kcp-go keeps
// them per process (kcp.DefaultSnmp), not per connection: every node of a
// process reports the same figures.
func registerKCPCounters(reg prometheus.Registerer) {
	counters := []struct {
		name, help, label, value string
		v                        *uint64
	}{
		{"longlink_relay_kcp_retransmitted_segments_total", "KCP segments sent again (process-wide), by cause: timeout (no ACK within the RTO), fast (later segments were ACKed), early (early retransmission).", "cause", "timeout", &kcp.DefaultSnmp.LostSegs},
		{"longlink_relay_kcp_retransmitted_segments_total", "", "cause", "fast", &kcp.DefaultSnmp.FastRetransSegs},
		{"longlink_relay_kcp_retransmitted_segments_total", "", "cause", "early", &kcp.DefaultSnmp.EarlyRetransSegs},
		{"longlink_relay_kcp_fec_packets_total", "KCP forward error correction at the receiver (process-wide), by event: parity_received (parity shards received), recovered (lost packets rebuilt from the other shards of their group), recovery_error (rebuilt packets that failed their check).", "event", "parity_received", &kcp.DefaultSnmp.FECParityShards},
		{"longlink_relay_kcp_fec_packets_total", "", "event", "recovered", &kcp.DefaultSnmp.FECRecovered},
		{"longlink_relay_kcp_fec_packets_total", "", "event", "recovery_error", &kcp.DefaultSnmp.FECErrs},
	}
	help := map[string]string{}
	for _, c := range counters {
		if c.help != "" {
			help[c.name] = c.help
		}
	}
	for _, c := range counters {
		v := c.v
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: help[c.name],
			ConstLabels: prometheus.Labels{c.label: c.value}}, func() float64 { return float64(atomic.LoadUint64(v)) }))
	}
}
