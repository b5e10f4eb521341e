package core

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// registerNodeInfo exports longlink_core_node_info: 1 with the node's site
// and roles, so that dashboards group every other metric of the process by
// site (a join on the instance) without each component carrying the label.
func registerNodeInfo(reg prometheus.Registerer, c Config) error {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "longlink_core_node_info",
		Help: "1 for a running core node: its site label and the roles it plays.",
	}, []string{"site", "roles"})
	if err := reg.Register(g); err != nil {
		return err
	}
	var roles []string
	for _, r := range []struct {
		on   bool
		name string
	}{{c.Roles.Gateway, "gateway"}, {c.Roles.WebLink, "weblink"}, {c.Roles.ServerAPI, "server_api"},
		{c.Roles.Services, "services"}, {c.Roles.Call, "call"}, {c.Roles.Egress, "egress"}} {
		if r.on {
			roles = append(roles, r.name)
		}
	}
	g.WithLabelValues(c.Site, strings.Join(roles, ",")).Set(1)
	return nil
}
