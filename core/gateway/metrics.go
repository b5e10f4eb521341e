package gateway

import "github.com/prometheus/client_golang/prometheus"

// metrics of a gateway, registered on the injected registerer.
type metrics struct {
	opDrained      prometheus.Gauge
	connections    prometheus.Gauge
	sessions       prometheus.Gauge
	accounts       prometheus.Gauge
	accepted       prometheus.Counter
	refused        *prometheus.CounterVec // reason
	protocolErrors *prometheus.CounterVec // reason
	logins         *prometheus.CounterVec // result
	requests       *prometheus.CounterVec // op
	requestErrors  *prometheus.CounterVec // code
	requestSeconds prometheus.Histogram
	pushes         prometheus.Counter
	pushDelivered  prometheus.Counter
	slowConsumers  prometheus.Counter
	kicks          *prometheus.CounterVec // reason
	framesIn       prometheus.Counter
	framesOut      prometheus.Counter
	rooms          prometheus.Gauge
	roomMembers    prometheus.Gauge
	roomMessages   prometheus.Counter
	roomBatches    prometheus.Counter
	roomFrames     prometheus.Counter
	roomDeliveries prometheus.Counter
	roomSlowDrops  prometheus.Counter
	roomSkipped    prometheus.Counter
	roomEvents     prometheus.Counter
	roomGaps       prometheus.Counter

	roomDirectWrites  prometheus.Counter
	roomPartialWrites prometheus.Counter
	roomStretched     prometheus.Counter
	roomRoundSeconds  prometheus.Histogram

	sendBatches   prometheus.Counter
	sendBatchSize prometheus.Histogram
	sendRetries   prometheus.Counter
	sendDelayed   prometheus.Counter
	sendGiveUps   prometheus.Counter

	handshakesRunning prometheus.Gauge
	handshakesQueued  prometheus.Gauge
	handshakeWait     prometheus.Histogram
	handshakeDrops    *prometheus.CounterVec // reason
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_gateway_connections", Help: "Open Link connections (any state)."}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_gateway_sessions", Help: "Logged-in sessions on every transport."}),
		accounts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_gateway_accounts", Help: "Accounts with at least one session or login in progress (push subscriptions)."}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_accepted_total", Help: "Accepted Link TCP connections."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_gateway_refused_total", Help: "Refused connections and requests by reason (max_connections, per_ip, rate, inflight, sends, draining, drained (an operator drain), proxy_header, untrusted_plain)."}, []string{"reason"}),
		protocolErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_gateway_protocol_errors_total", Help: "Connections closed for bad input by reason (handshake, unknown_key, decrypt, frame_too_large, bad_frame, not_logged_in)."}, []string{"reason"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_gateway_logins_total", Help: "Login attempts by result (ok or the code name)."}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_gateway_requests_total", Help: "Requests forwarded to the services by op."}, []string{"op"}),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_gateway_request_errors_total", Help: "Requests answered with an error, by code."}, []string{"code"}),
		requestSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "longlink_gateway_request_seconds", Help: "Time from forwarding a request to its service reply.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_pushes_total", Help: "Pushes received from the bus."}),
		pushDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_push_deliveries_total", Help: "Pushes queued to sessions."}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_slow_consumers_total", Help: "Sessions dropped because their send queue was full."}),
		kicks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_gateway_kicks_total", Help: "Sessions closed by the server, by reason (kicked, draining, logout, unavailable)."}, []string{"reason"}),
		framesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_frames_in_total", Help: "Link frames read."}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_frames_out_total", Help: "Link frames written."}),
		rooms: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_gateway_rooms", Help: "Chatrooms with members on this gateway (room subscriptions)."}),
		roomMembers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_gateway_room_members", Help: "Sessions in chatrooms on this gateway."}),
		roomMessages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_room_messages_total", Help: "Room messages received from the bus (one copy per room message per gateway)."}),
		roomBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_room_batches_total", Help: "Room batches built (one per room per batching interval with messages)."}),
		roomFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_room_frames_total", Help: "room.messages frames queued to sessions."}),
		roomDeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_room_deliveries_total", Help: "Room messages queued to sessions (frames times the messages in them)."}),
		roomSlowDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_room_slow_drops_total", Help: "Room members dropped because their connection's send queue was full."}),
		roomSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_room_skipped_total", Help: "Room messages not sent to members still behind with earlier frames (room_max_queued)."}),
		roomEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_room_events_total", Help: "Room events received from the bus."}),
		roomGaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_room_gaps_total", Help: "Room batches sent with a seq missing before them after holding them room_gap_wait for it (published by several service nodes, a message may arrive late or never)."}),
		roomDirectWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_room_direct_writes_total", Help: "room.messages frames the room writers wrote themselves (the connection had nothing else to write), without its writer goroutine."}),
		roomPartialWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_room_partial_writes_total", Help: "Direct room frames the socket took only in part; the connection's writer sent the rest."}),
		roomStretched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_room_stretched_total", Help: "Room batch intervals that ended while the previous round of writes was still going (the flush waited for it)."}),
		roomRoundSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "longlink_gateway_room_round_seconds", Help: "Time to write (or queue) one round of room batches to every member connection.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .2, .35, .5, .75, 1, 2, 5}}),
		sendBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_send_batches_total", Help: "Send batches put on the bus (a session's sends that arrived while its previous batch was out; ORDER.md)."}),
		sendBatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "longlink_gateway_send_batch_size", Help: "Sends per send batch.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}}),
		sendRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_send_retries_total", Help: "Send batches (or their retryable tails) sent again after a timeout or a retryable refusal."}),
		sendDelayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_send_rate_delays_total", Help: "Send batches held back for the session's request rate (instead of refused)."}),
		opDrained: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_gateway_operator_drained", Help: "1 while an operator's drain (ctl drain, ctl site drain) moves this gateway's sessions elsewhere and refuses logins."}),
		sendGiveUps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_send_give_ups_total", Help: "Sessions ended because a send batch was not stored within request_timeout (the client resends on its next session)."}),
		handshakesRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_gateway_handshakes_running", Help: "Link handshakes being computed now (at most max_handshakes)."}),
		handshakesQueued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_gateway_handshakes_queued", Help: "Link connections whose hello arrived, waiting for a handshake slot (FIFO)."}),
		handshakeWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "longlink_gateway_handshake_wait_seconds", Help: "Time a Link connection waited for its handshake slot (admitted ones).",
			Buckets: []float64{.0001, .001, .005, .01, .05, .1, .25, .5, 1, 2, 3, 5, 10}}),
		handshakeDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_gateway_handshake_drops_total", Help: "Link connections closed without a handshake by reason (waited: longer than handshake_wait since accepted; client_gone: the client had closed while it waited; hello_late: no hello within hello_grace while the gateway was full, closed to make room)."}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{m.handshakesRunning, m.handshakesQueued, m.handshakeWait, m.handshakeDrops, m.opDrained, m.roomGaps, m.sendBatches, m.sendBatchSize, m.sendRetries, m.sendDelayed, m.sendGiveUps, m.rooms, m.roomMembers, m.roomMessages, m.roomBatches, m.roomFrames,
		m.roomDeliveries, m.roomSlowDrops, m.roomSkipped, m.roomEvents,
		m.roomDirectWrites, m.roomPartialWrites, m.roomStretched, m.roomRoundSeconds, m.connections, m.sessions, m.accounts, m.accepted, m.refused,
		m.protocolErrors, m.logins, m.requests, m.requestErrors, m.requestSeconds, m.pushes, m.pushDelivered,
		m.slowConsumers, m.kicks, m.framesIn, m.framesOut} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
