package gateway

import (
	"math/rand/v2"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

// SetDrained turns an operator's drain on or off (the LBS reports `ctl
// drain ID` or `ctl site drain SITE` in its heartbeat replies). While
// drained the gateway refuses new logins with 503 "server draining" (the
// SDK's race goes on to its other candidates), and kicks its sessions with
// the drain kick at moments spread evenly (with jitter) over
// operator_drain_time, so
// their clients reconnect elsewhere gradually rather than in a storm.
// Undrained, it takes logins again and stops kicking. Unlike Shutdown the
// process keeps running: the operator undrains it after the maintenance.
func (g *Gateway) SetDrained(on bool) {
	g.opMu.Lock()
	defer g.opMu.Unlock()
	if g.opDrained.Load() == on {
		return
	}
	g.opDrained.Store(on)
	if on {
		g.m.opDrained.Set(1)
		stop := make(chan struct{})
		g.opStop = stop
		g.wg.Add(1)
		go g.opDrain(stop)
		return
	}
	g.m.opDrained.Set(0)
	close(g.opStop)
	g.opStop = nil
	g.log.Info("operator drain ended: taking logins again")
}

// Drained reports whether an operator's drain is on (SetDrained).
func (g *Gateway) Drained() bool { return g.opDrained.Load() }

// opDrain kicks every session at its own moment of the drain window
// (spread evenly, with jitter), then keeps kicking the
// few that log in meanwhile (through a cached address) until undrained.
func (g *Gateway) opDrain(stop <-chan struct{}) {
	defer g.wg.Done()
	window := g.cfg.OperatorDrainTime.D()
	sessions := g.allSessions()
	g.log.Info("operator drain: moving sessions elsewhere", "sessions", len(sessions), "over", window)
	// Stratified: the i-th kick at a random moment of the i-th of n equal
	// slices of the window. Uniform random moments cluster (CI saw 7 of
	// 12 clients leave within a quarter of the window); these never put
	// more than about n/k kicks into any k-th of it.
	at := make([]time.Duration, len(sessions))
	for i := range at {
		at[i] = time.Duration((float64(i) + rand.Float64()) * float64(window) / float64(len(at)))
	}
	rand.Shuffle(len(sessions), func(i, j int) { sessions[i], sessions[j] = sessions[j], sessions[i] })
	start := time.Now()
	kick := func(s *Session) {
		if g.unregister(s, ReasonDraining, true) {
			g.m.kicks.WithLabelValues("draining").Inc()
			s.t.Close(drainKick)
		}
	}
	for i, s := range sessions {
		t := time.NewTimer(time.Until(start.Add(at[i])))
		select {
		case <-stop:
			t.Stop()
			return
		case <-g.stop:
			t.Stop()
			return
		case <-t.C:
		}
		kick(s)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-g.stop:
			return
		case <-tick.C:
			for _, s := range g.allSessions() {
				kick(s)
			}
		}
	}
}

// refuseDrained is the login refusal of a drained gateway.
func (g *Gateway) refuseDrained() error {
	g.m.refused.WithLabelValues("drained").Inc()
	return imapi.Errorf(imapi.ErrUnavailable, ReasonDraining)
}
