package relay

import (
	"fmt"
	"slices"
	"strings"

	"github.com/longlink/longlink/pkg/config"
)

// Reloadable lists the config keys Reload applies to a running relay: its
// routes (hops that stay keep their connections; hops that go are closed
// with the flows on them, as an LBS topology change does), the stream
// limit and the header timeout (for streams that open after the reload).
// Everything else (name, site, listeners, security, transports, resume,
// the LBS and egress sections) applies only at start; so does a route
// whose hop needs a transport the relay did not build at start.
var Reloadable = []string{"routing.routes", "max_streams", "header_timeout"}

// Reload validates next and applies its reloadable keys (Reloadable); when
// next changes any other key it refuses, naming each, and changes nothing.
// It returns the keys that changed and were applied.
func (n *Node) Reload(next Config) ([]string, error) {
	if err := next.Validate(); err != nil {
		return nil, fmt.Errorf("relay: reload: %w", err)
	}
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	cur := n.live.Load()
	applied, err := config.ReloadPlan(*cur, next, Reloadable)
	if err != nil {
		return nil, fmt.Errorf("relay: reload: %w", err)
	}
	var errs config.Errors
	for i, rt := range next.Routing.Routes {
		for _, h := range append(slices.Clone(rt.NextHops), rt.directs()...) {
			if n.trs[h.Transport] == nil {
				errs.Addf("routing.routes[%d]: hop %s: transport %s was not built at start: restart to use it", i, h.Name, h.Transport)
			}
		}
	}
	if err := errs.Err(); err != nil {
		return nil, fmt.Errorf("relay: reload: %w", err)
	}
	if slices.ContainsFunc(applied, func(k string) bool { return strings.HasPrefix(k, "routing.routes") }) {
		n.router.SetRoutes(next.Routing.Routes)
	}
	n.live.Store(&next)
	n.log.Info("config reloaded", "applied", strings.Join(applied, ","))
	return applied, nil
}

// ReloadEgress is Reload for a node built with NewEgress.
func (n *Node) ReloadEgress(next EgressConfig) ([]string, error) {
	if err := next.Validate(); err != nil {
		return nil, fmt.Errorf("egress: reload: %w", err)
	}
	return n.Reload(next.node())
}
