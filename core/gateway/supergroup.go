package gateway

import (
	"encoding/json"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
)

// Super-groups: the gateway subscribes to a group's subject
// (buswire.SuperSubject) while it holds at least one session of a member, so
// one publish by the services reaches each such gateway once, and the
// gateway fans the push out to its local member sessions. It learns a
// session's super-groups from the login answer (buswire.LoginReply.SuperGroups) and
// from SuperEvent pushes on the account's subject (joined: subscribe;
// removed or left: unsubscribe), and drops the group when a dismissed event
// arrives on the group's subject. The account's subject is subscribed
// before the login request goes out, and the events heard while the login
// is pending are applied after the answer's list: a member added between
// the service's lookup and the session's registration is followed. Pushes on both subjects go through the
// one dispatcher, so a removal is applied before any later group push.

// superGroup is one subscribed group subject and its local member sessions.
type superGroup struct {
	sub      *nats.Subscription
	sessions map[*Session]struct{}
}

type superMetrics struct {
	groups  prometheus.Gauge
	pushes  prometheus.Counter
	refused prometheus.Counter
}

func newSuperMetrics(reg prometheus.Registerer) (*superMetrics, error) {
	m := &superMetrics{
		groups: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_gateway_super_groups", Help: "Super-group subjects subscribed (groups with at least one local member session)."}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_super_pushes_total", Help: "Pushes received on super-group subjects (each fanned out to the local member sessions)."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_gateway_super_groups_refused_total", Help: "Super-group memberships of a session beyond max_super_groups, not followed (the client syncs them)."}),
	}
	for _, c := range []prometheus.Collector{m.groups, m.pushes, m.refused} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// joinSuperLocked adds s to the group's local sessions, subscribing the
// group's subject when s is its first. It reports whether it subscribed.
// g.mu is held.
func (g *Gateway) joinSuperLocked(s *Session, groupID string) bool {
	if !subjectSafe(groupID) || s.closed.Load() {
		return false
	}
	subj := buswire.SuperSubject(s.info.AppKey, groupID)
	if _, ok := s.supers[subj]; ok {
		return false
	}
	if len(s.supers) >= g.cfg.MaxSuperGroups {
		g.sm.refused.Inc()
		return false
	}
	sg := g.supers[subj]
	fresh := sg == nil
	if fresh {
		sub, err := g.nc.ChanSubscribe(subj, g.pushCh)
		if err != nil {
			g.log.Warn("super-group subscribe", "group", groupID, "err", err)
			return false
		}
		_ = sub.SetPendingLimits(-1, -1)
		sg = &superGroup{sub: sub, sessions: map[*Session]struct{}{}}
		g.supers[subj] = sg
		g.sm.groups.Inc()
	}
	sg.sessions[s] = struct{}{}
	if s.supers == nil {
		s.supers = map[string]struct{}{}
	}
	s.supers[subj] = struct{}{}
	return fresh
}

// leaveSuperLocked removes s from the group of subject subj, unsubscribing
// when it was the last local member. g.mu is held.
func (g *Gateway) leaveSuperLocked(s *Session, subj string) {
	delete(s.supers, subj)
	sg := g.supers[subj]
	if sg == nil {
		return
	}
	delete(sg.sessions, s)
	if len(sg.sessions) == 0 {
		g.dropSuperLocked(subj, sg)
	}
}

func (g *Gateway) dropSuperLocked(subj string, sg *superGroup) {
	_ = sg.sub.Unsubscribe()
	delete(g.supers, subj)
	g.sm.groups.Dec()
}

// superEventLocked applies a SuperEvent pushed on an account's subject to
// the account's sessions here and reports whether it subscribed a group's
// subject. g.mu is held.
func (g *Gateway) superEventLocked(sessions []*Session, body []byte) (subscribed bool) {
	var ev imapi.SuperEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.GroupID == "" {
		return false
	}
	for _, s := range sessions {
		switch ev.Kind {
		case imapi.SuperJoined:
			if g.joinSuperLocked(s, ev.GroupID) {
				subscribed = true
			}
		case imapi.SuperRemoved, imapi.SuperLeft, imapi.SuperDismissed:
			g.leaveSuperLocked(s, buswire.SuperSubject(s.info.AppKey, ev.GroupID))
		}
	}
	return subscribed
}

func isSuperSubject(subj string) bool { return strings.HasPrefix(subj, buswire.SuperSubjectPrefix) }

// dispatchSuper fans one group push out to the local member sessions.
func (g *Gateway) dispatchSuper(subj string, p *buswire.Push) {
	g.sm.pushes.Inc()
	var slow []*Session
	g.mu.Lock()
	sg := g.supers[subj]
	if sg != nil {
		for s := range sg.sessions {
			if s.info.SessionID == p.ExceptSession {
				continue
			}
			if s.t.Push(p.Op, p.Body) {
				g.m.pushDelivered.Inc()
			} else {
				slow = append(slow, s)
			}
		}
		if p.Op == imapi.OpSuperEvent {
			var ev imapi.SuperEvent
			if json.Unmarshal(p.Body, &ev) == nil && ev.Kind == imapi.SuperDismissed {
				for s := range sg.sessions {
					delete(s.supers, subj)
				}
				g.dropSuperLocked(subj, sg)
			}
		}
	}
	g.mu.Unlock()
	for _, s := range slow {
		if g.unregister(s, ReasonSlow, true) {
			g.m.slowConsumers.Inc()
			g.log.Info("slow consumer dropped", "session", s.info.SessionID)
		}
	}
}
