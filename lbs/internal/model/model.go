// Package model holds the LBS's replicated state: the routing document that
// operators edit (apps, pools, entry points, rules, relay topology) and the
// state the cluster keeps around it (health, TURN secrets, tokens, versions,
// audit log).
package model

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/semver"
)

// Document is the routing configuration an operator applies as one unit with
// `longlink ctl policy apply`. Every apply makes a new policy version.
type Document struct {
	// Description is free text shown in history.
	Description string        `yaml:"description,omitempty" json:"description,omitempty"`
	Defaults    Defaults      `yaml:"defaults,omitempty" json:"defaults"`
	Apps        []App         `yaml:"apps" json:"apps"`
	Pools       []Pool        `yaml:"pools" json:"pools"`
	EntryPoints []EntryPoint  `yaml:"entry_points" json:"entry_points"`
	Rules       []Rule        `yaml:"rules,omitempty" json:"rules,omitempty"`
	Topology    []EdgeUplinks `yaml:"topology,omitempty" json:"topology,omitempty"`
	// Grayscale rules send chosen users' requests to service nodes of a
	// version (lbs/lbsapi/grayscale.go); gateways get them with every
	// heartbeat reply.
	Grayscale []lbsapi.GrayscaleRule `yaml:"grayscale,omitempty" json:"grayscale,omitempty"`
	// RUM is how the LBS learns from what SDKs measure (real-user
	// monitoring): the candidates they raced, each one's connect time and
	// outcome, per client prefix.
	RUM RUM `yaml:"rum,omitempty" json:"rum"`
	// Rotation moves apps to their reserve pools on the edges' attack
	// reports.
	Rotation RotationRule `yaml:"rotation,omitempty" json:"rotation"`
}

// RUM modes.
const (
	RUMSteer   = "steer"   // order measured candidates by what users measured
	RUMObserve = "observe" // learn, and let explain say what steering would do
	RUMOff     = "off"     // refuse reports, order by distance only
)

// RUM configures steering by what users measure. Every member applies the
// same settings (they are part of the replicated document), so every
// member orders a prefix's candidates alike.
type RUM struct {
	// Mode is steer (default), observe or off.
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// MinSamples is how many fresh samples (decayed) an entry point needs
	// from a prefix before its measurement counts. 0 means 3.
	MinSamples float64 `yaml:"min_samples,omitempty" json:"min_samples,omitempty"`
	// HalfLife is how fast samples fade: a sample counts half after one
	// half-life. 0 means 10m.
	HalfLife config.Duration `yaml:"half_life,omitempty" json:"half_life,omitempty"`
	// FailPenalty is added to an entry point's measured connect time per
	// unit of failure ratio (all attempts failed: + FailPenalty). 0 means 3s.
	FailPenalty config.Duration `yaml:"fail_penalty,omitempty" json:"fail_penalty,omitempty"`
	// PrefixV4 and PrefixV6 are the client prefixes samples are pooled
	// by. 0 means 24 and 48.
	PrefixV4 int `yaml:"prefix_v4,omitempty" json:"prefix_v4,omitempty"`
	PrefixV6 int `yaml:"prefix_v6,omitempty" json:"prefix_v6,omitempty"`
	// MaxPrefixes bounds the learned table: past it the prefix heard from
	// longest ago is forgotten. 0 means 65536.
	MaxPrefixes int `yaml:"max_prefixes,omitempty" json:"max_prefixes,omitempty"`
}

// WithDefaults returns the settings with every zero value replaced by its
// default.
func (r RUM) WithDefaults() RUM {
	if r.Mode == "" {
		r.Mode = RUMSteer
	}
	if r.MinSamples == 0 {
		r.MinSamples = 3
	}
	if r.HalfLife == 0 {
		r.HalfLife = config.Duration(10 * time.Minute)
	}
	if r.FailPenalty == 0 {
		r.FailPenalty = config.Duration(3 * time.Second)
	}
	if r.PrefixV4 == 0 {
		r.PrefixV4 = 24
	}
	if r.PrefixV6 == 0 {
		r.PrefixV6 = 48
	}
	if r.MaxPrefixes == 0 {
		r.MaxPrefixes = 65536
	}
	return r
}

// RotationRule rotates an app to its reserve pools when an entry point of
// its pools reports an attack: at least ConnRate client connections
// accepted per second (heartbeat conn_rate). 0 turns it off. Rotating
// back is an operator's decision (ctl app unrotate).
type RotationRule struct {
	ConnRate float64 `yaml:"conn_rate,omitempty" json:"conn_rate,omitempty"`
}

func (r *RUM) validate(errs *config.Errors) {
	if !slices.Contains([]string{"", RUMSteer, RUMObserve, RUMOff}, r.Mode) {
		errs.Addf("rum.mode: %q is not steer, observe or off", r.Mode)
	}
	if r.MinSamples < 0 || r.MinSamples > 1000 {
		errs.Addf("rum.min_samples: %v not in 0..1000", r.MinSamples)
	}
	if d := r.HalfLife.D(); d < 0 || (d > 0 && d < time.Second) || d > 7*24*time.Hour {
		errs.Addf("rum.half_life: %s not in 1s..168h", d)
	}
	if d := r.FailPenalty.D(); d < 0 || d > time.Minute {
		errs.Addf("rum.fail_penalty: %s not in 0..1m", d)
	}
	if r.PrefixV4 < 0 || r.PrefixV4 > 32 || (r.PrefixV4 > 0 && r.PrefixV4 < 8) {
		errs.Addf("rum.prefix_v4: %d not in 8..32", r.PrefixV4)
	}
	if r.PrefixV6 < 0 || r.PrefixV6 > 128 || (r.PrefixV6 > 0 && r.PrefixV6 < 16) {
		errs.Addf("rum.prefix_v6: %d not in 16..128", r.PrefixV6)
	}
	if r.MaxPrefixes < 0 || r.MaxPrefixes > 1<<22 {
		errs.Addf("rum.max_prefixes: %d not in 0..%d", r.MaxPrefixes, 1<<22)
	}
}

// Defaults apply where a rule does not say otherwise.
type Defaults struct {
	// Count is how many candidates an answer lists (before the fallback). 0 means 3.
	Count int `yaml:"count,omitempty" json:"count,omitempty"`
	// TTL is how long clients may cache an answer. 0 means 30s.
	TTL config.Duration `yaml:"ttl,omitempty" json:"ttl,omitempty"`
	// NearKm: candidates within this distance of the nearest one are treated
	// as equally near and ordered by weight or sticky hash. 0 means 500.
	NearKm float64 `yaml:"near_km,omitempty" json:"near_km,omitempty"`
	// ShedAt is the load fraction (0..1] above which an entry point is left
	// out while others have room. 0 means 0.9.
	ShedAt float64 `yaml:"shed_at,omitempty" json:"shed_at,omitempty"`
}

// App is a customer application, identified by its appkey.
type App struct {
	AppKey string `yaml:"appkey" json:"appkey"`
	Name   string `yaml:"name,omitempty" json:"name,omitempty"`
	// Pools are used when no rule matches a request for this app.
	Pools []string `yaml:"pools" json:"pools"`
	// ReservePools are the app's entry pool while it is rotated away
	// from its usual entries (under attack): an operator's `ctl app
	// rotate`, or the policy's rotation rule on the edges' attack
	// reports. While rotated every answer for the app comes from these
	// pools, whatever rule matched, and the fallback is left out (unless
	// a reserve pool lists it).
	ReservePools []string `yaml:"reserve_pools,omitempty" json:"reserve_pools,omitempty"`
	// Fallback is appended to every answer for this app (the app's own
	// default entry point), unless it is already listed.
	Fallback string `yaml:"fallback,omitempty" json:"fallback,omitempty"`
	// SigningSecret, when set, requires SDK queries to carry an HMAC of the
	// request (see lbs/README.md). Accepts file:/path and env:NAME.
	SigningSecret string `yaml:"signing_secret,omitempty" json:"signing_secret,omitempty"`
}

// Pool is a named group of entry points.
type Pool struct {
	Name        string   `yaml:"name" json:"name"`
	EntryPoints []string `yaml:"entry_points" json:"entry_points"`
}

// EntryPoint is an edge or a core gateway that clients connect to.
type EntryPoint struct {
	ID   string `yaml:"id" json:"id"`
	Kind string `yaml:"kind,omitempty" json:"kind,omitempty"` // edge, gateway, relay or egress
	Site string `yaml:"site" json:"site"`
	// Where it is, for distance ordering and geography fences.
	Lat       float64  `yaml:"lat" json:"lat"`
	Lon       float64  `yaml:"lon" json:"lon"`
	Country   string   `yaml:"country,omitempty" json:"country,omitempty"`
	Continent string   `yaml:"continent,omitempty" json:"continent,omitempty"`
	ASNs      []uint32 `yaml:"asns,omitempty" json:"asns,omitempty"`
	// Addresses per protocol. Link and TURN are host:port; WebLink is a URL.
	Link string `yaml:"link,omitempty" json:"link,omitempty"`
	// LinkQUIC is where the entry point takes Link over QUIC (UDP
	// host:port; edge link.quic); SDKs race it against Link.
	LinkQUIC string `yaml:"link_quic,omitempty" json:"link_quic,omitempty"`
	WebLink  string `yaml:"weblink,omitempty" json:"weblink,omitempty"`
	TURN     string `yaml:"turn,omitempty" json:"turn,omitempty"`
	// Capacity in sessions; load is reported relative to it. 0 means unknown.
	Capacity int `yaml:"capacity,omitempty" json:"capacity,omitempty"`
	// Weight for the weighted shuffle. 0 means 100.
	Weight int `yaml:"weight,omitempty" json:"weight,omitempty"`
	// KeyIDs name the server keys clients may expect in the handshake.
	KeyIDs []string `yaml:"key_ids,omitempty" json:"key_ids,omitempty"`
	// Tunnel is where the node's relay tunnel listeners are: required for
	// kinds relay and egress (the core-side egress), which the topology
	// names as an edge's relays and cores.
	Tunnel *Tunnel `yaml:"tunnel,omitempty" json:"tunnel,omitempty"`
}

// Entry point kinds. Relays and egresses carry no clients: they are only
// named by the topology and cannot be in pools or be a fallback.
const (
	KindEdge    = "edge"
	KindGateway = "gateway"
	KindRelay   = "relay"
	KindEgress  = "egress"
)

// Tunnel holds a node's relay tunnel listener addresses, host:port, per
// transport (relay/README.md); at least one is set.
type Tunnel struct {
	QUIC string `yaml:"quic,omitempty" json:"quic,omitempty"`
	KCP  string `yaml:"kcp,omitempty" json:"kcp,omitempty"`
}

// IsTunnelKind reports whether kind names a relay or an egress.
func IsTunnelKind(kind string) bool { return kind == KindRelay || kind == KindEgress }

// Rule sends matching requests to pools. Rules are tried in order; the first
// match wins; with no match the app's pools are used.
type Rule struct {
	Name   string   `yaml:"name" json:"name"`
	Match  Match    `yaml:"match" json:"match"`
	Pools  []string `yaml:"pools" json:"pools"`
	Geo    Geo      `yaml:"geo,omitempty" json:"geo"`
	Select Select   `yaml:"select,omitempty" json:"select"`
}

// Match selects requests; empty fields match everything.
type Match struct {
	AppKeys    []string `yaml:"appkeys,omitempty" json:"appkeys,omitempty"`
	Envs       []string `yaml:"envs,omitempty" json:"envs,omitempty"`
	SDK        string   `yaml:"sdk,omitempty" json:"sdk,omitempty"` // e.g. ">=5.2.0 <5.3.0"
	Platforms  []string `yaml:"platforms,omitempty" json:"platforms,omitempty"`
	Countries  []string `yaml:"countries,omitempty" json:"countries,omitempty"`   // client's
	Continents []string `yaml:"continents,omitempty" json:"continents,omitempty"` // client's
	ASNs       []uint32 `yaml:"asns,omitempty" json:"asns,omitempty"`             // client's
}

// Geo fences candidates to the client's region. Fence is "" (none), "asn",
// "country" or "continent": candidates outside the client's are dropped
// unless none would remain. Candidates are then ordered by great-circle
// distance unless IgnoreDistance is set.
type Geo struct {
	Fence          string `yaml:"fence,omitempty" json:"fence,omitempty"`
	IgnoreDistance bool   `yaml:"ignore_distance,omitempty" json:"ignore_distance,omitempty"`
}

// Select orders and cuts the candidates.
type Select struct {
	// Strategy is "weighted" (default: a weighted shuffle per query) or
	// "sticky" (a client-keyed rendezvous hash, stable across queries).
	Strategy string `yaml:"strategy,omitempty" json:"strategy,omitempty"`
	// Count overrides defaults.count.
	Count int `yaml:"count,omitempty" json:"count,omitempty"`
}

// EdgeUplinks is the relay topology for one edge: the relays and cores it
// may use, in order of preference.
type EdgeUplinks struct {
	Edge   string   `yaml:"edge" json:"edge"`
	Relays []string `yaml:"relays,omitempty" json:"relays,omitempty"`
	Cores  []string `yaml:"cores,omitempty" json:"cores,omitempty"`
}

// Health states of an entry point.
const (
	HealthUp         = "up"
	HealthDown       = "down"
	HealthOverloaded = "overloaded"
	HealthDraining   = "draining"
)

// Health is an entry point's committed health.
type Health struct {
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	// Load is the last reported load fraction at the transition.
	Load float64 `json:"load,omitempty"`
	// Owner is the LBS node that receives the entry point's heartbeats.
	Owner string `json:"owner,omitempty"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidName reports whether s can be an appkey, pool, entry point, site or
// rule name: a DNS label in lower case, so that appkeys fit in DNS names.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Validate checks the document and reports every problem. Each section is
// checked on its own, then its references to the sections before it
// (pools name entry points, apps and rules name pools, …).
func (d *Document) Validate() error {
	var errs config.Errors
	d.Defaults.validate(&errs)
	kinds := validateEntryPoints(&errs, d.EntryPoints)
	pools := validatePools(&errs, d.Pools, kinds)
	apps := validateApps(&errs, d.Apps, pools, kinds)
	validateRules(&errs, d.Rules, pools, apps)
	if err := lbsapi.ValidateGrayscale(d.Grayscale, func(a string) bool { return apps[a] }); err != nil {
		errs = append(errs, err)
	}
	validateTopology(&errs, d.Topology, kinds)
	d.RUM.validate(&errs)
	if d.Rotation.ConnRate < 0 {
		errs.Addf("rotation.conn_rate: negative")
	}
	return errs.Err()
}

func (df *Defaults) validate(errs *config.Errors) {
	if df.Count < 0 || df.Count > 16 {
		errs.Addf("defaults.count: %d not in 0..16", df.Count)
	}
	if df.ShedAt < 0 || df.ShedAt > 1 {
		errs.Addf("defaults.shed_at: %v not in 0..1", df.ShedAt)
	}
	if df.TTL.D() < 0 || df.TTL.D() > time.Hour {
		errs.Addf("defaults.ttl: %s not in 0..1h", df.TTL.D())
	}
	if df.NearKm < 0 {
		errs.Addf("defaults.near_km: negative")
	}
}

// validateEntryPoints checks the entry points and returns their kinds by
// id (every id listed, "" for the default kind).
func validateEntryPoints(errs *config.Errors, eps []EntryPoint) map[string]string {
	kinds := map[string]string{}
	for i := range eps {
		e := &eps[i]
		p := fmt.Sprintf("entry_points[%d]", i)
		if !ValidName(e.ID) {
			errs.Addf("%s.id: %q is not a lower-case DNS label", p, e.ID)
		}
		if _, dup := kinds[e.ID]; dup {
			errs.Addf("%s.id: duplicate %q", p, e.ID)
		}
		kinds[e.ID] = e.Kind
		e.validate(errs, p)
	}
	return kinds
}

// validate checks one entry point (p is its place in the document).
func (e *EntryPoint) validate(errs *config.Errors, p string) {
	if e.Site == "" {
		errs.Addf("%s.site: required", p)
	}
	if e.Kind != "" && e.Kind != KindEdge && e.Kind != KindGateway && !IsTunnelKind(e.Kind) {
		errs.Addf("%s.kind: %q is not edge, gateway, relay or egress", p, e.Kind)
	}
	if IsTunnelKind(e.Kind) && e.Tunnel == nil {
		errs.Addf("%s.tunnel: required for kind %s", p, e.Kind)
	}
	if e.Tunnel != nil {
		e.Tunnel.validate(errs, p+".tunnel")
	}
	if e.Lat < -90 || e.Lat > 90 || e.Lon < -180 || e.Lon > 180 {
		errs.Addf("%s: lat/lon out of range", p)
	}
	if e.Link == "" && e.WebLink == "" && e.TURN == "" && !IsTunnelKind(e.Kind) {
		errs.Addf("%s: needs at least one of link, weblink, turn", p)
	}
	for _, hp := range []struct{ k, v string }{{"link", e.Link}, {"link_quic", e.LinkQUIC}, {"turn", e.TURN}} {
		if hp.v == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(hp.v); err != nil {
			errs.Addf("%s.%s: %v", p, hp.k, err)
		} else if !validPort(port) {
			errs.Addf("%s.%s: bad port %q", p, hp.k, port)
		}
	}
	if e.WebLink != "" {
		if u, err := url.Parse(e.WebLink); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs.Addf("%s.weblink: %q is not an http(s) URL", p, e.WebLink)
		}
	}
	if e.Capacity < 0 || e.Weight < 0 || e.Weight > 10000 {
		errs.Addf("%s: capacity and weight must be >= 0 (weight <= 10000)", p)
	}
}

func (t *Tunnel) validate(errs *config.Errors, p string) {
	if t.QUIC == "" && t.KCP == "" {
		errs.Addf("%s: needs quic or kcp", p)
	}
	for _, hp := range []struct{ k, v string }{{"quic", t.QUIC}, {"kcp", t.KCP}} {
		if hp.v == "" {
			continue
		}
		if host, port, err := net.SplitHostPort(hp.v); err != nil || host == "" {
			errs.Addf("%s.%s: %q is not host:port", p, hp.k, hp.v)
		} else if !validPort(port) {
			errs.Addf("%s.%s: bad port %q", p, hp.k, port)
		}
	}
}

func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n <= 65535
}

// clientEntryPoint reports why id cannot be a client entry point ("" if it
// can): unknown, or a relay or egress.
func clientEntryPoint(kinds map[string]string, id string) string {
	kind, ok := kinds[id]
	switch {
	case !ok:
		return fmt.Sprintf("unknown entry point %q", id)
	case IsTunnelKind(kind):
		return fmt.Sprintf("%q is a %s, not a client entry point", id, kind)
	}
	return ""
}

// validatePools checks the pools and returns their names.
func validatePools(errs *config.Errors, pls []Pool, kinds map[string]string) map[string]bool {
	pools := map[string]bool{}
	for i, pl := range pls {
		p := fmt.Sprintf("pools[%d]", i)
		if !ValidName(pl.Name) {
			errs.Addf("%s.name: %q is not a lower-case DNS label", p, pl.Name)
		}
		if pools[pl.Name] {
			errs.Addf("%s.name: duplicate %q", p, pl.Name)
		}
		pools[pl.Name] = true
		if len(pl.EntryPoints) == 0 {
			errs.Addf("%s.entry_points: empty", p)
		}
		for _, id := range pl.EntryPoints {
			if why := clientEntryPoint(kinds, id); why != "" {
				errs.Addf("%s.entry_points: %s", p, why)
			}
		}
	}
	return pools
}

// validatePoolRefs checks the pools that apps and rules name (at p).
func validatePoolRefs(errs *config.Errors, p string, names []string, pools map[string]bool) {
	if len(names) == 0 {
		errs.Addf("%s.pools: empty", p)
	}
	for _, pl := range names {
		if !pools[pl] {
			errs.Addf("%s.pools: unknown pool %q", p, pl)
		}
	}
}

// validateApps checks the apps and returns their appkeys.
func validateApps(errs *config.Errors, as []App, pools map[string]bool, kinds map[string]string) map[string]bool {
	apps := map[string]bool{}
	for i, a := range as {
		p := fmt.Sprintf("apps[%d]", i)
		if !ValidName(a.AppKey) {
			errs.Addf("%s.appkey: %q is not a lower-case DNS label", p, a.AppKey)
		}
		if apps[a.AppKey] {
			errs.Addf("%s.appkey: duplicate %q", p, a.AppKey)
		}
		apps[a.AppKey] = true
		validatePoolRefs(errs, p, a.Pools, pools)
		for _, pl := range a.ReservePools {
			if !pools[pl] {
				errs.Addf("%s.reserve_pools: unknown pool %q", p, pl)
			}
		}
		if a.Fallback != "" {
			if why := clientEntryPoint(kinds, a.Fallback); why != "" {
				errs.Addf("%s.fallback: %s", p, why)
			}
		}
	}
	return apps
}

func validateRules(errs *config.Errors, rs []Rule, pools, apps map[string]bool) {
	rules := map[string]bool{}
	for i, r := range rs {
		p := fmt.Sprintf("rules[%d]", i)
		if !ValidName(r.Name) || rules[r.Name] {
			errs.Addf("%s.name: %q is not a unique lower-case DNS label", p, r.Name)
		}
		rules[r.Name] = true
		for _, a := range r.Match.AppKeys {
			if !apps[a] {
				errs.Addf("%s.match.appkeys: unknown appkey %q", p, a)
			}
		}
		if r.Match.SDK != "" {
			if _, err := semver.ParseRange(r.Match.SDK); err != nil {
				errs.Addf("%s.match.sdk: %v", p, err)
			}
		}
		validatePoolRefs(errs, p, r.Pools, pools)
		if !slices.Contains([]string{"", "asn", "country", "continent"}, r.Geo.Fence) {
			errs.Addf("%s.geo.fence: %q is not asn, country or continent", p, r.Geo.Fence)
		}
		if r.Select.Strategy != "" && r.Select.Strategy != "weighted" && r.Select.Strategy != "sticky" {
			errs.Addf("%s.select.strategy: %q is not weighted or sticky", p, r.Select.Strategy)
		}
		if r.Select.Count < 0 || r.Select.Count > 16 {
			errs.Addf("%s.select.count: %d not in 0..16", p, r.Select.Count)
		}
	}
}

func validateTopology(errs *config.Errors, ts []EdgeUplinks, kinds map[string]string) {
	edges := map[string]bool{}
	for i, t := range ts {
		if kind, ok := kinds[t.Edge]; !ok {
			errs.Addf("topology[%d].edge: unknown entry point %q", i, t.Edge)
		} else if IsTunnelKind(kind) {
			errs.Addf("topology[%d].edge: %q is a %s", i, t.Edge, kind)
		}
		if edges[t.Edge] {
			errs.Addf("topology[%d].edge: %q listed twice", i, t.Edge)
		}
		edges[t.Edge] = true
		if len(t.Relays) == 0 && len(t.Cores) == 0 {
			errs.Addf("topology[%d]: needs relays or cores", i)
		}
		for _, l := range []struct {
			k, kind string
			ids     []string
		}{{"relays", KindRelay, t.Relays}, {"cores", KindEgress, t.Cores}} {
			for _, id := range l.ids {
				if kinds[id] != l.kind {
					errs.Addf("topology[%d].%s: %q is not an entry point of kind %s", i, l.k, id, l.kind)
				}
			}
		}
	}
}

// HostAddrs returns the IP addresses literally in the entry point's Link
// address (used for DNS A/AAAA answers).
func (e *EntryPoint) HostAddr() (netip.Addr, bool) {
	host := e.Link
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return a, err == nil
}
