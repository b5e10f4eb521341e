package wan

import "github.com/prometheus/client_golang/prometheus"

// metrics are the world's counters, registered on the injected registerer.
type metrics struct {
	packets *prometheus.CounterVec // by link direction and verdict
	bytes   *prometheus.CounterVec // delivered bytes by link direction
	dropped *prometheus.CounterVec // packets not routed, by source node and reason
	queued  *prometheus.GaugeVec   // packets in flight (delay line) by direction
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_wanemu_packets_total",
			Help: "Packets offered to a link direction, by what happened to them (delivered, lost, queue_full, overflow).",
		}, []string{"link", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_wanemu_delivered_bytes_total",
			Help: "IP bytes delivered by a link direction.",
		}, []string{"link"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_wanemu_unrouted_packets_total",
			Help: "Packets read from a node that no link carries, by reason (not_ipv4, malformed, no_route, no_link, cut).",
		}, []string{"node", "reason"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "longlink_wanemu_in_flight_packets",
			Help: "Packets waiting in a link direction's delay line.",
		}, []string{"link"}),
	}
	if reg != nil {
		reg.MustRegister(m.packets, m.bytes, m.dropped, m.queued)
	}
	return m
}
