package edge

import (
	"fmt"
	"slices"
	"strings"

	"github.com/longlink/longlink/edge/turn"
	"github.com/longlink/longlink/pkg/config"
)

// Reloadable lists the config keys Reload applies to a running edge: the
// drain period (for the next shutdown), the WebLink first-byte timeout (for
// connections accepted after the reload) and the TURN server's reloadable
// keys (turn.Reloadable under turn.: secrets, peers, quotas, limits,
// timeouts, certificate files). Everything else (listeners, Link
// termination keys, session caps, security, transports, routes — which the
// LBS's topology replaces at runtime — and the LBS section) applies only at
// start.
var Reloadable = append([]string{"drain_period", "limits.first_byte_timeout"}, prefixed("turn.", turn.Reloadable)...)

func prefixed(p string, keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = p + k
	}
	return out
}

// Reload validates next and applies its reloadable keys (Reloadable); when
// next changes any other key it refuses, naming each, and changes nothing.
// It returns the keys that changed and were applied.
func (e *Edge) Reload(next Config) ([]string, error) {
	if err := next.Validate(); err != nil {
		return nil, fmt.Errorf("edge: reload: %w", err)
	}
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	cur := e.live.Load()
	applied, err := config.ReloadPlan(*cur, next, Reloadable)
	if err != nil {
		return nil, fmt.Errorf("edge: reload: %w", err)
	}
	if e.turn != nil && slices.ContainsFunc(applied, func(k string) bool { return strings.HasPrefix(k, "turn.") }) {
		if _, err := e.turn.Reload(next.TURN.Config); err != nil {
			return nil, fmt.Errorf("edge: reload: %w", err)
		}
	}
	e.live.Store(&next)
	e.log.Info("config reloaded", "applied", strings.Join(applied, ","))
	return applied, nil
}
