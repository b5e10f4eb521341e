package relay

import (
	"net"
	"sort"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/relay/transport"
)

// Transport state of every live tunnel connection, read at scrape time:
// the connections this node dialed to its next hops (one per lane) and
// those it accepted. Labels: side (dialed, accepted), path (the next hop's
// name; for accepted connections the peer's IP), transport and lane (the
// lane index; for accepted connections a slot among that peer's
// connections, kept for the connection's life). Nothing is per client.
var (
	laneLabels = []string{"side", "path", "transport", "lane"}

	laneRTTDesc = prometheus.NewDesc("longlink_relay_lane_rtt_seconds",
		"Smoothed round-trip time the transport measures on a tunnel connection (KCP: whole milliseconds).", laneLabels, nil)
	laneRTTVarDesc = prometheus.NewDesc("longlink_relay_lane_rtt_variance_seconds",
		"Mean deviation of the transport's round-trip samples on a tunnel connection.", laneLabels, nil)
	laneMinRTTDesc = prometheus.NewDesc("longlink_relay_lane_min_rtt_seconds",
		"Lowest round-trip sample on a QUIC tunnel connection.", laneLabels, nil)
	laneRTODesc = prometheus.NewDesc("longlink_relay_lane_rto_seconds",
		"Retransmission timeout of a KCP tunnel connection.", laneLabels, nil)
	laneCwndDesc = prometheus.NewDesc("longlink_relay_lane_cwnd_bytes",
		"Congestion window of a QUIC tunnel connection's sender: bytes it may have in flight.", laneLabels, nil)
	laneSentPacketsDesc = prometheus.NewDesc("longlink_relay_lane_sent_packets_total",
		"Packets a tunnel connection sent, retransmissions included (QUIC packets; KCP packet-layer packets).", laneLabels, nil)
	laneReceivedPacketsDesc = prometheus.NewDesc("longlink_relay_lane_received_packets_total",
		"Packets a tunnel connection received (QUIC packets; authenticated KCP packet-layer packets).", laneLabels, nil)
	laneLostPacketsDesc = prometheus.NewDesc("longlink_relay_lane_lost_packets_total",
		"Packets a QUIC tunnel connection declared lost (their frames are retransmitted).", laneLabels, nil)
	laneSentBytesDesc = prometheus.NewDesc("longlink_relay_lane_sent_bytes_total",
		"Bytes a tunnel connection sent on the wire without UDP/IP headers, retransmissions and transport overhead included.", laneLabels, nil)
	laneReceivedBytesDesc = prometheus.NewDesc("longlink_relay_lane_received_bytes_total",
		"Bytes a tunnel connection received on the wire without UDP/IP headers.", laneLabels, nil)
)

// laneCollector reads the statistics of the live connections when
// scraped. It holds the router's, a peer's and the node's locks only to
// copy their connection lists; the transports' figures are read after.
type laneCollector struct {
	router *Router
	node   *Node // nil on an edge, which accepts no tunnels

	mu    sync.Mutex
	slots map[transport.Conn]acceptedSlot
}

type acceptedSlot struct {
	group string // peer IP and transport
	slot  int
}

// NewLaneCollector exports the transport state of r's next-hop
// connections (longlink_relay_lane_*). Nodes register one themselves;
// edges register it next to their router's Metrics.
func NewLaneCollector(r *Router) prometheus.Collector {
	return &laneCollector{router: r}
}

func newNodeLaneCollector(n *Node) *laneCollector {
	return &laneCollector{router: n.router, node: n, slots: map[transport.Conn]acceptedSlot{}}
}

// Describe implements prometheus.Collector.
func (c *laneCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{laneRTTDesc, laneRTTVarDesc, laneMinRTTDesc, laneRTODesc, laneCwndDesc,
		laneSentPacketsDesc, laneReceivedPacketsDesc, laneLostPacketsDesc, laneSentBytesDesc, laneReceivedBytesDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *laneCollector) Collect(ch chan<- prometheus.Metric) {
	// Two hops may share a name; a registry refuses a scrape with
	// duplicate series, so the first one wins.
	seen := map[[4]string]bool{}
	for _, pl := range c.router.liveLanes() {
		for i, l := range pl.lanes {
			if l == nil {
				continue
			}
			sc, ok := l.conn.(transport.StatsConn)
			if !ok {
				continue
			}
			st := sc.Stats()
			lv := [4]string{"dialed", pl.path, st.Transport, strconv.Itoa(i)}
			if !seen[lv] {
				seen[lv] = true
				emitLane(ch, lv, st)
			}
		}
	}
	if c.node != nil {
		for _, a := range c.accepted() {
			emitLane(ch, [4]string{"accepted", a.host, a.st.Transport, strconv.Itoa(a.slot)}, a.st)
		}
	}
}

func emitLane(ch chan<- prometheus.Metric, lv [4]string, st transport.ConnStats) {
	l := lv[:]
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge(laneRTTDesc, st.SmoothedRTT.Seconds())
	gauge(laneRTTVarDesc, st.RTTVar.Seconds())
	if st.Has&transport.HasMinRTT != 0 {
		gauge(laneMinRTTDesc, st.MinRTT.Seconds())
	}
	if st.Has&transport.HasRTO != 0 {
		gauge(laneRTODesc, st.RTO.Seconds())
	}
	if st.Has&transport.HasCongestionWindow != 0 {
		gauge(laneCwndDesc, float64(st.CongestionWindow))
	}
	counter(laneSentPacketsDesc, st.PacketsSent)
	counter(laneReceivedPacketsDesc, st.PacketsReceived)
	if st.Has&transport.HasPacketsLost != 0 {
		counter(laneLostPacketsDesc, st.PacketsLost)
	}
	counter(laneSentBytesDesc, st.BytesSent)
	counter(laneReceivedBytesDesc, st.BytesReceived)
}

type peerLanes struct {
	path  string
	lanes []*link
}

// liveLanes lists every next hop's lanes (nil while one is dialed).
func (r *Router) liveLanes() []peerLanes {
	r.mu.Lock()
	peers := make([]*peer, 0, len(r.peers))
	for _, p := range r.peers {
		peers = append(peers, p)
	}
	r.mu.Unlock()
	sort.Slice(peers, func(i, j int) bool { return peers[i].hop.key() < peers[j].hop.key() })
	out := make([]peerLanes, len(peers))
	for i, p := range peers {
		out[i] = peerLanes{path: p.hop.label(), lanes: p.lanes()}
	}
	return out
}

type acceptedStats struct {
	host string
	slot int
	st   transport.ConnStats
}

// accepted reads the node's accepted connections. Each keeps the slot it
// first got, the lowest free one among its peer's connections of its
// transport, so that a series follows one connection (a slot freed by a
// closed connection starts again from zero, as a counter reset).
func (c *laneCollector) accepted() []acceptedStats {
	n := c.node
	n.mu.Lock()
	conns := make([]transport.Conn, 0, len(n.conns))
	for cn := range n.conns {
		conns = append(conns, cn)
	}
	n.mu.Unlock()
	type live struct {
		conn  transport.Conn
		group string
		out   acceptedStats
	}
	var ls []live
	for _, cn := range conns {
		sc, ok := cn.(transport.StatsConn)
		if !ok {
			continue
		}
		st := sc.Stats()
		host := peerHost(cn.RemoteAddr())
		ls = append(ls, live{conn: cn, group: host + "|" + st.Transport, out: acceptedStats{host: host, st: st}})
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	alive := make(map[transport.Conn]bool, len(ls))
	for _, l := range ls {
		alive[l.conn] = true
	}
	used := map[string]map[int]bool{}
	for cn, s := range c.slots {
		if !alive[cn] {
			delete(c.slots, cn)
			continue
		}
		if used[s.group] == nil {
			used[s.group] = map[int]bool{}
		}
		used[s.group][s.slot] = true
	}
	out := make([]acceptedStats, 0, len(ls))
	for _, l := range ls {
		s, ok := c.slots[l.conn]
		if !ok {
			if used[l.group] == nil {
				used[l.group] = map[int]bool{}
			}
			s = acceptedSlot{group: l.group}
			for used[l.group][s.slot] {
				s.slot++
			}
			used[l.group][s.slot] = true
			c.slots[l.conn] = s
		}
		l.out.slot = s.slot
		out = append(out, l.out)
	}
	return out
}

// peerHost is the IP of a peer's address: its port changes with every
// connection and would make a new series each time.
func peerHost(a net.Addr) string {
	if ua, ok := a.(*net.UDPAddr); ok {
		return ua.IP.String()
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}
