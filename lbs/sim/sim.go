// Package sim replays Longlink's entry point choice at internet scale, which
// no test machine can run for real: the LBS's own selection (the compiled
// engine of lbs/internal/engine, the real RUM table of lbs/internal/rum),
// the edge's relay path choice and the SDK's staggered racing, over a
// synthetic latency/loss matrix of edges, relays and users drawn from a
// population-weighted world. It reports, per policy (geo only, RUM only,
// both), the share of users whose path ends within 1.2× of the best they
// could have had. tools/reachsim is its command line.
//
// The model (all times are round trips in ms):
//
//   - Metros with a weight (a rough share of internet users) and
//     coordinates. Edges are spread over the metros by weight, relays sit
//     in the biggest hubs, the core in one metro.
//   - Users live in /24 prefixes, each of one ISP and one metro (scattered
//     up to ~300 km around it); a prefix holds about Options.PerPrefix
//     users. A share of prefixes is geolocated to the wrong metro (the
//     geo database's error, Options.Mislocated).
//   - Access leg, prefix → edge: great-circle distance / 100 km per ms
//     (light in fibre, both ways) × a path inflation drawn per (ISP, edge)
//     (1.1–1.8), plus, for a share of (ISP, edge) pairs, a bad peering
//     penalty (Options.BadPeering: +20–150 ms, 1–6 % loss), plus 0.5 %
//     base loss; 2 % of pairs are black holes (attempts never complete).
//     Each user adds its own last mile (lognormal, median 8 ms), the same
//     to every edge.
//   - Backbone, edge → core: direct over the internet (inflation 1.3–2.2,
//     0.1–2 % loss) or through one of the edge's two nearest relays
//     (premium: inflation 1.05–1.25 per leg, 0.05 % loss). The edge takes
//     the path with the lowest effective RTT (what its relay probes
//     measure).
//   - Effective RTT of a leg: RTT + loss × 200 ms on the access leg (TCP's
//     minimum retransmission timeout) and + loss × RTT on tunnel legs
//     (their own retransmission); a user's RTT through an edge is access +
//     backbone. The best possible is the minimum over every edge.
//   - A connect: the SDK races the answer's candidates with a 250 ms
//     stagger (RaceDelay); an attempt takes two access round trips
//     (TCP and the Link handshake), each packet lost with the pair's loss
//     costing 1 s for the SYN and max(200 ms, 2 × RTT) otherwise; a black
//     hole never completes. The first to complete wins and the user stays
//     there. The SDK reports (sampled, Options.ReportShare) the attempts
//     that started: won, lost (the time until the winner, a lower bound)
//     or failed — exactly as core/sdk does — and the reports reach the
//     RUM table in 2 s batches as the LBS proposes them.
//   - Time: every user connects once per pass, in random order, spread over
//     Options.PassDuration of virtual time (the table's half-life applies
//     to it). Pass 1 starts from an empty table; pass 2 is the steady state
//     that the headline figures come from.
package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/longlink/longlink/geo"
	"github.com/longlink/longlink/lbs/internal/engine"
	"github.com/longlink/longlink/lbs/internal/model"
	"github.com/longlink/longlink/lbs/internal/rum"
	"github.com/longlink/longlink/pkg/config"
)

// Options of a run. Zero values take the defaults noted.
type Options struct {
	Users     int // default 1,000,000
	Edges     int // default 100
	Relays    int // default 10
	PerPrefix int // users per /24, default 50
	ISPs      int // default 400
	// BadPeering is the share of (ISP, edge) pairs with a poor path. Default 0.2.
	BadPeering float64
	// Mislocated is the share of prefixes the geo database places in the
	// wrong metro. Default 0.05.
	Mislocated float64
	// ReportShare is the share of connects the SDK reports. Default 1.
	ReportShare float64
	// Count is how many candidates an answer lists. Default 3.
	Count int
	// PassDuration is the virtual time over which every user connects
	// once. Default 20m.
	PassDuration time.Duration
	// Within is the ratio to the best possible RTT that counts as good.
	// Default 1.2.
	Within float64
	Seed   uint64
}

func (o *Options) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Users, 1_000_000)
	def(&o.Edges, 100)
	def(&o.Relays, 10)
	def(&o.PerPrefix, 50)
	def(&o.ISPs, 400)
	def(&o.Count, 3)
	if o.BadPeering == 0 {
		o.BadPeering = 0.2
	}
	if o.Mislocated == 0 {
		o.Mislocated = 0.05
	}
	if o.ReportShare == 0 {
		o.ReportShare = 1
	}
	if o.PassDuration <= 0 {
		o.PassDuration = 20 * time.Minute
	}
	if o.Within == 0 {
		o.Within = 1.2
	}
}

// Policies compared.
const (
	PolicyGeo  = "geo"  // distance order, no measurements (rum.mode off)
	PolicyRUM  = "rum"  // measurements only (geo.ignore_distance)
	PolicyBoth = "both" // distance order, measured candidates reordered
)

// Policies lists them in report order.
var Policies = []string{PolicyGeo, PolicyRUM, PolicyBoth}

// PolicyResult is one policy's outcome.
type PolicyResult struct {
	Policy string
	// Within is the share of users within Options.Within × their best
	// possible RTT, per pass (index 0: learning from nothing, 1: steady).
	Within [2]float64
	// Ratio percentiles of achieved / best RTT in pass 2.
	RatioP50, RatioP90, RatioP99 float64
	// Connect time percentiles (ms, pass 2).
	ConnectP50, ConnectP99 float64
	// Steered is the share of pass-2 answers ordered by measurements.
	Steered float64
	// Prefixes held in the RUM table at the end.
	Prefixes int
	Elapsed  time.Duration
}

// Result of a run.
type Result struct {
	Options  Options
	Prefixes int
	// BestNearest is the share of users whose best edge is also the
	// geographically nearest (by the geo database's location).
	BestNearest float64
	Policies    []PolicyResult
}

type metro struct {
	name     string
	cont     string // continent code
	lat, lon float64
	weight   float64
}

// metros: big internet populations (weights are rough shares of users).
var metros = []metro{
	{"tokyo", "AS", 35.68, 139.69, 5}, {"osaka", "AS", 34.69, 135.50, 2}, {"seoul", "AS", 37.57, 126.98, 3},
	{"beijing", "AS", 39.90, 116.40, 6}, {"shanghai", "AS", 31.23, 121.47, 6}, {"guangzhou", "AS", 23.13, 113.26, 5},
	{"chengdu", "AS", 30.57, 104.07, 3}, {"hongkong", "AS", 22.32, 114.17, 1.5}, {"taipei", "AS", 25.03, 121.57, 1.5},
	{"manila", "AS", 14.60, 120.98, 2.5}, {"hanoi", "AS", 21.03, 105.85, 2}, {"bangkok", "AS", 13.76, 100.50, 2.5},
	{"singapore", "AS", 1.35, 103.82, 1}, {"jakarta", "AS", -6.21, 106.85, 4}, {"kualalumpur", "AS", 3.14, 101.69, 1.5},
	{"mumbai", "AS", 19.08, 72.88, 5}, {"delhi", "AS", 28.70, 77.10, 5}, {"bangalore", "AS", 12.97, 77.59, 3},
	{"karachi", "AS", 24.86, 67.01, 2}, {"dhaka", "AS", 23.81, 90.41, 2}, {"dubai", "AS", 25.20, 55.27, 1.5},
	{"istanbul", "EU", 41.01, 28.98, 2.5}, {"moscow", "EU", 55.76, 37.62, 3}, {"frankfurt", "EU", 50.11, 8.68, 3},
	{"london", "EU", 51.51, -0.13, 3}, {"paris", "EU", 48.86, 2.35, 2.5}, {"madrid", "EU", 40.42, -3.70, 2},
	{"milan", "EU", 45.46, 9.19, 2}, {"warsaw", "EU", 52.23, 21.01, 1.5}, {"stockholm", "EU", 59.33, 18.07, 1},
	{"cairo", "AF", 30.04, 31.24, 2.5}, {"lagos", "AF", 6.52, 3.38, 2.5}, {"nairobi", "AF", -1.29, 36.82, 1.5},
	{"johannesburg", "AF", -26.20, 28.05, 1.5}, {"newyork", "NA", 40.71, -74.01, 4}, {"ashburn", "NA", 39.04, -77.49, 2},
	{"chicago", "NA", 41.88, -87.63, 2.5}, {"dallas", "NA", 32.78, -96.80, 2.5}, {"losangeles", "NA", 34.05, -118.24, 3.5},
	{"sanjose", "NA", 37.34, -121.89, 2}, {"seattle", "NA", 47.61, -122.33, 1.5}, {"toronto", "NA", 43.65, -79.38, 2},
	{"mexicocity", "NA", 19.43, -99.13, 3.5}, {"bogota", "SA", 4.71, -74.07, 2}, {"lima", "SA", -12.05, -77.04, 1.5},
	{"saopaulo", "SA", -23.55, -46.63, 4.5}, {"buenosaires", "SA", -34.60, -58.38, 2}, {"santiago", "SA", -33.45, -70.67, 1.5},
	{"sydney", "OC", -33.87, 151.21, 1.5}, {"melbourne", "OC", -37.81, 144.96, 1},
}

// relayHubs are where relays go (the first Options.Relays of them).
var relayHubs = []string{"hongkong", "singapore", "tokyo", "frankfurt", "london", "ashburn", "sanjose", "mumbai", "saopaulo", "sydney", "dubai", "johannesburg"}

// coreMetro is where the core runs.
const coreMetro = "hongkong"

type node struct {
	lat, lon float64
}

type pathQ struct {
	inflation, extra, loss float64
	blackhole              bool
}

type prefix struct {
	p          netip.Prefix
	isp        int
	lat, lon   float64 // where it is
	loc        geo.Location
	users      int
	best       float64 // best effective RTT over every edge (without the last mile)
	nearestBst bool
}

type world struct {
	o       Options
	edges   []node
	edgeIDs []string
	backEff []float64 // effective RTT edge → core on its chosen path
	pq      []pathQ   // [isp*edges+edge]
	pfx     []prefix
	lastMs  []float32 // per user
	userPfx []int32
	doc     func(policy string) *model.Document
}

func km(a, b node) float64 { return geo.DistanceKm(a.lat, a.lon, b.lat, b.lon) }

// build draws the world; it depends only on o (the seed).
func build(o Options) *world {
	r := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	w := &world{o: o, pq: make([]pathQ, o.ISPs*o.Edges)}
	total := 0.0
	for _, m := range metros {
		total += m.weight
	}
	pick := func() int {
		x := r.Float64() * total
		for i, m := range metros {
			if x -= m.weight; x < 0 {
				return i
			}
		}
		return len(metros) - 1
	}
	// Edges: one per metro first (the biggest first when there are fewer
	// edges than metros), the rest by weight.
	order := make([]int, len(metros))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return int(math.Copysign(1, metros[b].weight-metros[a].weight)) })
	var edgeMetro []int
	for i := 0; i < o.Edges; i++ {
		mi := 0
		if i < len(order) {
			mi = order[i]
		} else {
			mi = pick()
		}
		edgeMetro = append(edgeMetro, mi)
		m := metros[mi]
		w.edges = append(w.edges, node{m.lat + (r.Float64()-0.5)*0.5, m.lon + (r.Float64()-0.5)*0.5})
		w.edgeIDs = append(w.edgeIDs, fmt.Sprintf("edge-%03d-%s", i, m.name))
	}
	byName := map[string]node{}
	for _, m := range metros {
		byName[m.name] = node{m.lat, m.lon}
	}
	var relays []node
	for i := 0; i < o.Relays && i < len(relayHubs); i++ {
		relays = append(relays, byName[relayHubs[i]])
	}
	core := byName[coreMetro]
	// Backbone: direct, or through one of the two nearest relays.
	for _, e := range w.edges {
		direct := km(e, core) / 100 * (1.3 + 0.9*r.Float64())
		best := direct + direct*(0.001+0.019*r.Float64())
		near := slices.Clone(relays)
		slices.SortFunc(near, func(a, b node) int { return int(math.Copysign(1, km(e, a)-km(e, b))) })
		for _, rl := range near[:min(2, len(near))] {
			leg1 := km(e, rl) / 100 * (1.05 + 0.2*r.Float64())
			leg2 := km(rl, core) / 100 * (1.05 + 0.2*r.Float64())
			eff := (leg1 + leg2) * 1.0005
			best = min(best, eff)
		}
		w.backEff = append(w.backEff, best+1) // +1 ms through the edge itself
	}
	// Prefixes and their users.
	np := max(1, o.Users/o.PerPrefix)
	ispMetro := make([]int, o.ISPs)
	for i := range ispMetro {
		ispMetro[i] = pick()
	}
	w.userPfx = make([]int32, o.Users)
	w.lastMs = make([]float32, o.Users)
	for i := 0; i < np; i++ {
		mi := pick()
		m := metros[mi]
		// An ISP serving this metro: one of those homed there, else any.
		isp := r.IntN(o.ISPs)
		for range 8 {
			if ispMetro[isp] == mi {
				break
			}
			isp = r.IntN(o.ISPs)
		}
		d := 300 * math.Sqrt(r.Float64()) // km from the centre
		th := 2 * math.Pi * r.Float64()
		lat := m.lat + d/111*math.Cos(th)
		lon := m.lon + d/(111*math.Max(0.2, math.Cos(m.lat*math.Pi/180)))*math.Sin(th)
		p := prefix{p: netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(10 + i>>16), byte(i >> 8), byte(i), 0}), 24), isp: isp, lat: lat, lon: lon}
		gl, gn, gc := lat, lon, m.cont
		if r.Float64() < o.Mislocated { // the geo database says elsewhere
			wrong := metros[pick()]
			gl, gn, gc = wrong.lat, wrong.lon, wrong.cont
		}
		p.loc = geo.Location{Lat: gl, Lon: gn, Continent: gc, HasCoords: true, Source: "sim"}
		w.pfx = append(w.pfx, p)
	}
	for u := range o.Users {
		pi := u % np
		w.userPfx[u] = int32(pi)
		w.pfx[pi].users++
		w.lastMs[u] = float32(8 * math.Exp(0.6*r.NormFloat64()))
	}
	// Access paths per (ISP, edge), drawn once.
	for isp := range o.ISPs {
		for e := range w.edges {
			q := pathQ{inflation: 1.1 + 0.7*r.Float64(), loss: 0.005}
			if r.Float64() < o.BadPeering {
				q.extra = 20 + 130*r.Float64()
				q.loss += 0.01 + 0.05*r.Float64()
			}
			q.blackhole = r.Float64() < 0.02
			w.pq[isp*o.Edges+e] = q
		}
	}
	// Best possible per prefix, and whether the geo-nearest edge is it.
	for i := range w.pfx {
		p := &w.pfx[i]
		best, bestE := math.Inf(1), -1
		nearE, nearD := -1, math.Inf(1)
		for e := range w.edges {
			if d := geo.DistanceKm(p.loc.Lat, p.loc.Lon, w.edges[e].lat, w.edges[e].lon); d < nearD {
				nearE, nearD = e, d
			}
			if w.pq[p.isp*w.o.Edges+e].blackhole {
				continue
			}
			if v := w.total(p, e); v < best {
				best, bestE = v, e
			}
		}
		p.best = best
		p.nearestBst = bestE == nearE
	}
	w.doc = func(policy string) *model.Document {
		d := &model.Document{Defaults: model.Defaults{Count: o.Count, TTL: config.Duration(30 * time.Second)},
			Apps:  []model.App{{AppKey: "sim", Pools: []string{"world"}}},
			Pools: []model.Pool{{Name: "world", EntryPoints: slices.Clone(w.edgeIDs)}}}
		for i, e := range w.edges {
			d.EntryPoints = append(d.EntryPoints, model.EntryPoint{ID: w.edgeIDs[i], Kind: model.KindEdge,
				Site: metros[edgeMetro[i]].name, Continent: metros[edgeMetro[i]].cont, Lat: e.lat, Lon: e.lon, Link: fmt.Sprintf("192.0.2.%d:7720", i%250+1)})
		}
		// Every policy fences by continent, as an operator with edges on
		// every continent would (and it keeps the engine's work per query
		// to a continent's edges).
		rule := model.Rule{Name: "continent", Match: model.Match{AppKeys: []string{"sim"}}, Pools: []string{"world"},
			Geo: model.Geo{Fence: "continent"}}
		switch policy {
		case PolicyGeo:
			d.RUM.Mode = model.RUMOff
		case PolicyRUM:
			rule.Geo.IgnoreDistance = true
		}
		d.Rules = []model.Rule{rule}
		return d
	}
	return w
}

// access is the access leg's RTT (ms) and loss from prefix p to edge e,
// without the user's last mile.
func (w *world) access(p *prefix, e int) (float64, float64, pathQ) {
	q := w.pq[p.isp*w.o.Edges+e]
	d := geo.DistanceKm(p.lat, p.lon, w.edges[e].lat, w.edges[e].lon)
	return 2 + d/100*q.inflation + q.extra, q.loss, q
}

// total is the effective RTT through edge e (without the last mile).
func (w *world) total(p *prefix, e int) float64 {
	rtt, loss, _ := w.access(p, e)
	return rtt + loss*200 + w.backEff[e]
}

// attempt draws one connect attempt's time to an open session (ms); +Inf
// for a black hole.
func (w *world) attempt(r *rand.Rand, p *prefix, e int, last float64) float64 {
	rtt, loss, q := w.access(p, e)
	if q.blackhole {
		return math.Inf(1)
	}
	rtt += last
	t := 2 * rtt
	// SYN, SYN-ACK: a loss costs the kernel's 1 s initial timeout; the
	// handshake's packets: max(200 ms, 2 RTT).
	for i := range 4 {
		if r.Float64() < loss {
			if i < 2 {
				t += 1000
			} else {
				t += max(200, 2*rtt)
			}
		}
	}
	return t
}

const raceDelay = 250.0 // ms, the SDK's default stagger

// Run simulates every policy on the same world.
func Run(o Options) (Result, error) {
	o.defaults()
	w := build(o)
	res := Result{Options: o, Prefixes: len(w.pfx)}
	nb := 0
	for _, p := range w.pfx {
		if p.nearestBst {
			nb += p.users
		}
	}
	res.BestNearest = float64(nb) / float64(o.Users)
	// The policies share the (read-only) world and run side by side.
	res.Policies = make([]PolicyResult, len(Policies))
	errs := make([]error, len(Policies))
	var wg sync.WaitGroup
	for i, pol := range Policies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.Policies[i], errs[i] = w.run(pol, o.Seed+uint64(i)+1)
		}()
	}
	wg.Wait()
	return res, errors.Join(errs...)
}

func (w *world) run(policy string, seed uint64) (PolicyResult, error) {
	start := time.Now()
	o := w.o
	doc := w.doc(policy)
	if err := doc.Validate(); err != nil {
		return PolicyResult{}, fmt.Errorf("sim policy %s: %w", policy, err)
	}
	eng, err := engine.Compile(doc, nil, 1)
	if err != nil {
		return PolicyResult{}, err
	}
	settings := eng.RUM()
	idx := map[string]int{}
	for i, id := range w.edgeIDs {
		idx[id] = i
	}
	r := rand.New(rand.NewPCG(seed, 0xface))
	table := rum.NewTable()
	acc := rum.NewAccumulator(1 << 20)
	pr := PolicyResult{Policy: policy}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	perUser := o.PassDuration / time.Duration(o.Users)
	const batchEvery = 2 * time.Second
	var ratios, connects []float64
	var measured []engine.Measurement
	order := make([]int32, o.Users)
	for i := range order {
		order[i] = int32(i)
	}
	for pass := range 2 {
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		good, steered := 0, 0
		nextBatch := t0.Add(time.Duration(pass) * o.PassDuration).Add(batchEvery)
		if pass == 1 {
			ratios = make([]float64, 0, o.Users)
			connects = make([]float64, 0, o.Users)
		}
		for k, u := range order {
			now := t0.Add(time.Duration(pass)*o.PassDuration + time.Duration(k)*perUser)
			if !now.Before(nextBatch) {
				if items := acc.Take(); len(items) > 0 {
					table.Apply(nextBatch, &rum.Batch{Items: items}, settings)
				}
				nextBatch = nextBatch.Add(batchEvery)
			}
			p := &w.pfx[w.userPfx[u]]
			req := engine.Request{AppKey: "sim", Client: p.p.Addr().Next(), Loc: p.loc}
			if settings.Mode != model.RUMOff {
				req.MeasuredPrefix = p.p
				measured = table.Lookup(p.p, now, settings.HalfLife.D(), measured[:0])
				req.Measured = measured
			}
			sel, err := eng.Select(&req)
			if err != nil {
				return pr, err
			}
			if sel.Measured {
				steered++
			}
			last := float64(w.lastMs[u])
			// The SDK's race: attempt i starts at i × 250 ms.
			var times [8]float64
			n := min(len(sel.Candidates), len(times))
			win, winAt := -1, math.Inf(1)
			for i := range n {
				times[i] = w.attempt(r, p, idx[sel.Candidates[i].EP.ID], last)
				if at := float64(i)*raceDelay + times[i]; at < winAt {
					win, winAt = i, at
				}
			}
			if win < 0 {
				continue // every candidate a black hole: no session (counts as not good)
			}
			e := idx[sel.Candidates[win].EP.ID]
			got := w.total(p, e) + last
			best := p.best + last
			if got <= o.Within*best {
				good++
			}
			if pass == 1 {
				ratios = append(ratios, got/best)
				connects = append(connects, winAt)
			}
			if settings.Mode == model.RUMOff || r.Float64() >= o.ReportShare {
				continue
			}
			for i := range n {
				startAt := float64(i) * raceDelay
				if startAt >= winAt {
					break // never started
				}
				s := rum.Sample{Prefix: p.p, EP: sel.Candidates[i].EP.ID, OK: true}
				switch {
				case i == win:
					s.Ms = times[i]
				default:
					s.Ms = winAt - startAt // lost: until the winner, a lower bound
				}
				acc.Add(s)
			}
		}
		pr.Within[pass] = float64(good) / float64(o.Users)
		if pass == 1 {
			pr.Steered = float64(steered) / float64(o.Users)
		}
	}
	slices.Sort(ratios)
	slices.Sort(connects)
	pct := func(s []float64, q float64) float64 {
		if len(s) == 0 {
			return math.NaN()
		}
		return s[min(len(s)-1, int(q*float64(len(s))))]
	}
	pr.RatioP50, pr.RatioP90, pr.RatioP99 = pct(ratios, 0.5), pct(ratios, 0.9), pct(ratios, 0.99)
	pr.ConnectP50, pr.ConnectP99 = pct(connects, 0.5), pct(connects, 0.99)
	pr.Prefixes = table.Len()
	pr.Elapsed = time.Since(start)
	return pr, nil
}
