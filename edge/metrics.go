package edge

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/link/linkquic"
)

type metrics struct {
	connections  *prometheus.CounterVec   // listener, result
	active       *prometheus.GaugeVec     // listener
	bytes        *prometheus.CounterVec   // listener, direction
	udpPackets   *prometheus.CounterVec   // listener, direction
	udpDropped   *prometheus.CounterVec   // listener, reason
	tunnelOpen   *prometheus.HistogramVec // listener
	pathSessions *prometheus.CounterVec   // listener, path
	draining     prometheus.Gauge
	shed         prometheus.Counter
	// uplinkUpdates counts route replacements from the LBS topology
	uplinkUpdates prometheus.Counter
	logins        *prometheus.CounterVec // result
	tlsReloads    *prometheus.CounterVec // result
	tlsExpiry     *prometheus.GaugeVec   // certificate
	info          *prometheus.GaugeVec   // site, home_site
	// quicListener, once link.quic listens, is read for the copies of
	// small packets it sent.
	quicListener atomic.Pointer[linkquic.Listener]
}

func (m *metrics) quicCopies() linkquic.DuplicateStats {
	if ln := m.quicListener.Load(); ln != nil {
		return ln.Duplicated()
	}
	return linkquic.DuplicateStats{}
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_edge_sessions_total",
			Help: "Client sessions (TCP connections, UDP mappings) by listener and result: ok, limit_total, limit_ip, draining, no_route, refused, no_request, handshake, empty, tls, error."}, []string{"listener", "result"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "longlink_edge_active_sessions",
			Help: "Client sessions open now, by listener."}, []string{"listener"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_edge_bytes_total",
			Help: "Client payload bytes, by listener and direction (up: client to core)."}, []string{"listener", "direction"}),
		udpPackets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_edge_udp_packets_total",
			Help: "UDP packets forwarded, by listener and direction."}, []string{"listener", "direction"}),
		udpDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_edge_udp_dropped_total",
			Help: "UDP packets dropped, by listener and reason (limit, pending_full, no_route)."}, []string{"listener", "reason"}),
		tunnelOpen: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "longlink_edge_tunnel_open_seconds",
			Help:    "Time from accepting a client to the core egress's answer, by listener.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"listener"}),
		pathSessions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_edge_path_sessions_total",
			Help: "Client sessions carried by each next hop, by listener."}, []string{"listener", "path"}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_edge_draining",
			Help: "1 while the edge drains (refuses new sessions, sheds old ones)."}),
		shed: prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_edge_shed_sessions_total",
			Help: "Sessions closed by the edge while draining."}),
		uplinkUpdates: prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_edge_uplink_updates_total",
			Help: "Times the route to the edge's cluster was replaced from the LBS's relay topology."}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_edge_link_logins_total",
			Help: "Logins on terminated Link by result: answered (by the edge, signed token verified), rejected (answered, then refused by the core and kicked), forwarded_opaque, forwarded_invalid, forwarded_unknown_key, forwarded_expired, forwarded_not_ready (answered by the core)."}, []string{"result"}),
		tlsReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_edge_tls_reloads_total",
			Help: "WebLink certificate files read again and found changed, by result: ok (now served), error (not loaded: the working certificates stay)."}, []string{"result"}),
		tlsExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "longlink_edge_tls_certificate_expiry_timestamp_seconds",
			Help: "When each WebLink certificate served now expires (Unix time), by its certificate file."}, []string{"certificate"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "longlink_edge_info",
			Help: "1 for a running edge: its site label and the core site whose egresses it prefers (routing.home_site)."}, []string{"site", "home_site"}),
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "longlink_edge_link_quic_duplicate_packets_total",
			Help: "Copies of small packets sent to Link over QUIC clients (link.quic_duplicate_max): the redundancy's cost in packets."},
			func() float64 { return float64(m.quicCopies().Packets) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "longlink_edge_link_quic_duplicate_bytes_total",
			Help: "Bytes of the copies of small packets sent to Link over QUIC clients (UDP payload)."},
			func() float64 { return float64(m.quicCopies().Bytes) }))
	reg.MustRegister(m.info, m.connections, m.active, m.bytes, m.udpPackets, m.udpDropped, m.tunnelOpen, m.pathSessions, m.draining, m.shed, m.uplinkUpdates, m.logins,
		m.tlsReloads, m.tlsExpiry)
	return m
}
