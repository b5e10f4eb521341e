package engine

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/geo"
	"github.com/longlink/longlink/lbs/internal/model"
	"github.com/longlink/longlink/pkg/config"
)

func loadDoc(t testing.TB) *model.Document {
	t.Helper()
	b, err := os.ReadFile("testdata/world.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d model.Document
	if err := config.Decode("world.yaml", b, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

var (
	locSG  = geo.Location{Country: "SG", Continent: "AS", Lat: 1.3, Lon: 103.8, HasCoords: true, Source: "db"}
	locDE  = geo.Location{Country: "DE", Continent: "EU", Lat: 50.1, Lon: 8.7, HasCoords: true, Source: "db"}
	locUS  = geo.Location{Country: "US", Continent: "NA", Lat: 37.4, Lon: -122.1, HasCoords: true, Source: "db"}
	locCN  = geo.Location{Country: "CN", Continent: "AS", Lat: 31.2, Lon: 121.5, HasCoords: true, Source: "db"}
	locJP2 = geo.Location{Country: "JP", Continent: "AS", ASN: 2516, Source: "db"}
)

func ids2(cs []*Candidate) []string { return candIDs(cs) }

func TestSelect(t *testing.T) {
	doc := loadDoc(t)
	cases := []struct {
		name    string
		health  map[string]model.Health
		req     Request
		rule    string
		want    []string // exact order when strict, else set
		strict  bool
		first   []string // the first candidate must be one of these
		notWant []string
	}{
		{name: "sg client gets sg edges first, distinct sites, fallback",
			req: Request{AppKey: "demo", Loc: locSG}, rule: "app:demo",
			first: []string{"edge-sg-1", "edge-sg-2"}, notWant: []string{"edge-syd", "edge-usw"}},
		{name: "dedicated pool for acme only",
			req: Request{AppKey: "acme", Loc: locSG}, rule: "acme",
			want: []string{"acme-gw-1", "acme-gw-2", "core-gw"}},
		{name: "canary: beta in range",
			req: Request{AppKey: "demo", Env: "beta", SDK: "5.2.7", Loc: locSG}, rule: "canary",
			want: []string{"canary-sg", "core-gw"}, strict: true},
		{name: "canary: beta out of range",
			req: Request{AppKey: "demo", Env: "beta", SDK: "5.3.0", Loc: locSG}, rule: "app:demo", notWant: []string{"canary-sg"}},
		{name: "canary: right range wrong env",
			req: Request{AppKey: "demo", Env: "prod", SDK: "5.2.1", Loc: locSG}, rule: "app:demo", notWant: []string{"canary-sg"}},
		{name: "canary: pre-release below range",
			req: Request{AppKey: "demo", Env: "beta", SDK: "5.2.0-rc.1", Loc: locSG}, rule: "app:demo", notWant: []string{"canary-sg"}},
		{name: "canary: malformed sdk never matches",
			req: Request{AppKey: "demo", Env: "beta", SDK: "five", Loc: locSG}, rule: "app:demo", notWant: []string{"canary-sg"}},
		{name: "client country rule",
			req: Request{AppKey: "cnapp", Loc: locCN}, rule: "cn-direct", want: []string{"core-gw"}, strict: true},
		{name: "eu fence keeps only EU, count 2",
			req: Request{AppKey: "demo", Loc: locDE}, rule: "eu-fenced", want: []string{"edge-fra", "edge-lon", "core-gw"}},
		{name: "us client nearest us west",
			req: Request{AppKey: "demo", Loc: locUS}, rule: "app:demo", first: []string{"edge-usw"}},
		{name: "unhealthy dropped",
			health: map[string]model.Health{"edge-sg-1": {State: model.HealthDown}, "edge-sg-2": {State: model.HealthDraining}},
			req:    Request{AppKey: "demo", Loc: locSG}, rule: "app:demo", notWant: []string{"edge-sg-1", "edge-sg-2"}, first: []string{"edge-tokyo"}},
		{name: "overloaded shed",
			health: map[string]model.Health{"edge-sg-1": {State: model.HealthOverloaded}},
			req:    Request{AppKey: "demo", Loc: locSG}, rule: "app:demo", first: []string{"edge-sg-2"}, notWant: []string{"edge-sg-1"}},
		{name: "all overloaded: none shed",
			health: map[string]model.Health{"acme-gw-1": {State: model.HealthOverloaded}, "acme-gw-2": {State: model.HealthOverloaded}},
			req:    Request{AppKey: "acme", Loc: locSG}, rule: "acme", want: []string{"acme-gw-1", "acme-gw-2", "core-gw"}},
		{name: "fail open when all down",
			health: map[string]model.Health{"acme-gw-1": {State: model.HealthDown}, "acme-gw-2": {State: model.HealthDown}},
			req:    Request{AppKey: "acme", Loc: locSG}, rule: "acme", want: []string{"acme-gw-1", "acme-gw-2", "core-gw"}},
		{name: "no coordinates still answers",
			req: Request{AppKey: "demo", Loc: geo.Location{Source: "none"}}, rule: "app:demo"},
		{name: "asn-only location",
			req: Request{AppKey: "demo", Loc: locJP2}, rule: "app:demo"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := Compile(doc, c.health, 7)
			if err != nil {
				t.Fatal(err)
			}
			c.req.Explain = true
			res, err := e.Select(&c.req)
			if err != nil {
				t.Fatal(err)
			}
			got := ids2(res.Candidates)
			if res.Rule != c.rule {
				t.Errorf("rule %q, want %q", res.Rule, c.rule)
			}
			if res.Version != 7 || res.TTL != 20*time.Second {
				t.Errorf("version %d ttl %s", res.Version, res.TTL)
			}
			if len(got) == 0 {
				t.Fatal("empty answer")
			}
			if c.want != nil {
				g, w := slices.Clone(got), slices.Clone(c.want)
				if !c.strict {
					sort.Strings(g)
					sort.Strings(w)
				}
				if !slices.Equal(g, w) {
					t.Errorf("got %v, want %v", got, c.want)
				}
			}
			if c.first != nil && !slices.Contains(c.first, got[0]) {
				t.Errorf("first %s, want one of %v (%v)", got[0], c.first, got)
			}
			for _, n := range c.notWant {
				if slices.Contains(got, n) {
					t.Errorf("%s listed: %v", n, got)
				}
			}
			// distinct sites among the non-fallback candidates when enough exist
			sites := map[string]bool{}
			for _, cd := range res.Candidates {
				if cd == res.Fallback {
					continue
				}
				if sites[cd.EP.Site] && len(got) > 2 && res.Rule == "app:demo" {
					t.Errorf("site %s twice: %v", cd.EP.Site, got)
				}
				sites[cd.EP.Site] = true
			}
			if len(res.Steps) < 6 {
				t.Errorf("explain has %d steps", len(res.Steps))
			}
		})
	}
}

func TestUnknownApp(t *testing.T) {
	e, _ := Compile(loadDoc(t), nil, 1)
	if _, err := e.Select(&Request{AppKey: "nope"}); err != ErrUnknownApp {
		t.Fatal(err)
	}
}

func TestSticky(t *testing.T) {
	e, _ := Compile(loadDoc(t), nil, 1)
	first := map[string]int{}
	for i := range 200 {
		req := Request{AppKey: "demo", Loc: geo.Location{Country: "DE", Continent: "EU"}, Client: netip.AddrFrom4([4]byte{9, 9, byte(i), 1})}
		a, _ := e.Select(&req)
		b, _ := e.Select(&req)
		if !slices.Equal(ids2(a.Candidates), ids2(b.Candidates)) {
			t.Fatalf("sticky answers differ: %v %v", ids2(a.Candidates), ids2(b.Candidates))
		}
		first[a.Candidates[0].EP.ID]++
	}
	if first["edge-fra"] < 40 || first["edge-lon"] < 40 {
		t.Fatalf("sticky hash does not spread: %v", first)
	}
}

func TestWeighted(t *testing.T) {
	doc := loadDoc(t)
	for i := range doc.EntryPoints {
		if doc.EntryPoints[i].ID == "edge-sg-1" {
			doc.EntryPoints[i].Weight = 300
		}
	}
	e, _ := Compile(doc, nil, 1)
	n := map[string]int{}
	for range 4000 {
		r, _ := e.Select(&Request{AppKey: "demo", Loc: locSG})
		n[r.Candidates[0].EP.ID]++
	}
	ratio := float64(n["edge-sg-1"]) / float64(n["edge-sg-2"])
	if ratio < 2.4 || ratio > 3.7 {
		t.Fatalf("weight 300:100 gave %v", n)
	}
}

func TestSelectAllocs(t *testing.T) {
	e, _ := Compile(loadDoc(t), nil, 1)
	req := Request{AppKey: "demo", Loc: locSG}
	a := testing.AllocsPerRun(200, func() { e.Select(&req) })
	if a > 2 {
		t.Fatalf("%v allocs per selection", a)
	}
}

// BenchmarkSelect measures one selection with a resolved location and prints
// the p99 as a RESULT line for tools/bench.
func BenchmarkSelect(b *testing.B) {
	e, _ := Compile(loadDoc(b), nil, 1)
	reqs := []Request{{AppKey: "demo", Loc: locSG}, {AppKey: "demo", Loc: locDE}, {AppKey: "demo", Env: "beta", SDK: "5.2.1", Loc: locUS}, {AppKey: "acme", Loc: locCN}}
	lat := make([]time.Duration, 0, b.N)
	i := 0
	for b.Loop() {
		r := &reqs[i%len(reqs)]
		i++
		t0 := time.Now()
		e.Select(r)
		lat = append(lat, time.Since(t0))
	}
	if len(lat) >= 1000 {
		slices.Sort(lat)
		p99 := lat[len(lat)*99/100]
		b.ReportMetric(float64(p99.Nanoseconds())/1000, "p99-µs")
		fmt.Printf("RESULT lbs_selection_p99 %.2f us\nRESULT lbs_selection_p50 %.2f us\n", float64(p99.Nanoseconds())/1000, float64(lat[len(lat)/2].Nanoseconds())/1000)
	}
}

// Candidates that users of the client's prefix measured enough are ordered
// by what they measured, in the places they hold in the distance order;
// the others keep their places (they still get raced, and measured).
func TestSelectMeasured(t *testing.T) {
	m := func(ep string, ms, ok, n float64) Measurement {
		return Measurement{EP: ep, Ms: ms, Success: ok, Samples: n}
	}
	cases := []struct {
		name     string
		mode     string
		measured []Measurement
		first    string
		want     []string // the first three, exactly
		before   [2]string
		steered  bool
		note     string
	}{
		{name: "measured order replaces distance", measured: []Measurement{m("edge-sg-1", 400, 1, 5), m("edge-sg-2", 380, 1, 5), m("edge-tokyo", 60, 1, 5)},
			want: []string{"edge-tokyo", "edge-sg-2", "edge-sg-1"}, steered: true, note: "measured by users in 101.0.0.0/24"},
		{name: "failures cost the penalty", measured: []Measurement{m("edge-sg-1", 400, 1, 5), m("edge-sg-2", 380, 1, 5), m("edge-tokyo", 60, 0.5, 6)},
			want: []string{"edge-sg-2", "edge-sg-1", "edge-tokyo"}, steered: true},
		{name: "too few samples: distance", measured: []Measurement{m("edge-sg-1", 400, 1, 2.9), m("edge-tokyo", 60, 1, 5)},
			first: "edge-sg", note: "fewer than 2 candidates with 3 fresh samples"},
		{name: "unmeasured keep their places", measured: []Measurement{m("edge-sg-1", 400, 1, 5), m("edge-tokyo", 60, 1, 5)},
			before: [2]string{"edge-tokyo", "edge-sg-1"}, steered: true},
		{name: "observe only", mode: model.RUMObserve, measured: []Measurement{m("edge-sg-1", 400, 1, 5), m("edge-sg-2", 380, 1, 5), m("edge-tokyo", 60, 1, 5)},
			first: "edge-sg", note: "would put edge-tokyo, edge-sg-2, edge-sg-1"},
		{name: "off", mode: model.RUMOff, measured: []Measurement{m("edge-sg-1", 400, 1, 5), m("edge-tokyo", 60, 1, 5)},
			first: "edge-sg", note: "off"},
		{name: "nothing measured", first: "edge-sg", note: "no measurements from users in 101.0.0.0/24"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := loadDoc(t)
			doc.RUM.Mode = c.mode
			e, err := Compile(doc, nil, 1)
			if err != nil {
				t.Fatal(err)
			}
			req := Request{AppKey: "demo", Loc: locSG, Measured: c.measured, MeasuredPrefix: netip.MustParsePrefix("101.0.0.0/24"), Explain: true}
			res, err := e.Select(&req)
			if err != nil {
				t.Fatal(err)
			}
			got := ids2(res.Candidates)
			if c.want != nil && !slices.Equal(got[:3], c.want) {
				t.Errorf("got %v, want %v first", got, c.want)
			}
			if c.before[0] != "" && slices.Index(got, c.before[0]) > slices.Index(got, c.before[1]) {
				t.Errorf("got %v, want %s before %s", got, c.before[0], c.before[1])
			}
			if c.first != "" && !strings.HasPrefix(got[0], c.first) {
				t.Errorf("got %v, want %s… first", got, c.first)
			}
			if res.Measured != c.steered {
				t.Errorf("Measured %v, want %v", res.Measured, c.steered)
			}
			var note string
			for _, s := range res.Steps {
				if s.Name == "measured" {
					note = s.Note
				}
			}
			if !strings.Contains(note, c.note) {
				t.Errorf("explain: %q, want it to say %q", note, c.note)
			}
			req.Explain = false
			if a := testing.AllocsPerRun(100, func() { e.Select(&req) }); a > 2 {
				t.Errorf("%v allocs per selection with measurements", a)
			}
		})
	}
}
