package room

import "github.com/prometheus/client_golang/prometheus"

// metrics are the chatroom counters.
type metrics struct {
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
	// deafSpells counts gateway sweeps that found this node stalled or
	// off the bus, and restarted the gateways' timeouts instead of
	// judging them.
	deafSpells prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
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
		deafSpells: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_room_gateway_timeouts_restarted_total",
			Help: "Gateway sweeps that found this node stalled or off the bus (it heard no announcement meanwhile) and restarted the gateways' timeouts instead of removing their room presence.",
		}),
	}
	for _, c := range []prometheus.Collector{m.rooms, m.enters, m.messages, m.rateLimited, m.refused, m.kicks, m.events, m.stalePresence, m.deafSpells} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
