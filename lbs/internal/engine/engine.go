// Package engine compiles the routing document into an ordered filter chain
// and runs it for each client query:
//
//	match (appkey, env, SDK range, platform, client region) → pools →
//	healthy only (fail open) → geography fence → shed overloaded →
//	distance tiers ordered by weighted shuffle or sticky hash →
//	first N from distinct sites → the app's fallback appended.
//
// An Engine is immutable once compiled; the LBS swaps in a new one whenever the
// replicated state changes, so queries never take a lock.
package engine

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/longlink/longlink/geo"
	"github.com/longlink/longlink/lbs/internal/model"
	"github.com/longlink/longlink/pkg/semver"
)

// ErrUnknownApp is returned for an appkey the document does not define.
var ErrUnknownApp = errors.New("unknown appkey")

// Candidate is a compiled entry point.
type Candidate struct {
	EP     *model.EntryPoint
	Health string // committed state; "" (never reported) counts as up
	Addr   netip.Addr
	weight float64
	asns   map[uint32]bool
}

// Request is one client query.
type Request struct {
	AppKey   string
	Env      string
	SDK      string // version string; "" matches only rules without an sdk range
	Platform string
	Client   netip.Addr
	Loc      geo.Location
	// StickyKey is hashed for sticky rules; the client address when empty.
	StickyKey string
	// Measured is what SDKs in the client's prefix (MeasuredPrefix)
	// reported about its candidates (rum.Table.Lookup), decayed to now.
	Measured       []Measurement
	MeasuredPrefix netip.Prefix
	// Explain records every step (slower; for operators).
	Explain bool
}

// Measurement is what users of one client prefix measured to one entry
// point: the mean time to an open session of their attempts that
// completed, the share that did, and how many fresh samples that rests on.
type Measurement struct {
	EP      string
	Ms      float64
	Success float64 // 0..1
	Samples float64 // decayed count
}

// Result is the answer to a Request.
type Result struct {
	Candidates []*Candidate // ordered, fallback last if appended
	Fallback   *Candidate   // the app's fallback if it was appended
	Rule       string       // the rule that matched, or "app:<appkey>"
	// Measured is true when the order came from users' measurements
	// (Request.Measured) rather than distance alone.
	Measured bool
	// Rotated is true when the app answers from its reserve pools.
	Rotated bool
	TTL     time.Duration
	Version uint64
	Steps   []Step // only with Request.Explain
}

// Step is one stage of the chain as explain shows it.
type Step struct {
	Name    string    `json:"name"`
	Note    string    `json:"note,omitempty"`
	Kept    []string  `json:"kept,omitempty"`
	Dropped []Dropped `json:"dropped,omitempty"`
}

// Dropped is a candidate a step removed, and why.
type Dropped struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

type rule struct {
	name                 string
	appkeys, envs, plats map[string]bool
	countries, conts     map[string]bool
	asns                 map[uint32]bool
	sdk                  *semver.Range
	sdkText              string
	cands                []*Candidate
	fence                string
	fenceNote            string
	noFenceNote          string
	ignoreDistance       bool
	sticky               bool
	count                int
}

type app struct {
	key      string
	def      *rule
	fallback *Candidate
	secret   string
	reserve  []*Candidate // the reserve pools' entry points
	rotated  string       // why the app answers from its reserve ("" when not)
}

// Engine is a compiled document. Safe for concurrent use.
type Engine struct {
	version uint64
	ttl     time.Duration
	nearKm  float64
	apps    map[string]*app
	rules   []*rule
	byID    map[string]*Candidate
	seed    maphash.Seed
	rum     model.RUM // with defaults
}

func set(ss []string, fold bool) map[string]bool {
	if len(ss) == 0 {
		return nil
	}
	m := make(map[string]bool, len(ss))
	for _, s := range ss {
		if fold {
			s = strings.ToLower(s)
		}
		m[s] = true
	}
	return m
}

// Compile builds an Engine from a validated document and the committed health
// of its entry points.
func Compile(doc *model.Document, health map[string]model.Health, version uint64) (*Engine, error) {
	return CompileRotated(doc, health, nil, version)
}

// CompileRotated is Compile with the apps rotated to their reserve pools
// (appkey → why); an app without reserve pools keeps its entries.
func CompileRotated(doc *model.Document, health map[string]model.Health, rotated map[string]string, version uint64) (*Engine, error) {
	e := &Engine{version: version, ttl: doc.Defaults.TTL.D(), nearKm: doc.Defaults.NearKm,
		apps: map[string]*app{}, byID: map[string]*Candidate{}, seed: maphash.MakeSeed(), rum: doc.RUM.WithDefaults()}
	if e.ttl <= 0 {
		e.ttl = 30 * time.Second
	}
	if e.nearKm <= 0 {
		e.nearKm = 500
	}
	count := doc.Defaults.Count
	if count <= 0 {
		count = 3
	}
	for i := range doc.EntryPoints {
		ep := &doc.EntryPoints[i]
		c := &Candidate{EP: ep, Health: health[ep.ID].State, weight: float64(ep.Weight)}
		if c.weight <= 0 {
			c.weight = 100
		}
		c.Addr, _ = ep.HostAddr()
		if len(ep.ASNs) > 0 {
			c.asns = map[uint32]bool{}
			for _, a := range ep.ASNs {
				c.asns[a] = true
			}
		}
		e.byID[ep.ID] = c
	}
	pools := map[string][]string{}
	for _, p := range doc.Pools {
		pools[p.Name] = p.EntryPoints
	}
	collect := func(names []string) ([]*Candidate, error) {
		var out []*Candidate
		seen := map[string]bool{}
		for _, pn := range names {
			ids, ok := pools[pn]
			if !ok {
				return nil, fmt.Errorf("unknown pool %q", pn)
			}
			for _, id := range ids {
				c, ok := e.byID[id]
				if !ok {
					return nil, fmt.Errorf("pool %s: unknown entry point %q", pn, id)
				}
				if !seen[id] {
					seen[id] = true
					out = append(out, c)
				}
			}
		}
		return out, nil
	}
	for _, r := range doc.Rules {
		cr := &rule{name: r.Name, appkeys: set(r.Match.AppKeys, false), envs: set(r.Match.Envs, true),
			plats: set(r.Match.Platforms, true), countries: set(r.Match.Countries, false),
			conts: set(r.Match.Continents, false), fence: r.Geo.Fence, ignoreDistance: r.Geo.IgnoreDistance,
			sticky: r.Select.Strategy == "sticky", count: r.Select.Count, sdkText: r.Match.SDK}
		if cr.count <= 0 {
			cr.count = count
		}
		cr.fenceNote = "fence " + cr.fence
		cr.noFenceNote = "no candidate in the client's " + cr.fence + ": fence not applied"
		if len(r.Match.ASNs) > 0 {
			cr.asns = map[uint32]bool{}
			for _, a := range r.Match.ASNs {
				cr.asns[a] = true
			}
		}
		if r.Match.SDK != "" {
			rg, err := semver.ParseRange(r.Match.SDK)
			if err != nil {
				return nil, fmt.Errorf("rule %s: %w", r.Name, err)
			}
			cr.sdk = &rg
		}
		var err error
		if cr.cands, err = collect(r.Pools); err != nil {
			return nil, fmt.Errorf("rule %s: %w", r.Name, err)
		}
		e.rules = append(e.rules, cr)
	}
	for _, a := range doc.Apps {
		cands, err := collect(a.Pools)
		if err != nil {
			return nil, fmt.Errorf("app %s: %w", a.AppKey, err)
		}
		ca := &app{key: a.AppKey, secret: a.SigningSecret, def: &rule{name: "app:" + a.AppKey, cands: cands, count: count}}
		if ca.reserve, err = collect(a.ReservePools); err != nil {
			return nil, fmt.Errorf("app %s: reserve: %w", a.AppKey, err)
		}
		if why, ok := rotated[a.AppKey]; ok && len(ca.reserve) > 0 {
			ca.rotated = "rotated to the reserve pools (" + strings.Join(a.ReservePools, ", ") + "): " + why
		}
		if a.Fallback != "" {
			ca.fallback = e.byID[a.Fallback]
		}
		e.apps[a.AppKey] = ca
	}
	return e, nil
}

// Version is the policy version the engine was compiled from.
func (e *Engine) Version() uint64 { return e.version }

// TTL is the answer TTL.
func (e *Engine) TTL() time.Duration { return e.ttl }

// HasApp reports whether appkey is defined.
func (e *Engine) HasApp(appkey string) bool { _, ok := e.apps[appkey]; return ok }

// SigningSecret returns the app's request-signing secret ("" if none).
func (e *Engine) SigningSecret(appkey string) string {
	if a, ok := e.apps[appkey]; ok {
		return a.secret
	}
	return ""
}

// RUM is the policy's steering settings, defaults filled in.
func (e *Engine) RUM() model.RUM { return e.rum }

// EntryPoint returns a compiled entry point by id.
func (e *Engine) EntryPoint(id string) (*Candidate, bool) { c, ok := e.byID[id]; return c, ok }

// matches reports whether the rule applies; the reason is only built when
// explaining, so the hot path does not allocate.
func (r *rule) matches(req *Request, ver *semver.Version, verErr bool) (bool, string) {
	ok := true
	switch {
	case r.appkeys != nil && !r.appkeys[req.AppKey],
		r.envs != nil && !r.envs[strings.ToLower(req.Env)],
		r.plats != nil && !r.plats[strings.ToLower(req.Platform)],
		r.countries != nil && !r.countries[req.Loc.Country],
		r.conts != nil && !r.conts[req.Loc.Continent],
		r.asns != nil && !r.asns[req.Loc.ASN],
		r.sdk != nil && (ver == nil || verErr),
		r.sdk != nil && !r.sdk.Contains(*ver):
		ok = false
	}
	if ok || !req.Explain {
		return ok, ""
	}
	switch {
	case r.appkeys != nil && !r.appkeys[req.AppKey]:
		return false, "appkey not in rule"
	case r.envs != nil && !r.envs[strings.ToLower(req.Env)]:
		return false, fmt.Sprintf("env %q not in rule", req.Env)
	case r.plats != nil && !r.plats[strings.ToLower(req.Platform)]:
		return false, fmt.Sprintf("platform %q not in rule", req.Platform)
	case r.countries != nil && !r.countries[req.Loc.Country]:
		return false, fmt.Sprintf("client country %q not in rule", req.Loc.Country)
	case r.conts != nil && !r.conts[req.Loc.Continent]:
		return false, fmt.Sprintf("client continent %q not in rule", req.Loc.Continent)
	case r.asns != nil && !r.asns[req.Loc.ASN]:
		return false, fmt.Sprintf("client ASN %d not in rule", req.Loc.ASN)
	case ver == nil || verErr:
		return false, fmt.Sprintf("SDK version %q unknown or malformed; rule needs %s", req.SDK, r.sdkText)
	}
	return false, "SDK " + ver.String() + " not in " + r.sdkText
}

type scored struct {
	c    *Candidate
	tier int
	key  float64
	dist float64
}

var scratch = sync.Pool{New: func() any { s := make([]scored, 0, 64); return &s }}

func healthy(c *Candidate) bool {
	return c.Health == "" || c.Health == model.HealthUp || c.Health == model.HealthOverloaded
}

func ids(s []scored) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i].c.EP.ID
	}
	return out
}

// Select runs the chain: each step below narrows or orders the rule's
// candidates and, with req.Explain, says what it did.
func (e *Engine) Select(req *Request) (Result, error) {
	a, ok := e.apps[req.AppKey]
	if !ok {
		return Result{}, ErrUnknownApp
	}
	res := Result{TTL: e.ttl, Version: e.version}
	r := e.match(req, &res, a)

	sp := scratch.Get().(*[]scored)
	defer func() { *sp = (*sp)[:0]; scratch.Put(sp) }()
	cs := (*sp)[:0]
	cands, note := r.cands, "candidates from the rule's pools"
	if a.rotated != "" {
		cands, note = a.reserve, a.rotated
		res.Rotated = true
	}
	for _, c := range cands {
		cs = append(cs, scored{c: c})
	}
	addStep(req, &res, Step{Name: "pools", Note: note, Kept: idsIf(req.Explain, cs)})
	cs = keepHealthy(req, &res, cs)
	if r.fence != "" {
		cs = r.geoFence(req, &res, cs)
	}
	cs = shed(req, &res, cs)
	e.order(req, &res, r, cs)
	out := firstN(req, &res, r, cs)
	res.Candidates = withFallback(req, &res, a, out)
	return res, nil
}

// match (1) finds the first rule that matches the request, else the app's
// own pools.
func (e *Engine) match(req *Request, res *Result, a *app) *rule {
	var ver *semver.Version
	var verv semver.Version
	verErr := false
	if req.SDK != "" {
		var err error
		if verv, err = semver.ParseVersion(req.SDK); err != nil {
			verErr = true
		} else {
			ver = &verv
		}
	}
	r := a.def
	var skipped []Dropped
	for _, cr := range e.rules {
		ok, why := cr.matches(req, ver, verErr)
		if ok {
			r = cr
			break
		}
		if req.Explain {
			skipped = append(skipped, Dropped{ID: "rule " + cr.name, Reason: why})
		}
	}
	res.Rule = r.name
	if req.Explain {
		note := "matched rule " + r.name
		if r == a.def {
			note = "no rule matched; using the app's pools"
		}
		addStep(req, res, Step{Name: "match", Note: fmt.Sprintf("%s (appkey=%s env=%q sdk=%q platform=%q client=%s %s/%s AS%d)",
			note, req.AppKey, req.Env, req.SDK, req.Platform, req.Client, req.Loc.Country, req.Loc.Continent, req.Loc.ASN), Dropped: skipped})
	}
	return r
}

// keepHealthy (2) keeps the healthy candidates, failing open: an answer
// listing unhealthy entry points beats none (draining ones still come last
// through the ordering).
func keepHealthy(req *Request, res *Result, cs []scored) []scored {
	n := 0
	var dropped []Dropped
	for _, s := range cs {
		if healthy(s.c) {
			cs[n] = s
			n++
		} else if req.Explain {
			dropped = append(dropped, Dropped{ID: s.c.EP.ID, Reason: "health " + s.c.Health})
		}
	}
	if n == 0 && len(cs) > 0 {
		addStep(req, res, Step{Name: "healthy", Note: "no healthy candidate: failing open with all of them", Kept: idsIf(req.Explain, cs), Dropped: dropped})
		return cs
	}
	cs = cs[:n]
	addStep(req, res, Step{Name: "healthy", Kept: idsIf(req.Explain, cs), Dropped: dropped})
	return cs
}

// inFence reports whether c is inside the rule's fence around the client.
func (r *rule) inFence(req *Request, c *Candidate) bool {
	switch r.fence {
	case "asn":
		return req.Loc.ASN != 0 && c.asns[req.Loc.ASN]
	case "country":
		return req.Loc.Country != "" && c.EP.Country == req.Loc.Country
	default:
		return req.Loc.Continent != "" && c.EP.Continent == req.Loc.Continent
	}
}

// geoFence (3) keeps the candidates inside the rule's fence, or all of
// them when none is.
func (r *rule) geoFence(req *Request, res *Result, cs []scored) []scored {
	n := 0
	for _, s := range cs {
		if r.inFence(req, s.c) {
			n++
		}
	}
	if n == 0 {
		addStep(req, res, Step{Name: "geo-fence", Note: r.noFenceNote, Kept: idsIf(req.Explain, cs)})
		return cs
	}
	n = 0
	var dropped []Dropped
	for _, s := range cs {
		if r.inFence(req, s.c) {
			cs[n] = s
			n++
		} else if req.Explain {
			dropped = append(dropped, Dropped{ID: s.c.EP.ID, Reason: "outside the client's " + r.fence})
		}
	}
	cs = cs[:n]
	addStep(req, res, Step{Name: "geo-fence", Note: r.fenceNote, Kept: idsIf(req.Explain, cs), Dropped: dropped})
	return cs
}

// shed (4) drops the candidates above their load watermark, unless every
// one is.
func shed(req *Request, res *Result, cs []scored) []scored {
	n := 0
	for _, s := range cs {
		if s.c.Health != model.HealthOverloaded {
			n++
		}
	}
	switch {
	case n == 0:
		addStep(req, res, Step{Name: "shed", Note: "every candidate is above its watermark: none shed", Kept: idsIf(req.Explain, cs)})
	case n < len(cs):
		n = 0
		var dropped []Dropped
		for _, s := range cs {
			if s.c.Health != model.HealthOverloaded {
				cs[n] = s
				n++
			} else if req.Explain {
				dropped = append(dropped, Dropped{ID: s.c.EP.ID, Reason: "load above watermark"})
			}
		}
		cs = cs[:n]
		addStep(req, res, Step{Name: "shed", Kept: idsIf(req.Explain, cs), Dropped: dropped})
	default:
		addStep(req, res, Step{Name: "shed", Note: "none above watermark", Kept: idsIf(req.Explain, cs)})
	}
	return cs
}

// order (5) sorts the candidates by distance tier from the client (when
// its coordinates are known), then by a weighted shuffle or the rule's
// sticky hash within a tier.
func (e *Engine) order(req *Request, res *Result, r *rule, cs []scored) {
	useDist := !r.ignoreDistance && req.Loc.HasCoords
	minD := math.Inf(1)
	if useDist {
		for i := range cs {
			cs[i].dist = geo.DistanceKm(req.Loc.Lat, req.Loc.Lon, cs[i].c.EP.Lat, cs[i].c.EP.Lon)
			minD = min(minD, cs[i].dist)
		}
	}
	var sticky uint64
	if r.sticky {
		k := req.StickyKey
		if k == "" {
			b := req.Client.As16()
			k = string(b[:])
		}
		sticky = maphash.String(e.seed, k)
	}
	for i := range cs {
		s := &cs[i]
		if useDist {
			s.tier = int((s.dist - minD) / e.nearKm)
		}
		if !healthy(s.c) {
			s.tier += 1 << 20 // failing open: unhealthy ones last
		}
		var u float64
		if r.sticky {
			h := maphash.String(e.seed, s.c.EP.ID) ^ sticky
			h ^= h >> 33
			h *= 0xff51afd7ed558ccd
			h ^= h >> 33
			u = (float64(h>>11) + 0.5) / (1 << 53)
		} else {
			u = rand.Float64()
			if u == 0 {
				u = math.SmallestNonzeroFloat64
			}
		}
		// Efraimidis–Spirakis: ascending -ln(u)/w is a weighted shuffle
		s.key = -math.Log(u) / s.c.weight
	}
	slices.SortFunc(cs, func(a, b scored) int {
		if a.tier != b.tier {
			return a.tier - b.tier
		}
		return cmp.Compare(a.key, b.key)
	})
	measuredNote := e.byMeasurement(req, res, cs)
	if req.Explain {
		how := "weighted shuffle"
		if r.sticky {
			how = "sticky hash"
		}
		note := how + "; no client coordinates, distance not used"
		if useDist {
			parts := make([]string, len(cs))
			for i, s := range cs {
				parts[i] = fmt.Sprintf("%s=%.0fkm", s.c.EP.ID, s.dist)
			}
			note = fmt.Sprintf("%s within %.0f km tiers; %s", how, e.nearKm, strings.Join(parts, " "))
		}
		addStep(req, res, Step{Name: "order", Note: note, Kept: ids(cs)})
		addStep(req, res, Step{Name: "measured", Note: measuredNote, Kept: ids(cs)})
	}
}

// measurement returns what users measured to c, if it rests on enough
// fresh samples, counted to one decimal as explain shows them (so that 3
// samples a moment old still count as 3).
func (e *Engine) measurement(req *Request, c *Candidate) (Measurement, bool) {
	for _, m := range req.Measured {
		if m.EP == c.EP.ID {
			return m, math.Round(m.Samples*10)/10 >= e.rum.MinSamples
		}
	}
	return Measurement{}, false
}

// score is a measurement's cost in milliseconds: the mean connect time,
// plus the failure penalty in proportion to the share that failed.
func (e *Engine) score(m Measurement) float64 {
	return m.Ms + (1-m.Success)*float64(e.rum.FailPenalty.D().Milliseconds())
}

// byMeasurement (5b) reorders the healthy candidates that users in the
// client's prefix measured enough, best score first, among the places they
// hold in the distance order; the others keep theirs, so a candidate
// nobody measured yet still gets raced and measured. With mode observe it
// only says what it would do. The note is built only when explaining.
func (e *Engine) byMeasurement(req *Request, res *Result, cs []scored) string {
	if e.rum.Mode == model.RUMOff {
		return "off (rum.mode)"
	}
	if len(req.Measured) == 0 {
		if req.Explain {
			return "no measurements from users in " + prefixText(req.MeasuredPrefix) + ": distance order"
		}
		return ""
	}
	var slots [16]int
	n := 0
	for i := range cs {
		if n == len(slots) {
			break
		}
		if _, ok := e.measurement(req, cs[i].c); ok && healthy(cs[i].c) {
			slots[n] = i
			n++
		}
	}
	if n < 2 {
		if !req.Explain {
			return ""
		}
		return fmt.Sprintf("fewer than 2 candidates with %.0f fresh samples from users in %s (%s): distance order",
			e.rum.MinSamples, prefixText(req.MeasuredPrefix), e.measuredText(req, cs))
	}
	var picked [16]scored
	for i := range n {
		picked[i] = cs[slots[i]]
	}
	slices.SortStableFunc(picked[:n], func(a, b scored) int {
		ma, _ := e.measurement(req, a.c)
		mb, _ := e.measurement(req, b.c)
		return cmp.Compare(e.score(ma), e.score(mb))
	})
	if e.rum.Mode == model.RUMObserve {
		if !req.Explain {
			return ""
		}
		would := make([]string, n)
		for i := range n {
			would[i] = picked[i].c.EP.ID
		}
		return fmt.Sprintf("observe only (rum.mode): measured by users in %s (%s) would put %s in their places",
			prefixText(req.MeasuredPrefix), e.measuredText(req, cs), strings.Join(would, ", "))
	}
	for i := range n {
		cs[slots[i]] = picked[i]
	}
	res.Measured = true
	if !req.Explain {
		return ""
	}
	return fmt.Sprintf("measured by users in %s, best first in the measured candidates' places (%s); others keep their distance places",
		prefixText(req.MeasuredPrefix), e.measuredText(req, cs))
}

// measuredText lists the candidates' measurements for explain.
func (e *Engine) measuredText(req *Request, cs []scored) string {
	var parts []string
	for _, s := range cs {
		for _, m := range req.Measured {
			if m.EP == s.c.EP.ID {
				parts = append(parts, fmt.Sprintf("%s %.0fms %.0f%% ok, %.1f samples, score %.0f", m.EP, m.Ms, 100*m.Success, m.Samples, e.score(m)))
			}
		}
	}
	if len(parts) == 0 {
		return "none of these candidates measured"
	}
	return strings.Join(parts, "; ")
}

func prefixText(p netip.Prefix) string {
	if !p.IsValid() {
		return "the client's prefix"
	}
	return p.String()
}

// firstN (6) takes the rule's count of candidates from distinct sites,
// filled up from repeated sites when that is short.
func firstN(req *Request, res *Result, r *rule, cs []scored) []*Candidate {
	out := make([]*Candidate, 0, r.count+1)
	var sites [16]string
	ns := 0
	for _, s := range cs {
		if len(out) == r.count {
			break
		}
		if slices.Contains(sites[:ns], s.c.EP.Site) {
			continue
		}
		out = append(out, s.c)
		if ns < len(sites) {
			sites[ns] = s.c.EP.Site
			ns++
		}
	}
	if len(out) < r.count {
		for _, s := range cs {
			if len(out) == r.count {
				break
			}
			if !slices.Contains(out, s.c) {
				out = append(out, s.c)
			}
		}
	}
	if req.Explain {
		var dropped []Dropped
		for _, s := range cs {
			if !slices.Contains(out, s.c) {
				dropped = append(dropped, Dropped{ID: s.c.EP.ID, Reason: "beyond the first " + fmt.Sprint(r.count) + " (or its site " + s.c.EP.Site + " already listed)"})
			}
		}
		addStep(req, res, Step{Name: "first-n", Note: fmt.Sprintf("first %d from distinct sites", r.count), Kept: candIDs(out), Dropped: dropped})
	}
	return out
}

// withFallback (7) appends the app's fallback when it is not listed yet.
func withFallback(req *Request, res *Result, a *app, out []*Candidate) []*Candidate {
	if a.rotated != "" {
		addStep(req, res, Step{Name: "fallback", Note: "left out: the app is rotated"})
		return out
	}
	if a.fallback != nil && !slices.Contains(out, a.fallback) {
		out = append(out, a.fallback)
		res.Fallback = a.fallback
		if req.Explain {
			addStep(req, res, Step{Name: "fallback", Note: "appended the app's fallback " + a.fallback.EP.ID})
		}
		return out
	}
	addStep(req, res, Step{Name: "fallback", Note: "none configured or already listed"})
	return out
}

func idsIf(ok bool, s []scored) []string {
	if !ok {
		return nil
	}
	return ids(s)
}

func candIDs(cs []*Candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.EP.ID
	}
	return out
}

func addStep(req *Request, res *Result, s Step) {
	if req.Explain {
		res.Steps = append(res.Steps, s)
	}
}

// Weight is the entry point's effective weight.
func (c *Candidate) Weight() float64 { return c.weight }
