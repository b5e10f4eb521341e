package service

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	pushes     *prometheus.CounterVec
	pushErrors prometheus.Counter
	kicks      prometheus.Counter
	oversize   prometheus.Counter
	hookErrors prometheus.Counter
	relLimits  *prometheus.CounterVec
	// eventLogErrors counts logins and logouts not written to the event log.
	eventLogErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_pushes_total", Help: "Pushes published to user subjects, by op.",
		}, []string{"op"}),
		pushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_push_errors_total", Help: "Pushes that could not be published.",
		}),
		kicks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_kicks_total", Help: "Kick pushes sent by the multi-device policy at login.",
		}),
		oversize: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_oversize_requests_total", Help: "Requests or message bodies refused for their size.",
		}),
		hookErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_webhook_errors_total", Help: "Webhook events (message copies, logins, logouts) that could not be queued.",
		}),
		relLimits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_relation_limits_total", Help: "Relationship changes refused by a count limit, by limit (friends, blacklist, mutes).",
		}, []string{"limit"}),
		eventLogErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_event_log_errors_total", Help: "Logins and logouts that could not be written to the event log.",
		}),
	}
	for _, c := range []prometheus.Collector{m.pushes, m.pushErrors, m.kicks, m.oversize, m.hookErrors, m.relLimits, m.eventLogErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// roomMetrics are the chatroom counters.
type roomMetrics struct {
	rooms       *prometheus.CounterVec // event: created, closed
	enters      *prometheus.CounterVec // result
	messages    prometheus.Counter
	rateLimited *prometheus.CounterVec // scope: room, member
	refused     *prometheus.CounterVec // reason: guest, room_muted, muted
	kicks       prometheus.Counter
	events      *prometheus.CounterVec // kind
	// stalePresence counts sessions removed from rooms because their
	// gateway stopped announcing itself or restarted.
	stalePresence prometheus.Counter
}

func newRoomMetrics(reg prometheus.Registerer) (*roomMetrics, error) {
	m := &roomMetrics{
		rooms: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_rooms_total", Help: "Chatrooms created and closed, by event.",
		}, []string{"event"}),
		enters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_room_enters_total", Help: "Room enter attempts by result (ok, bad_token, banned, not_found, bad_request, error).",
		}, []string{"result"}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_room_messages_total", Help: "Room messages stored and published once on their room subject.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_room_rate_limited_total", Help: "Room messages refused by a rate limit, by scope (room, member).",
		}, []string{"scope"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_room_send_refused_total", Help: "Room messages refused by the room's rules, by reason (guest, room_muted, muted).",
		}, []string{"reason"}),
		kicks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_room_kicks_total", Help: "Accounts kicked out of rooms.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_room_events_total", Help: "Room events published on room subjects, by kind.",
		}, []string{"kind"}),
		stalePresence: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_room_stale_presence_total", Help: "Room sessions removed because their gateway went silent or restarted.",
		}),
	}
	for _, c := range []prometheus.Collector{m.rooms, m.enters, m.messages, m.rateLimited, m.refused, m.kicks, m.events, m.stalePresence} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
