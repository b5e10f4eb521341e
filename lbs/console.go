package lbs

import (
	"embed"
	"io/fs"
	"net/http"
	"time"

	"github.com/longlink/longlink/lbs/internal/cluster"
	"github.com/longlink/longlink/lbs/internal/model"
)

// console holds the operators' web console: static files, no external
// scripts or styles; every call it makes to the admin API carries the token
// the operator signed in with.
//
//go:embed console
var console embed.FS

func consoleHandler() http.Handler {
	sub, _ := fs.Sub(console, "console")
	files := http.StripPrefix("/console/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The console runs only its own files and talks only to this
		// listener.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

func (l *LBS) adminWhoami(w http.ResponseWriter, _ *http.Request, p principal) {
	writeJSON(w, http.StatusOK, map[string]any{"who": p.who, "kind": p.kind, "lbs_node": l.cfg.NodeID})
}

// clusterView is the console's map in one answer: the LBS members and
// their leader, the sites, every node with its health, load, version and
// paths, the relay topology and the policy version.
type clusterView struct {
	PolicyVersion uint64              `json:"policy_version"`
	RaftIndex     uint64              `json:"raft_index"`
	At            time.Time           `json:"at"`
	LBS           cluster.Status      `json:"lbs"`
	Sites         []siteView          `json:"sites"`
	Nodes         []nodeView          `json:"nodes"`
	Topology      []model.EdgeUplinks `json:"topology"`
}

// siteView is one site: its nodes' ids, how many are up, down and drained,
// and the load of its reporting nodes (connections over capacity).
type siteView struct {
	Name        string   `json:"name"`
	Nodes       []string `json:"nodes"`
	Up          int      `json:"up"`
	Down        int      `json:"down"`
	Drained     int      `json:"drained"`
	Connections int      `json:"connections"`
	Capacity    int      `json:"capacity,omitempty"`
	// Load is Connections over Capacity (0 when no node states a capacity).
	Load float64 `json:"load"`
}

// siteViews groups nodes by site, in the order sites first appear.
func siteViews(nodes []nodeView) []siteView {
	out := []siteView{}
	idx := map[string]int{}
	for _, n := range nodes {
		i, ok := idx[n.Site]
		if !ok {
			i = len(out)
			idx[n.Site] = i
			out = append(out, siteView{Name: n.Site})
		}
		s := &out[i]
		s.Nodes = append(s.Nodes, n.ID)
		switch n.Health.State {
		case model.HealthUp:
			s.Up++
		case model.HealthDown:
			s.Down++
		}
		if n.Drained != "" {
			s.Drained++
		}
		s.Connections += n.Connections
		s.Capacity += n.Capacity
	}
	for i := range out {
		if out[i].Capacity > 0 {
			out[i].Load = float64(out[i].Connections) / float64(out[i].Capacity)
		}
	}
	return out
}

// adminSites lists the sites with their health and load (ctl sites).
func (l *LBS) adminSites(w http.ResponseWriter, r *http.Request, _ principal) {
	snap, ok := l.consistent(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, siteViews(l.health.views(snap)))
}

func (l *LBS) adminCluster(w http.ResponseWriter, r *http.Request, _ principal) {
	snap, ok := l.consistent(w, r)
	if !ok {
		return
	}
	nodes := l.health.views(snap)
	v := clusterView{PolicyVersion: snap.State.Version, RaftIndex: snap.State.Index, At: time.Now().UTC(),
		LBS: l.cl.Status(), Nodes: nodes, Sites: siteViews(nodes), Topology: append([]model.EdgeUplinks{}, snap.State.Doc.Topology...)}
	v.LBS.Stats = nil
	writeJSON(w, http.StatusOK, v)
}
