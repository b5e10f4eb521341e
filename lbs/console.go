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

// siteView is one site with its nodes' ids and how many are up.
type siteView struct {
	Name    string   `json:"name"`
	Nodes   []string `json:"nodes"`
	Up      int      `json:"up"`
	Drained int      `json:"drained"`
}

func (l *LBS) adminCluster(w http.ResponseWriter, r *http.Request, _ principal) {
	snap, ok := l.consistent(w, r)
	if !ok {
		return
	}
	nodes := l.health.views(snap)
	v := clusterView{PolicyVersion: snap.State.Version, RaftIndex: snap.State.Index, At: time.Now().UTC(),
		LBS: l.cl.Status(), Nodes: nodes, Sites: []siteView{}, Topology: append([]model.EdgeUplinks{}, snap.State.Doc.Topology...)}
	v.LBS.Stats = nil
	idx := map[string]int{}
	for _, n := range nodes {
		i, ok := idx[n.Site]
		if !ok {
			i = len(v.Sites)
			idx[n.Site] = i
			v.Sites = append(v.Sites, siteView{Name: n.Site})
		}
		s := &v.Sites[i]
		s.Nodes = append(s.Nodes, n.ID)
		if n.Health.State == model.HealthUp {
			s.Up++
		}
		if n.Drained != "" {
			s.Drained++
		}
	}
	writeJSON(w, http.StatusOK, v)
}
