package lbs

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/longlink/longlink/lbs/internal/state"
	"github.com/longlink/longlink/lbs/lbsapi"
)

// Request routing inside the core, as the LBS sees it: the policy's
// grayscale rules go to every gateway with its heartbeat reply, and each
// gateway reports its appkey → cluster map and the service nodes it hears
// on the bus. Explain joins the two to say which nodes serve an account.

// grayscaleReply is the rule list handed to gateways.
func grayscaleReply(snap *state.Snapshot) *lbsapi.Grayscale {
	rules := snap.State.Doc.Grayscale
	if rules == nil {
		rules = []lbsapi.GrayscaleRule{}
	}
	return &lbsapi.Grayscale{PolicyVersion: snap.State.Version, Rules: rules}
}

// RouteExplain says which service nodes serve an account and why.
type RouteExplain struct {
	Account string `json:"account"`
	SDK     string `json:"sdk,omitempty"`
	// Cluster is the appkey's service cluster as the reporting gateways
	// map it (ClusterWhy names them, and any that disagree).
	Cluster    string `json:"cluster"`
	ClusterWhy string `json:"cluster_why"`
	// Grayscale is the rule that chose the account, if one did; Skipped
	// says why each earlier rule did not.
	Grayscale *lbsapi.GrayscaleMatch `json:"grayscale,omitempty"`
	Skipped   []string               `json:"skipped_rules,omitempty"`
	// Serves names the nodes that take the account's requests, and Nodes
	// lists the live ones.
	Serves string               `json:"serves"`
	Nodes  []lbsapi.ServiceNode `json:"nodes"`
	// ReportedBy are the gateways whose recent heartbeats to this LBS
	// member the answer is built from.
	ReportedBy []string `json:"reported_by"`
}

// gatewayReports are the recent heartbeats of gateways that report their
// routing to this member.
func (h *healthTracker) gatewayReports(fresh time.Duration) []lbsapi.Heartbeat {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []lbsapi.Heartbeat
	for _, nb := range h.nodes {
		if nb.hb.Clusters != nil && time.Since(nb.last) <= fresh {
			out = append(out, nb.hb)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// explainRoute answers for (appkey, account, sdk) from the gateways'
// reports and the policy's grayscale rules.
func (l *LBS) explainRoute(snap *state.Snapshot, appkey, account, sdk string) (*RouteExplain, error) {
	router, err := lbsapi.CompileGrayscale(*grayscaleReply(snap))
	if err != nil {
		return nil, err
	}
	out := &RouteExplain{Account: account, SDK: sdk, Nodes: []lbsapi.ServiceNode{}, ReportedBy: []string{}}
	reports := l.health.gatewayReports(time.Duration(l.cfg.Health.DownAfter) * l.cfg.Health.Interval.D())

	// The cluster, by the gateways' maps ("*" is each one's default).
	byCluster := map[string][]string{}
	nodes := map[string]lbsapi.ServiceNode{}
	for _, hb := range reports {
		out.ReportedBy = append(out.ReportedBy, hb.Node)
		c, ok := hb.Clusters[appkey]
		if !ok {
			c = hb.Clusters["*"]
		}
		byCluster[c] = append(byCluster[c], hb.Node)
		for _, n := range hb.ServiceNodes {
			nodes[n.ID] = n
		}
	}
	switch len(byCluster) {
	case 0:
		out.ClusterWhy = "no gateway reports its routing to this LBS member: nothing to say about service nodes"
		out.Serves = "unknown"
		return out, nil
	case 1:
		for c, gws := range byCluster {
			out.Cluster = c
			out.ClusterWhy = "every reporting gateway maps " + appkey + " to " + c + " (" + strings.Join(gws, ", ") + ")"
		}
	default:
		var parts []string
		most := 0
		for c, gws := range byCluster {
			parts = append(parts, c+": "+strings.Join(gws, ", "))
			if len(gws) > most || len(gws) == most && c < out.Cluster {
				out.Cluster, most = c, len(gws)
			}
		}
		sort.Strings(parts)
		out.ClusterWhy = "the gateways disagree (config drift): " + strings.Join(parts, "; ")
	}

	// Grayscale, then the live nodes of the chosen version or the stable ones.
	m, skipped, chosen := router.Explain(appkey, account, sdk)
	out.Skipped = skipped
	pick := func(keep func(lbsapi.ServiceNode) bool) {
		for _, n := range nodes {
			if n.Cluster == out.Cluster && !n.Draining && keep(n) {
				out.Nodes = append(out.Nodes, n)
			}
		}
		slices.SortFunc(out.Nodes, func(a, b lbsapi.ServiceNode) int { return strings.Compare(a.ID, b.ID) })
	}
	stable := func(n lbsapi.ServiceNode) bool { return !n.Canary }
	if chosen {
		out.Grayscale = &m
		pick(func(n lbsapi.ServiceNode) bool { return n.Version == m.Version })
		if len(out.Nodes) > 0 {
			out.Serves = fmt.Sprintf("version %s nodes of cluster %s (grayscale rule %s: %s)", m.Version, out.Cluster, m.Rule, m.Why)
			return out, nil
		}
		pick(stable)
		out.Serves = fmt.Sprintf("stable nodes of cluster %s: grayscale rule %s chose the account for version %s, which has no live node there (the gateways fall back and count it)",
			out.Cluster, m.Rule, m.Version)
		return out, nil
	}
	pick(stable)
	out.Serves = "stable nodes of cluster " + out.Cluster + " (no grayscale rule chose the account)"
	if len(out.Nodes) == 0 {
		out.Serves += ": none live, requests fail with 503"
	}
	return out, nil
}
