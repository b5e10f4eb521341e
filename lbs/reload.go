package lbs

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
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
	changed := diffKeys("", reflect.ValueOf(cur), reflect.ValueOf(next))
	var applied []string
	var errs config.Errors
	for _, k := range changed {
		if isReloadable(k) {
			applied = append(applied, k)
		} else {
			errs.Addf("%s: changed, and applies only at start: restart this member to change it", k)
		}
	}
	if err := errs.Err(); err != nil {
		l.m.reloads.WithLabelValues("refused").Inc()
		return nil, fmt.Errorf("lbs: reload: %w", err)
	}
	if next.MaxRequestBytes <= 0 {
		next.MaxRequestBytes = cur.MaxRequestBytes
	}
	slices.Sort(applied)
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

func isReloadable(key string) bool {
	for _, r := range reloadable {
		if key == r || strings.HasPrefix(key, r+".") || strings.HasPrefix(key, r+"[") {
			return true
		}
	}
	return false
}

// diffKeys lists the YAML key paths whose values differ between a and b,
// descending into structs (a changed list or map is named as a whole).
func diffKeys(prefix string, a, b reflect.Value) []string {
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return nil
	}
	if a.Kind() != reflect.Struct || hasUnexported(a.Type()) {
		return []string{prefix} // a value (a secret, a list) changed as a whole
	}
	var out []string
	for i := 0; i < a.NumField(); i++ {
		f := a.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if prefix != "" {
			name = prefix + "." + name
		}
		out = append(out, diffKeys(name, a.Field(i), b.Field(i))...)
	}
	return out
}

func hasUnexported(t reflect.Type) bool {
	for i := 0; i < t.NumField(); i++ {
		if !t.Field(i).IsExported() {
			return true
		}
	}
	return false
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
