package rum

import (
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/longlink/longlink/lbs/internal/engine"
	"github.com/longlink/longlink/lbs/internal/model"
	"github.com/longlink/longlink/pkg/config"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func settings() model.RUM {
	return model.RUM{HalfLife: config.Duration(time.Minute), MaxPrefixes: 4}.WithDefaults()
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func lookup(tb *Table, p string, now time.Time) map[string]engine.Measurement {
	out := map[string]engine.Measurement{}
	for _, m := range tb.Lookup(pfx(p), now, time.Minute, nil) {
		out[m.EP] = m
	}
	return out
}

func TestPrefix(t *testing.T) {
	s := model.RUM{}.WithDefaults()
	for _, c := range []struct{ ip, want string }{
		{"203.0.113.77", "203.0.113.0/24"},
		{"::ffff:203.0.113.77", "203.0.113.0/24"},
		{"2001:db8:1:2:3::9", "2001:db8:1::/48"},
	} {
		if got := Prefix(s, netip.MustParseAddr(c.ip)); got.String() != c.want {
			t.Errorf("Prefix(%s) = %s, want %s", c.ip, got, c.want)
		}
	}
}

// Samples are summed per (prefix, entry point); their weight halves every
// half-life, so the mean and the success ratio stay what was measured while
// the sample count fades.
func TestTableDecay(t *testing.T) {
	tb := NewTable()
	s := settings()
	tb.Apply(t0, &Batch{Items: []Item{
		{Prefix: pfx("203.0.113.0/24"), EP: "near", OK: 3, Fail: 1, SumMs: 900},
		{Prefix: pfx("203.0.113.0/24"), EP: "far", OK: 4, SumMs: 160},
	}}, s)
	got := lookup(tb, "203.0.113.0/24", t0)
	if m := got["near"]; m.Ms != 300 || m.Success != 0.75 || m.Samples != 4 {
		t.Fatalf("near: %+v, want 300 ms, 0.75, 4 samples", m)
	}
	if m := got["far"]; m.Ms != 40 || m.Success != 1 || m.Samples != 4 {
		t.Fatalf("far: %+v", m)
	}
	later := lookup(tb, "203.0.113.0/24", t0.Add(2*time.Minute))
	if m := later["far"]; math.Abs(m.Samples-1) > 1e-9 || m.Ms != 40 {
		t.Fatalf("after two half-lives: %+v, want 1 sample at 40 ms", m)
	}
	// new samples after one half-life count twice as much as the old ones
	tb.Apply(t0.Add(time.Minute), &Batch{Items: []Item{{Prefix: pfx("203.0.113.0/24"), EP: "far", OK: 2, SumMs: 200}}}, s)
	m := lookup(tb, "203.0.113.0/24", t0.Add(time.Minute))["far"]
	if math.Abs(m.Samples-4) > 1e-9 || math.Abs(m.Ms-(80+200)/4.0) > 1e-9 {
		t.Fatalf("mixed: %+v, want 4 samples at 70 ms", m)
	}
	if len(lookup(tb, "198.51.100.0/24", t0)) != 0 {
		t.Fatal("an unknown prefix has measurements")
	}
}

// The table holds at most max_prefixes prefixes and 16 entry points per
// prefix, and forgets prefixes nobody reported from for 8 half-lives.
func TestTableBounded(t *testing.T) {
	tb := NewTable()
	s := settings()
	for i := range 10 {
		tb.Apply(t0.Add(time.Duration(i)*time.Second), &Batch{Items: []Item{{Prefix: pfx(fmt.Sprintf("10.0.%d.0/24", i)), EP: "a", OK: 1, SumMs: 10}}}, s)
	}
	if tb.Len() != 4 {
		t.Fatalf("%d prefixes, want 4", tb.Len())
	}
	if len(lookup(tb, "10.0.5.0/24", t0)) != 0 || len(lookup(tb, "10.0.9.0/24", t0)) != 1 {
		t.Fatal("not the least recently reported prefixes forgotten")
	}
	var items []Item
	for i := range 20 {
		items = append(items, Item{Prefix: pfx("10.0.9.0/24"), EP: fmt.Sprintf("ep%02d", i), OK: float64(i + 1)})
	}
	tb.Apply(t0.Add(10*time.Second), &Batch{Items: items}, s)
	if got := lookup(tb, "10.0.9.0/24", t0); len(got) != MaxPerPrefix {
		t.Fatalf("%d entry points for a prefix, want %d", len(got), MaxPerPrefix)
	}
	tb.Apply(t0.Add(10*time.Second+9*time.Minute), &Batch{Items: []Item{{Prefix: pfx("10.1.0.0/24"), EP: "a", OK: 1}}}, s)
	if tb.Len() != 1 {
		t.Fatalf("%d prefixes after 9 half-lives, want only the new one", tb.Len())
	}
	// garbage in a batch is skipped, not stored
	tb.Apply(t0.Add(time.Hour), &Batch{Items: []Item{{EP: "a", OK: 1}, {Prefix: pfx("10.2.0.0/24"), OK: 1},
		{Prefix: pfx("10.3.0.0/24"), EP: "a", OK: math.NaN()}, {Prefix: pfx("10.4.0.0/24"), EP: "a", Fail: -1}}}, s)
	if tb.Len() != 0 {
		t.Fatalf("%d prefixes from garbage items", tb.Len())
	}
}

// Members that apply the same batches in the same order hold the same
// table, and a dump loads into the same table (raft snapshots).
func TestTableDeterministicAndDump(t *testing.T) {
	s := settings()
	a, b := NewTable(), NewTable()
	for i := range 50 {
		batch := &Batch{Items: []Item{
			{Prefix: pfx(fmt.Sprintf("10.0.%d.0/24", i%7)), EP: fmt.Sprintf("e%d", i%3), OK: float64(i % 4), Fail: float64(i % 2), SumMs: float64(10 * i)},
		}}
		at := t0.Add(time.Duration(i*i%17) * time.Second) // not monotonic: clocks of members differ
		a.Apply(at, batch, s)
		b.Apply(at, batch, s)
	}
	if !reflect.DeepEqual(a.Dump(), b.Dump()) {
		t.Fatal("same batches, different tables")
	}
	c := NewTable()
	c.Load(a.Dump())
	if !reflect.DeepEqual(a.Dump(), c.Dump()) {
		t.Fatal("a loaded dump differs")
	}
	next := &Batch{Items: []Item{{Prefix: pfx("10.9.0.0/24"), EP: "x", OK: 1}}}
	a.Apply(t0.Add(time.Minute), next, s)
	c.Apply(t0.Add(time.Minute), next, s)
	if !reflect.DeepEqual(a.Dump(), c.Dump()) {
		t.Fatal("a loaded table evolves differently")
	}
}

func TestAccumulator(t *testing.T) {
	a := NewAccumulator(2)
	p := pfx("10.0.0.0/24")
	for _, s := range []Sample{{p, "x", 10, true}, {p, "x", 30, true}, {p, "x", 999, false}, {p, "y", 5, true}} {
		if !a.Add(s) {
			t.Fatalf("refused %+v", s)
		}
	}
	if a.Add(Sample{p, "z", 1, true}) {
		t.Fatal("a third sum accepted beyond the bound of 2")
	}
	got := a.Take()
	want := []Item{{Prefix: p, EP: "x", OK: 2, Fail: 1, SumMs: 40}, {Prefix: p, EP: "y", OK: 1, SumMs: 5}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("took %+v, want %+v", got, want)
	}
	if len(a.Take()) != 0 || !a.Add(Sample{p, "z", 1, true}) {
		t.Fatal("not emptied by Take")
	}
}
