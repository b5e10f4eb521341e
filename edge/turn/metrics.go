package turn

import (
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Refusal reasons, the values of the reason label of
// longlink_turn_refusals_total.
const (
	refuseMalformed     = "malformed_username"
	refuseExpired       = "expired_credential"
	refuseBadCredential = "bad_credential" // forged or signed by a retired secret
	refuseRealm         = "wrong_realm"
	refusePeer          = "peer_denied"
	refuseQuotaUser     = "quota_user"
	refuseQuotaApp      = "quota_app"
	refuseQuotaTotal    = "quota_total"
	refuseDraining      = "draining"
	refuseTCPOverUDP    = "tcp_relay_over_udp"
	refuseFamily        = "address_family"
	refuseTCPConns      = "tcp_connection_limit"
	refuseTCPConnsPerIP = "tcp_connection_limit_per_ip"
	refuseTCPAuth       = "tcp_auth_timeout" // no authenticated request within tcp_auth_timeout
	refuseRelayBind     = "relay_bind_failed"
)

var refusalReasons = []string{
	refuseMalformed, refuseExpired, refuseBadCredential, refuseRealm, refusePeer,
	refuseQuotaUser, refuseQuotaApp, refuseQuotaTotal, refuseDraining,
	refuseTCPOverUDP, refuseFamily, refuseTCPConns, refuseTCPConnsPerIP, refuseTCPAuth, refuseRelayBind,
}

// Drop reasons, the values of the reason label of
// longlink_turn_dropped_packets_total.
const (
	dropAllocBandwidth = "allocation_bandwidth"
	dropUserBandwidth  = "user_bandwidth"
	dropQueueFull      = "queue_full" // the hand-off to pion's per-socket reader was full
)

type metrics struct {
	allocationsActive   prometheus.Gauge
	allocationsCreated  prometheus.Counter
	allocationsDeleted  prometheus.Counter
	refusals            *prometheus.CounterVec
	permissionsCreated  prometheus.Counter
	channelsCreated     prometheus.Counter
	requestErrors       prometheus.Counter
	tcpConnsActive      prometheus.Gauge
	draining            prometheus.Gauge
	bytesToPeer         prometheus.Counter
	bytesToClient       prometheus.Counter
	packetsToPeer       prometheus.Counter
	packetsToClient     prometheus.Counter
	droppedAllocBW      prometheus.Counter
	droppedUserBW       prometheus.Counter
	droppedQueueFull    prometheus.Counter
	refusedByReason     map[string]prometheus.Counter
	relaysActiveUDP     prometheus.Gauge
	relaysActiveTCP     prometheus.Gauge
	secretsLive         prometheus.Gauge
	credentialsAccepted *prometheus.CounterVec
	reloads             *prometheus.CounterVec
	// listeners are the UDP listener sockets whose kernel drops
	// longlink_turn_listener_drops_total reports; set by Start.
	listeners atomic.Pointer[[]syscall.RawConn]
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		allocationsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_turn_allocations_active", Help: "TURN allocations held now."}),
		allocationsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_turn_allocations_created_total", Help: "TURN allocations created."}),
		allocationsDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_turn_allocations_deleted_total", Help: "TURN allocations deleted (expired, released or closed)."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_turn_refusals_total", Help: "Requests refused, by reason (credentials, peer policy, quotas, drain, limits)."},
			[]string{"reason"}),
		permissionsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_turn_permissions_created_total", Help: "Permissions installed on allocations."}),
		channelsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_turn_channels_created_total", Help: "Channels bound on allocations."}),
		requestErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_turn_request_errors_total", Help: "Client packets the TURN engine could not handle (no allocation, bad message, refused request)."}),
		tcpConnsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_turn_tcp_connections_active", Help: "Client TCP and TLS connections open now."}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_turn_draining", Help: "1 while the server refuses new allocations and lets existing ones run out."}),
		relaysActiveUDP: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_turn_udp_relays_active", Help: "UDP relayed transport addresses held now."}),
		relaysActiveTCP: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_turn_tcp_relays_active", Help: "TCP relayed transport addresses (RFC 6062) held now."}),
		secretsLive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_turn_secrets_live", Help: "Shared secrets accepted now (rotation overlap)."}),
		credentialsAccepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_turn_credentials_accepted_total", Help: "Authenticated requests, by the id of the secret that signed the credential."},
			[]string{"secret_id"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_turn_config_reloads_total", Help: "Config reloads (SIGHUP), by result (ok, refused)."}, []string{"result"}),
	}
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "longlink_turn_relayed_bytes_total", Help: "Payload bytes relayed, by direction (to_peer, to_client)."}, []string{"direction"})
	packets := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "longlink_turn_relayed_packets_total", Help: "Packets (UDP) or reads (TCP) relayed, by direction."}, []string{"direction"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "longlink_turn_dropped_packets_total", Help: "UDP packets dropped by a bandwidth limit or a full hand-off queue, by reason."}, []string{"reason"})
	m.bytesToPeer = bytes.WithLabelValues("to_peer")
	m.bytesToClient = bytes.WithLabelValues("to_client")
	m.packetsToPeer = packets.WithLabelValues("to_peer")
	m.packetsToClient = packets.WithLabelValues("to_client")
	m.droppedAllocBW = dropped.WithLabelValues(dropAllocBandwidth)
	m.droppedUserBW = dropped.WithLabelValues(dropUserBandwidth)
	m.droppedQueueFull = dropped.WithLabelValues(dropQueueFull)
	listenerDrops := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "longlink_turn_listener_drops_total",
		Help: "Client UDP datagrams the kernel dropped at the listener sockets for want of room in their receive buffers: load shed before the server read it."},
		m.listenerDrops)
	m.refusedByReason = map[string]prometheus.Counter{}
	for _, r := range refusalReasons {
		m.refusedByReason[r] = m.refusals.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{
		m.allocationsActive, m.allocationsCreated, m.allocationsDeleted, m.refusals,
		m.permissionsCreated, m.channelsCreated, m.requestErrors, m.tcpConnsActive, m.draining,
		m.relaysActiveUDP, m.relaysActiveTCP, m.secretsLive, m.credentialsAccepted,
		m.reloads, bytes, packets, dropped, listenerDrops,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) refuse(reason string) { m.refusedByReason[reason].Inc() }

// soMeminfo is SO_MEMINFO (asm-generic/socket.h), which x/sys/unix lacks.
const soMeminfo = 55

// listenerDrops sums the kernel's drop counters of the listener sockets.
func (m *metrics) listenerDrops() float64 {
	raws := m.listeners.Load()
	if raws == nil {
		return 0
	}
	var total float64
	for _, raw := range *raws {
		total += float64(socketDrops(raw))
	}
	return total
}

// socketDrops is the kernel's count of datagrams a socket dropped (full
// receive buffer, bad checksum); 0 once the socket is closed.
func socketDrops(raw syscall.RawConn) uint32 {
	var info [unix.SK_MEMINFO_VARS]uint32
	var errno syscall.Errno
	if err := raw.Control(func(fd uintptr) {
		size := uint32(unsafe.Sizeof(info))
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, soMeminfo,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
	}); err != nil || errno != 0 {
		return 0
	}
	return info[unix.SK_MEMINFO_DROPS]
}
