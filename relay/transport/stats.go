package transport

import "time"

// StatsConn is a Conn that reports its transport state: round-trip time,
// congestion window, packet counts. QUIC and KCP connections implement it,
// dialed and accepted alike; Mem connections do not (nothing to measure).
// Stats may be called at any time, concurrently with traffic; it reads
// counters the transport keeps anyway and costs the hot path nothing.
type StatsConn interface {
	Conn
	Stats() ConnStats
}

// StatFields says which of the figures in ConnStats a transport measures;
// the others are zero and mean nothing.
type StatFields uint16

const (
	// HasMinRTT: the lowest RTT sample seen (QUIC).
	HasMinRTT StatFields = 1 << iota
	// HasRTO: the retransmission timeout (KCP).
	HasRTO
	// HasCongestionWindow: the sender's congestion window in bytes (QUIC;
	// KCP's profiles all run without one).
	HasCongestionWindow
	// HasPacketsLost: packets the sender declared lost (QUIC). kcp-go
	// counts its losses and retransmissions only process-wide
	// (kcp.DefaultSnmp).
	HasPacketsLost
)

// ConnStats is a snapshot of one connection's transport state. The packet
// and byte counts grow for the connection's life and start again at zero on
// a new connection.
type ConnStats struct {
	// Transport is "quic" or "kcp".
	Transport string
	Has       StatFields
	// SmoothedRTT and RTTVar are the transport's own estimates (RFC 9002
	// smoothed RTT and mean deviation for QUIC, RFC 6298 SRTT and RTTVAR
	// for KCP, whose clock has a millisecond granularity). Zero before the
	// first sample.
	SmoothedRTT time.Duration
	RTTVar      time.Duration
	MinRTT      time.Duration
	RTO         time.Duration
	// CongestionWindow is in bytes, QUIC packet overhead included.
	CongestionWindow uint64
	// Packets and bytes on the wire, retransmissions included. QUIC counts
	// QUIC packets and their bytes without UDP/IP headers; KCP counts the
	// authenticated packets of TUNNEL.md's packet layer (each carries one
	// or more KCP segments, ACKs or FEC shards) with the layer's overhead,
	// without UDP/IP headers.
	PacketsSent     uint64
	PacketsReceived uint64
	PacketsLost     uint64
	BytesSent       uint64
	BytesReceived   uint64
}

var (
	_ StatsConn = (*quicConn)(nil)
	_ StatsConn = (*kcpConn)(nil)
)
