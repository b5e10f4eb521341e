// Package route decides where a core node sends an app's requests: to the
// app service cluster of its appkey (dedicated clusters have their own
// subject prefix and their own nodes) and, inside it, to the nodes of the
// version a grayscale rule of the LBS policy chose for the user, or to the
// cluster's stable nodes.
//
// Subjects (built on buswire.ServiceSubject):
//
//	ll.<cluster>.svc.<op>              the cluster's stable nodes
//	ll.<cluster>.v.<version>.svc.<op>  its nodes labelled <version>
//
// Every service node subscribes to its version's subjects; all but canary
// nodes also to the stable ones. A request a rule sends to a version with no
// live node comes back from NATS at once as "no responders": the caller
// sends it again to the stable subject (Fallback), which a canary operator
// expects, and it is counted. A request for a cluster with no live node at
// all fails fast with ErrNoLiveNode's message.
//
// Gateways (Link, WebLink) and the server API front share one Table per
// node; the LBS's heartbeat replies update its grayscale rules
// (SetGrayscale) without a restart.
package route

import (
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/logging"
)

// Config is a node's static routing: which appkeys have a dedicated
// cluster. It must be the same on every gateway and server API front.
type Config struct {
	// DefaultCluster is the shared service cluster. Default "default".
	DefaultCluster string `yaml:"default_cluster"`
	// Clusters maps appkeys to their dedicated service cluster; their
	// requests never go to the default cluster.
	Clusters map[string]string `yaml:"clusters"`
}

// Default returns the single shared cluster.
func Default() Config { return Config{DefaultCluster: buswire.DefaultCluster} }

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs config.Errors
	if !subjectSafe(c.DefaultCluster) {
		errs.Addf("routing.default_cluster: %q: want 1-64 of A-Z a-z 0-9 _ -", c.DefaultCluster)
	}
	for appkey, cl := range c.Clusters {
		if !subjectSafe(appkey) || !subjectSafe(cl) {
			errs.Addf("routing.clusters: %q: %q: appkeys and cluster names want 1-64 of A-Z a-z 0-9 _ -", appkey, cl)
		}
	}
	return errs.Err()
}

func subjectSafe(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Route is where one user's (or app's) requests go.
type Route struct {
	Cluster string
	// Version is the node version a grayscale rule chose ("": the
	// cluster's stable nodes), Rule the rule's name.
	Version string
	Rule    string
}

// Subject is the subject of op's requests on this route.
func (r Route) Subject(op imapi.Op) string {
	if r.Version == "" {
		return buswire.ServiceSubject(r.Cluster, op)
	}
	return VersionSubject(r.Cluster, r.Version, op)
}

// Stable is the route to the cluster's stable nodes.
func (r Route) Stable() Route { return Route{Cluster: r.Cluster} }

// APISubject is where the server API front forwards the app's HTTP
// requests on this route (core/serverapi).
func (r Route) APISubject() string {
	c := r.Cluster
	if r.Version != "" {
		c += ".v." + lbsapi.VersionToken(r.Version)
	}
	return "ll." + c + ".svc.serverapi"
}

// Node is a service node's place in the routing.
type Node struct {
	Cluster string
	// Site is the data centre the node runs in (the core's site label;
	// "": not labelled).
	Site string
	// Version labels the node ("": unlabelled, stable subjects only).
	Version string
	// Canary nodes take only what a grayscale rule sends to their version.
	Canary bool
}

// Validate checks the node's labels.
func (n Node) Validate() error {
	var errs config.Errors
	if n.Version != "" && !lbsapi.ValidVersionLabel(n.Version) {
		errs.Addf("service.version: %q: want 1-32 of A-Z a-z 0-9 . - (starting and ending with a letter or digit)", n.Version)
	}
	if n.Canary && n.Version == "" {
		errs.Addf("service.canary: a canary needs a version (grayscale rules send users to it by version)")
	}
	return errs.Err()
}

// Routes are the routes whose requests the node takes: the cluster's
// stable one unless it is a canary, and its version's.
func (n Node) Routes() []Route {
	var out []Route
	if !n.Canary {
		out = append(out, Route{Cluster: n.Cluster})
	}
	if n.Version != "" {
		out = append(out, Route{Cluster: n.Cluster, Version: n.Version})
	}
	return out
}

// VersionSubject is where a node labelled version takes op's requests.
func VersionSubject(cluster, version string, op imapi.Op) string {
	return buswire.ServiceSubject(cluster+".v."+lbsapi.VersionToken(version), op)
}

// AnyVersionSubject matches op's requests for every version of the
// cluster: a service with no version label of its own (the call service)
// serves grayscale users on it.
func AnyVersionSubject(cluster string, op imapi.Op) string {
	return buswire.ServiceSubject(cluster+".v.*", op)
}

// NoLiveNode is the message of a request that found no live node of its
// cluster (NATS answered "no responders").
func NoLiveNode(cluster string) string {
	return fmt.Sprintf("service cluster %s has no live node", cluster)
}

// Deps are a Table's dependencies.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Table routes requests; safe for concurrent use.
type Table struct {
	cfg  Config
	log  *slog.Logger
	m    *metrics
	gray atomic.Pointer[lbsapi.GrayscaleRouter]
	gen  atomic.Uint64
}

// New validates cfg and builds a table with no grayscale rules.
func New(cfg Config, deps Deps) (*Table, error) {
	if cfg.DefaultCluster == "" {
		cfg.DefaultCluster = Default().DefaultCluster
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	return &Table{cfg: cfg, log: logging.OrDiscard(deps.Logger).With("component", "route"), m: m}, nil
}

// Cluster is the appkey's service cluster.
func (t *Table) Cluster(appkey string) string {
	if c, ok := t.cfg.Clusters[appkey]; ok {
		return c
	}
	return t.cfg.DefaultCluster
}

// ForUser routes the requests of one account's session (sdk: its SDK
// version, "" when unknown).
func (t *Table) ForUser(appkey, account, sdk string) Route {
	r := Route{Cluster: t.Cluster(appkey)}
	if m, ok := t.gray.Load().Match(appkey, account, sdk); ok {
		r.Version, r.Rule = m.Version, m.Rule
	}
	return r
}

// ForApp routes requests made for the app as a whole (the server API).
func (t *Table) ForApp(appkey string) Route {
	r := Route{Cluster: t.Cluster(appkey)}
	if m, ok := t.gray.Load().MatchApp(appkey); ok {
		r.Version, r.Rule = m.Version, m.Rule
	}
	return r
}

// Generation changes whenever the grayscale rules do: a session that cached
// its Route under an older generation routes itself again.
func (t *Table) Generation() uint64 { return t.gen.Load() }

// SetGrayscale replaces the grayscale rules (from the LBS). Rules that do
// not compile are refused and the current ones kept.
func (t *Table) SetGrayscale(g lbsapi.Grayscale) error {
	r, err := lbsapi.CompileGrayscale(g)
	if err != nil {
		t.m.refusedRules.Inc()
		return fmt.Errorf("route: grayscale rules of policy version %d: %w", g.PolicyVersion, err)
	}
	t.gray.Store(r)
	t.gen.Add(1)
	t.m.rules.Set(float64(r.Len()))
	t.m.policyVersion.Set(float64(g.PolicyVersion))
	t.log.Info("grayscale rules applied", "policy_version", g.PolicyVersion, "rules", r.Len())
	return nil
}

// Sent counts a request sent on r.
func (t *Table) Sent(r Route) {
	if r.Version != "" {
		t.m.grayscale.WithLabelValues(r.Version).Inc()
	}
}

// Fallback counts a request that a grayscale rule sent to r.Version, which
// had no live node, re-sent to the stable nodes.
func (t *Table) Fallback(r Route) {
	t.m.fallbacks.WithLabelValues(r.Version).Inc()
}

// NoResponders counts a request that found no live node of its cluster.
func (t *Table) NoResponders(cluster string) {
	t.m.noResponders.WithLabelValues(cluster).Inc()
}

// Clusters is the table's appkey → cluster map with "*" for the default
// (what a gateway reports to the LBS).
func (t *Table) Clusters() map[string]string {
	out := make(map[string]string, len(t.cfg.Clusters)+1)
	for k, v := range t.cfg.Clusters {
		out[k] = v
	}
	out["*"] = t.cfg.DefaultCluster
	return out
}
