package server

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the protocol server, named longlink_weblink_*.
type Metrics struct {
	sessions      prometheus.Gauge
	wsConns       prometheus.Gauge
	parked        prometheus.Gauge
	sockets       prometheus.Gauge
	handshakes    *prometheus.CounterVec
	upgrades      prometheus.Counter
	closes        *prometheus.CounterVec
	requestErrors *prometheus.CounterVec
	refused       *prometheus.CounterVec
	parseErrors   *prometheus.CounterVec
	pingTimeouts  prometheus.Counter
	tooLarge      prometheus.Counter
	slowClients   prometheus.Counter
	connectErrors prometheus.Counter
	events        prometheus.Counter
	packetsIn     prometheus.Counter
	packetsOut    prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sessions:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_weblink_sessions", Help: "Open Engine.IO sessions."}),
		wsConns:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_weblink_websocket_connections", Help: "Open WebSocket connections, probes included."}),
		parked:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_weblink_parked_connections", Help: "WebSocket connections parked without a reader goroutine (idle)."}),
		sockets:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_weblink_sockets", Help: "Connected Socket.IO namespace sockets."}),
		handshakes:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_weblink_handshakes_total", Help: "Engine.IO sessions opened, by first transport."}, []string{"transport"}),
		upgrades:      prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_weblink_upgrades_total", Help: "Sessions upgraded from polling to WebSocket."}),
		closes:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_weblink_session_closes_total", Help: "Sessions closed, by reason."}, []string{"reason"}),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_weblink_request_errors_total", Help: "Requests refused, by Engine.IO error code."}, []string{"code"}),
		refused:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_weblink_refused_total", Help: "Handshakes refused (503) by a limit."}, []string{"reason"}),
		parseErrors:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_weblink_parse_errors_total", Help: "Packets that did not decode, by layer (eio, sio)."}, []string{"layer"}),
		pingTimeouts:  prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_weblink_ping_timeouts_total", Help: "Sessions closed because no pong came in time."}),
		tooLarge:      prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_weblink_payload_too_large_total", Help: "Payloads refused for exceeding the maximum size."}),
		slowClients:   prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_weblink_slow_clients_total", Help: "Clients dropped because their outbound queue overflowed."}),
		connectErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_weblink_connect_errors_total", Help: "Namespace connections refused with CONNECT_ERROR."}),
		events:        prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_weblink_events_total", Help: "Socket.IO events received."}),
		packetsIn:     prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_weblink_messages_in_total", Help: "Engine.IO message packets received."}),
		packetsOut:    prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_weblink_packets_out_total", Help: "Engine.IO packets sent."}),
	}
	if reg != nil {
		reg.MustRegister(m.sessions, m.wsConns, m.parked, m.sockets, m.handshakes, m.upgrades, m.closes, m.requestErrors, m.refused,
			m.parseErrors, m.pingTimeouts, m.tooLarge, m.slowClients, m.connectErrors, m.events, m.packetsIn, m.packetsOut)
	}
	return m
}
