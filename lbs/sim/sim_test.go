package sim

import (
	"testing"
	"time"
)

// A small world: every policy runs the real engine and RUM table; learning
// from users' reports beats geography alone, and the shares are sane.
func TestRunSmall(t *testing.T) {
	start := time.Now()
	res, err := Run(Options{Users: 20000, PerPrefix: 20, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Policies) != 3 || res.Prefixes != 1000 {
		t.Fatalf("%d policies, %d prefixes", len(res.Policies), res.Prefixes)
	}
	by := map[string]PolicyResult{}
	for _, p := range res.Policies {
		by[p.Policy] = p
		for pass, v := range p.Within {
			if v <= 0 || v > 1 {
				t.Fatalf("%s pass %d: within share %v", p.Policy, pass+1, v)
			}
		}
		if p.RatioP50 < 1 || p.RatioP90 < p.RatioP50 || p.ConnectP50 <= 0 {
			t.Fatalf("%s: ratio p50 %v p90 %v, connect p50 %v", p.Policy, p.RatioP50, p.RatioP90, p.ConnectP50)
		}
	}
	geo, both := by[PolicyGeo], by[PolicyBoth]
	if geo.Steered != 0 || geo.Prefixes != 0 {
		t.Fatalf("geo only learned: steered %v, %d prefixes", geo.Steered, geo.Prefixes)
	}
	if both.Steered == 0 || both.Within[1] < geo.Within[1]+0.02 {
		t.Fatalf("measurements did not help: geo %.3f, both %.3f (steered %.3f)", geo.Within[1], both.Within[1], both.Steered)
	}
	t.Logf("geo %.3f rum %.3f both %.3f in %v", geo.Within[1], by[PolicyRUM].Within[1], both.Within[1], time.Since(start))
}

// The world depends on the seed alone.
func TestWorldDeterministic(t *testing.T) {
	o := Options{Users: 2000, Seed: 3}
	o.defaults()
	a, b := build(o), build(o)
	for i := range a.pfx {
		if a.pfx[i].best != b.pfx[i].best || a.pfx[i].loc != b.pfx[i].loc {
			t.Fatalf("prefix %d differs", i)
		}
	}
}
