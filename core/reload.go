package core

import (
	"fmt"
	"slices"
	"strings"

	"github.com/longlink/longlink/pkg/config"
)

// Reloadable lists the config keys Reload applies to a running core node:
// the TURN secrets its call service signs credentials with (call.secrets,
// as the LBS's rotation does) and the entry addresses its gateway
// announces for chatroom placement (gateway.advertise; empty: this node's
// bound addresses). Everything else (listeners, the store, the bus, apps
// and their secrets, limits, webhooks, push, routing, the egress, the LBS
// section) applies only at start: a node is replaced, not edited, and
// gateways move their sessions to its peers while it restarts.
var Reloadable = []string{"call.secrets", "gateway.advertise"}

// Reload validates next and applies its reloadable keys (Reloadable); when
// next changes any other key it refuses, naming each, and changes nothing.
// It returns the keys that changed and were applied.
func (n *Node) Reload(next Config) ([]string, error) {
	next = next.normalized(n.deps.Version)
	if err := next.Validate(); err != nil {
		return nil, fmt.Errorf("core: reload: %w", err)
	}
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	applied, err := config.ReloadPlan(*n.live.Load(), next, Reloadable)
	if err != nil {
		return nil, fmt.Errorf("core: reload: %w", err)
	}
	has := func(key string) bool {
		return slices.ContainsFunc(applied, func(k string) bool { return config.KeyUnder(k, []string{key}) })
	}
	if has("call.secrets") && n.call != nil {
		if err := n.call.SetSecrets(next.Call.Secrets); err != nil {
			return nil, fmt.Errorf("core: reload: call.secrets: %w", err)
		}
	}
	if has("gateway.advertise") && n.gateway != nil {
		addrs := next.Gateway.Advertise
		if len(addrs) == 0 {
			addrs = n.boundAdvertise()
		}
		n.gateway.SetAdvertise(addrs)
	}
	n.live.Store(&next)
	n.log.Info("config reloaded", "applied", strings.Join(applied, ","))
	return applied, nil
}
