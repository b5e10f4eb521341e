package lbs

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/longlink/longlink/lbs/internal/model"
	"github.com/longlink/longlink/lbs/internal/state"
	"github.com/longlink/longlink/lbs/lbsapi"
)

// healthTracker keeps heartbeats in memory and commits only transitions,
// with hysteresis: DownAfter missed intervals to go down, UpAfter good beats
// to come back, and a 0.1 band under the load watermark to leave overload.
type healthTracker struct {
	l     *LBS
	mu    sync.Mutex
	nodes map[string]*nodeBeat
	props chan *state.Command
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

type nodeBeat struct {
	last     time.Time
	good     int
	hb       lbsapi.Heartbeat
	load     float64
	pending  string // state proposed and not yet seen committed
	proposed time.Time
}

func newHealthTracker(l *LBS) *healthTracker {
	return &healthTracker{l: l, nodes: map[string]*nodeBeat{}, props: make(chan *state.Command, 1024), done: make(chan struct{})}
}

func (h *healthTracker) start() {
	h.wg.Add(2)
	go h.sweep()
	go h.proposer()
}

func (h *healthTracker) stop() {
	h.once.Do(func() { close(h.done) })
	h.wg.Wait()
}

func (h *healthTracker) watermark(snap *state.Snapshot) float64 {
	if w := h.l.config().Health.Watermark; w > 0 {
		return w
	}
	if w := snap.State.Doc.Defaults.ShedAt; w > 0 {
		return w
	}
	return 0.9
}

// beat records a heartbeat and returns the committed state of the node.
func (h *healthTracker) beat(hb lbsapi.Heartbeat) string {
	h.l.m.heartbeats.Inc()
	snap := h.l.fsm.Current()
	committed := snap.State.Health[hb.Node]
	capacity := hb.Capacity
	if c, ok := snap.Engine.EntryPoint(hb.Node); ok && capacity == 0 {
		capacity = c.EP.Capacity
	}
	load := hb.CPU
	if capacity > 0 {
		load = max(load, float64(hb.Connections)/float64(capacity))
	}
	h.mu.Lock()
	nb := h.nodes[hb.Node]
	if nb == nil {
		nb = &nodeBeat{}
		h.nodes[hb.Node] = nb
	}
	nb.last, nb.hb, nb.load = time.Now(), hb, load
	nb.good++
	want := ""
	wm := h.watermark(snap)
	switch {
	case committed.State == model.HealthOverloaded && load < wm-0.1:
		want = model.HealthUp
	case committed.State != model.HealthOverloaded && load >= wm:
		want = model.HealthOverloaded
	case (committed.State == "" || committed.State == model.HealthDown) && nb.good >= h.l.config().Health.UpAfter:
		want = model.HealthUp
	case committed.State == model.HealthUp && committed.Owner != h.l.cfg.NodeID && nb.good >= h.l.config().Health.UpAfter:
		want = model.HealthUp // take over ownership: this member now receives the beats
	}
	var cmds []*state.Command
	if want != "" && (nb.pending != want || time.Since(nb.proposed) > 3*time.Second) {
		nb.pending, nb.proposed = want, time.Now()
		cmds = append(cmds, &state.Command{Op: state.OpHealth, ID: hb.Node, Who: "lbs:" + h.l.cfg.NodeID,
			Health: &model.Health{State: want, Since: time.Now().UTC(), Load: load, Owner: h.l.cfg.NodeID, Reason: reasonFor(want, load)}})
	}
	// a node that drained itself and reports again without draining is back
	if who, ok := snap.State.Drained[hb.Node]; ok && !hb.Draining && strings.HasPrefix(who, "node:") {
		cmds = append(cmds, &state.Command{Op: state.OpUndrain, ID: hb.Node, Who: "node:" + hb.Node})
	}
	if hb.Draining {
		if _, ok := snap.State.Drained[hb.Node]; !ok {
			cmds = append(cmds, &state.Command{Op: state.OpDrain, ID: hb.Node, Who: "node:" + hb.Node})
		}
	}
	h.mu.Unlock()
	for _, c := range cmds {
		h.enqueue(c)
	}
	return committed.State
}

func reasonFor(s string, load float64) string {
	switch s {
	case model.HealthOverloaded:
		return "load above watermark"
	case model.HealthDown:
		return "missed heartbeats"
	}
	return "heartbeats"
}

func (h *healthTracker) enqueue(c *state.Command) {
	select {
	case h.props <- c:
	default: // full: the next beat or sweep proposes again
	}
}

func (h *healthTracker) proposer() {
	defer h.wg.Done()
	for {
		select {
		case <-h.done:
			return
		case c := <-h.props:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := h.l.propose(ctx, c); err != nil {
				h.l.log.Warn("health transition not committed", "node", c.ID, "op", c.Op, "err", err)
			} else if c.Health != nil {
				h.l.m.transitions.WithLabelValues(c.Health.State).Inc()
			}
			cancel()
		}
	}
}

// sweep marks nodes whose beats this member received down after DownAfter
// missed intervals. Nodes owned by a member that is no longer in the raft
// configuration are marked down by the leader.
func (h *healthTracker) sweep() {
	defer h.wg.Done()
	iv := h.l.cfg.Health.Interval.D()
	t := time.NewTicker(iv / 2)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		snap := h.l.fsm.Current()
		limit := time.Duration(h.l.config().Health.DownAfter) * iv
		var cmds []*state.Command
		h.mu.Lock()
		for id, nb := range h.nodes {
			if time.Since(nb.last) < limit {
				continue
			}
			nb.good = 0
			cur := snap.State.Health[id]
			if cur.State != model.HealthDown && cur.Owner == h.l.cfg.NodeID && (nb.pending != model.HealthDown || time.Since(nb.proposed) > 3*time.Second) {
				nb.pending, nb.proposed = model.HealthDown, time.Now()
				cmds = append(cmds, &state.Command{Op: state.OpHealth, ID: id, Who: "lbs:" + h.l.cfg.NodeID,
					Health: &model.Health{State: model.HealthDown, Since: time.Now().UTC(), Owner: h.l.cfg.NodeID, Reason: "missed heartbeats"}})
			}
			if time.Since(nb.last) > 10*limit {
				delete(h.nodes, id)
			}
		}
		h.mu.Unlock()
		if h.l.cl.IsLeader() {
			members := map[string]bool{}
			for _, s := range h.l.cl.Status().Servers {
				members[s.ID] = true
			}
			for id, hs := range snap.State.Health {
				if hs.State == model.HealthDown || hs.Owner == "" || hs.Owner == h.l.cfg.NodeID {
					continue
				}
				// the member receiving this node's beats left the cluster, or the
				// leader has not reached it for as long as a node may miss
				// beats: nobody vouches for the node any more. A live node moves
				// to another member and comes back up there.
				why := ""
				if !members[hs.Owner] {
					why = "owning LBS member " + hs.Owner + " left"
				} else if h.l.cl.UnreachableFor(hs.Owner) > limit {
					why = "owning LBS member " + hs.Owner + " unreachable"
				}
				if why != "" {
					cmds = append(cmds, &state.Command{Op: state.OpHealth, ID: id, Who: "lbs:" + h.l.cfg.NodeID,
						Health: &model.Health{State: model.HealthDown, Since: time.Now().UTC(), Reason: why}})
				}
			}
		}
		for _, c := range cmds {
			h.enqueue(c)
		}
	}
}

// snapshot of the soft state for the admin API.
type nodeView struct {
	ID          string       `json:"id"`
	Kind        string       `json:"kind"`
	Site        string       `json:"site"`
	Health      model.Health `json:"health"`
	Drained     string       `json:"drained_by,omitempty"`
	LastBeatAgo string       `json:"last_beat_ago,omitempty"` // only on the member receiving its beats
	Connections int          `json:"connections,omitempty"`
	Capacity    int          `json:"capacity,omitempty"`
	CPU         float64      `json:"cpu,omitempty"`
	Load        float64      `json:"load,omitempty"`
	// Version, Labels and Paths are the node's own report (soft state, on
	// the member receiving its beats).
	Version string            `json:"version,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Paths   []lbsapi.Path     `json:"paths,omitempty"`
	// ServiceNodes are the service nodes a gateway hears on the bus.
	ServiceNodes []lbsapi.ServiceNode `json:"service_nodes,omitempty"`
}

func (h *healthTracker) views(snap *state.Snapshot) []nodeView {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []nodeView{}
	for _, ep := range snap.State.Doc.EntryPoints {
		v := nodeView{ID: ep.ID, Kind: ep.Kind, Site: ep.Site, Capacity: ep.Capacity, Health: snap.State.Health[ep.ID], Drained: snap.State.Drained[ep.ID]}
		if nb := h.nodes[ep.ID]; nb != nil {
			v.LastBeatAgo = time.Since(nb.last).Round(time.Millisecond).String()
			v.Connections, v.CPU, v.Load = nb.hb.Connections, nb.hb.CPU, nb.load
			v.Version, v.Labels, v.Paths, v.ServiceNodes = nb.hb.Version, nb.hb.Labels, nb.hb.Paths, nb.hb.ServiceNodes
			if nb.hb.Capacity > 0 {
				v.Capacity = nb.hb.Capacity
			}
		}
		out = append(out, v)
	}
	return out
}
