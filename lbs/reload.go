package lbs

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/longlink/longlink/pkg/config"
)

// Reloadable config keys: what Reload applies to a running member. Every
// other key is fixed for the life of the process (listeners, raft, TLS,
// DNS sockets, data directory …): a reload that changes one is refused and
// names it.
var reloadable = []string{"admin_token", "reader_token", "node_token", "trusted_proxies",
	"health.watermark", "health.down_after", "health.up_after"}

// live is the part of the configuration that Reload may replace.
type live struct {
	cfg     Config
	trusted []netip.Prefix
}

func newLive(cfg Config) *live {
	lv := &live{cfg: cfg}
	for _, p := range cfg.TrustedProxies {
		lv.trusted = append(lv.trusted, netip.MustParsePrefix(p).Masked())
	}
	return lv
}

// config is the member's current configuration (reloadable keys included).
func (l *LBS) config() *Config { return &l.live.Load().cfg }

// ErrNoReloadSource is returned by ReloadFromSource when the member was
// built without Deps.Reload (no config file to read again).
var ErrNoReloadSource = errors.New("lbs: no config source to reload from")

// Reload validates next and applies its reloadable keys; it refuses, and
// changes nothing, when next changes any other key, naming every such key.
// It returns the reloadable keys whose values changed.
func (l *LBS) Reload(next Config) ([]string, error) {
	if err := next.Validate(); err != nil {
		return nil, fmt.Errorf("lbs: reload: %w", err)
	}
	l.reloadMu.Lock()
	defer l.reloadMu.Unlock()
	cur := l.live.Load().cfg
	applied, err := config.ReloadPlan(cur, next, reloadable)
	if err != nil {
		l.m.reloads.WithLabelValues("refused").Inc()
		return nil, fmt.Errorf("lbs: reload: %w", err)
	}
	if next.MaxRequestBytes <= 0 {
		next.MaxRequestBytes = cur.MaxRequestBytes
	}
	l.live.Store(newLive(next))
	l.m.reloads.WithLabelValues("ok").Inc()
	l.log.Info("config reloaded", "applied", strings.Join(applied, ","))
	return applied, nil
}

// ReloadFromSource reads the configuration again through Deps.Reload (the
// file the member started from) and applies it with Reload.
func (l *LBS) ReloadFromSource() ([]string, error) {
	if l.deps.Reload == nil {
		return nil, ErrNoReloadSource
	}
	next, err := l.deps.Reload()
	if err != nil {
		l.m.reloads.WithLabelValues("refused").Inc()
		return nil, fmt.Errorf("lbs: reload: %w", err)
	}
	return l.Reload(next)
}

func (l *LBS) adminReload(w http.ResponseWriter, r *http.Request, p principal) {
	applied, err := l.ReloadFromSource()
	if errors.Is(err, ErrNoReloadSource) {
		writeErr(w, http.StatusNotImplemented, "this member was started without a config file to reload")
		return
	}
	if err != nil {
		writeErr(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	l.log.Info("config reload requested", "by", p.who)
	if applied == nil {
		applied = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"applied": applied, "reloadable": reloadable})
}
