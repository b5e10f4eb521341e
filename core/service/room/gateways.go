package room

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/internal/node"
)

// roomState is what a service node keeps about rooms: the live gateways
// heard on buswire.GatewaySubject.
type roomState struct {
	mu       sync.Mutex
	gateways map[string]gatewaySeen
	sizes    map[string]roomCount // by "appkey/room"
	sub      *nats.Subscription
	stop     chan struct{}
	done     chan struct{}
	// listening is since when (node clock) this node has heard the bus
	// without a break: reset when the process stalled (SIGSTOP, a GC or
	// swap storm: its sweep ticker fired late) or its NATS connection was
	// down or reconnected. A gateway counts as silent only when it has
	// not been heard for GatewayTimeout of that time: a node that wakes
	// from a pause, or comes back to the bus, hears every gateway's next
	// announcement before it takes one for dead. Guarded by mu.
	listening time.Time
}

// maxSizes bounds the cached room sizes; when full the cache starts over.
const maxSizes = 200_000

type roomCount struct {
	n  int
	at time.Time
}

type gatewaySeen struct {
	buswire.GatewayAnnounce
	at time.Time
}

// Start listens to gateway announcements.
func (s *Rooms) Start(context.Context) error {
	s.gateways = map[string]gatewaySeen{}
	s.sizes = map[string]roomCount{}
	s.listening = s.n.Now()
	sub, err := s.n.NATS.Subscribe(buswire.GatewaySubject, func(m *nats.Msg) {
		var a buswire.GatewayAnnounce
		if json.Unmarshal(m.Data, &a) != nil || a.ID == "" || len(a.Addresses) > 16 {
			return
		}
		s.mu.Lock()
		prev, known := s.gateways[a.ID]
		s.gateways[a.ID] = gatewaySeen{GatewayAnnounce: a, at: s.n.Now()}
		s.mu.Unlock()
		if known && prev.Started != 0 && a.Started > prev.Started {
			// Restarted under the same id: what it held before is gone.
			s.dropGatewayPresence(a.ID, time.UnixMilli(a.Started), "restarted")
		}
	})
	if err != nil {
		return fmt.Errorf("service: subscribe %s: %w", buswire.GatewaySubject, err)
	}
	s.sub = sub
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.sweepGateways()
	return nil
}

// Stop stops listening and sweeping.
func (s *Rooms) Stop(context.Context) {
	if s.sub != nil {
		_ = s.sub.Unsubscribe()
		s.sub = nil
		close(s.stop)
		<-s.done
	}
}

// sweepGateways forgets gateways that stopped announcing themselves and
// removes the room presence they recorded: a gateway that crashed never
// sent the room.leave of its sessions. Every service node does it for the
// gateways it has heard of; doing it twice is harmless.
//
// A node that was not listening (stalled, or off the bus) for a while has
// heard no announcement meanwhile, from live gateways either: it restarts
// their timeouts instead (see roomState.listening). Without that, a
// service node woken from a SIGSTOP of GatewayTimeout removed the room
// presence of every live gateway, and every member's room sends were
// refused "not in room".
func (s *Rooms) sweepGateways() {
	defer close(s.done)
	every := max(s.cfg.GatewayTimeout.D()/4, 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	lastTick := time.Now() // real time: a stall is measured on the process's clock
	reconnects := s.n.NATS.Stats().Reconnects
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := s.n.Now()
		stalled := time.Since(lastTick) > every+s.cfg.GatewayTimeout.D()/4
		lastTick = time.Now()
		r := s.n.NATS.Stats().Reconnects
		reconnected := r != reconnects
		offBus := !s.n.NATS.IsConnected() || reconnected
		reconnects = r
		var dead []string
		s.mu.Lock()
		if stalled || offBus {
			s.listening = now
			s.metrics.deafSpells.Inc()
		}
		if stalled || reconnected {
			s.n.Log.Info("gateway timeouts restarted: this node heard nothing for a while", "stalled", stalled, "reconnected", reconnected)
		}
		for id, g := range s.gateways {
			if s.silentLocked(g, now) {
				dead = append(dead, id)
				delete(s.gateways, id)
			}
		}
		s.mu.Unlock()
		for _, id := range dead {
			s.dropGatewayPresence(id, now, "silent")
		}
	}
}

// silentLocked reports whether g has not been heard for GatewayTimeout
// while this node was listening. mu is held.
func (s *Rooms) silentLocked(g gatewaySeen, now time.Time) bool {
	heard := g.at
	if s.listening.After(heard) {
		heard = s.listening
	}
	return now.Sub(heard) > s.cfg.GatewayTimeout.D()
}

func (s *Rooms) dropGatewayPresence(id string, before time.Time, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.n.Cfg.RequestTimeout)
	defer cancel()
	n, err := s.n.Store.RemoveGatewayPresence(ctx, id, before)
	if err != nil {
		s.n.Log.Warn("room presence of a gone gateway not removed", "gateway", id, "err", err)
		return
	}
	if n > 0 {
		s.metrics.stalePresence.Add(float64(n))
		s.n.Log.Info("room presence of a gone gateway removed", "gateway", id, "why", why, "sessions", n)
	}
}

// EntryPoints returns the gateways a client should enter roomID
// through, best first: those already holding most of the room's members
// (so that the room stays on few gateways and each room message costs few
// copies), then the least loaded live gateways while the first ones are
// full or draining.
func (s *Rooms) EntryPoints(ctx context.Context, appkey, roomID string) ([]EntryPoint, error) {
	r, err := s.n.Store.Room(ctx, appkey, roomID)
	if err != nil {
		return nil, node.StoreErr(err, "room")
	}
	if r.Closed {
		return nil, imapi.Errorf(imapi.ErrNotFound, "room closed")
	}
	held, err := s.n.Store.RoomGateways(ctx, appkey, roomID)
	if err != nil {
		return nil, node.StoreErr(err, "room")
	}
	now := s.n.Now()
	s.mu.Lock()
	var live []gatewaySeen
	for _, g := range s.gateways {
		if s.silentLocked(g, now) {
			continue
		}
		if g.Draining || len(g.Addresses) == 0 || (g.Capacity > 0 && g.Sessions >= g.Capacity) {
			continue
		}
		live = append(live, g)
	}
	s.mu.Unlock()
	sort.Slice(live, func(i, j int) bool {
		a, b := live[i], live[j]
		if held[a.ID] != held[b.ID] {
			return held[a.ID] > held[b.ID]
		}
		fa, fb := free(a.GatewayAnnounce), free(b.GatewayAnnounce)
		if fa != fb {
			return fa > fb
		}
		return a.ID < b.ID
	})
	if len(live) == 0 {
		return nil, imapi.Errorf(imapi.ErrUnavailable, "no gateway is available")
	}
	out := make([]EntryPoint, 0, s.cfg.MaxEntryPoints)
	for _, g := range live[:min(len(live), s.cfg.MaxEntryPoints)] {
		out = append(out, EntryPoint{Gateway: g.ID, Addresses: g.Addresses, Members: held[g.ID]})
	}
	return out, nil
}

func free(a buswire.GatewayAnnounce) int {
	if a.Capacity <= 0 {
		return math.MaxInt32 - a.Sessions
	}
	return a.Capacity - a.Sessions
}
