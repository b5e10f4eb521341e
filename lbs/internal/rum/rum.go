// Package rum keeps what SDKs measure (real-user monitoring): for each
// client prefix (/24, /48) and entry point, how long users' connection
// attempts took and how many succeeded, fading with a half-life.
//
// Members gather the samples they receive in an Accumulator and propose
// them as one Batch every interval; raft replicates the batch and every
// member applies it to its Table in the same order with the batch's own
// time, so every member holds the same table and a new leader has it
// already. The table is bounded (the prefix heard from longest ago is
// forgotten first) and goes into raft snapshots.
package rum

import (
	"container/list"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/longlink/longlink/lbs/internal/engine"
	"github.com/longlink/longlink/lbs/internal/model"
)

// MaxPerPrefix bounds the entry points a prefix keeps measurements of:
// past it, the one with the fewest samples goes.
const MaxPerPrefix = 16

// Prefix is the prefix a client's samples are pooled under.
func Prefix(s model.RUM, a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := s.PrefixV4
	if a.Is6() {
		bits = s.PrefixV6
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// Sample is one raced attempt as an SDK reported it.
type Sample struct {
	Prefix netip.Prefix
	EP     string
	Ms     float64 // time to an open session, or until another attempt won
	OK     bool    // the attempt opened a session or was still going (not failed)
}

// Item is the sum of one member's samples for a (prefix, entry point)
// during one interval.
type Item struct {
	Prefix netip.Prefix `json:"p"`
	EP     string       `json:"ep"`
	OK     float64      `json:"ok,omitempty"`
	Fail   float64      `json:"fail,omitempty"`
	SumMs  float64      `json:"ms,omitempty"` // over the OK samples
}

// Batch is what a member proposes: its items and the time they were
// taken, which every member uses to decay the table alike.
type Batch struct {
	Items []Item `json:"items"`
}

// Accumulator gathers samples between batches; at most max items (the
// rest are refused and the caller counts them).
type Accumulator struct {
	mu  sync.Mutex
	max int
	m   map[itemKey]*Item
}

type itemKey struct {
	p  netip.Prefix
	ep string
}

// NewAccumulator holds at most max items.
func NewAccumulator(max int) *Accumulator {
	return &Accumulator{max: max, m: map[itemKey]*Item{}}
}

// Add adds a sample; false when the accumulator is full.
func (a *Accumulator) Add(s Sample) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := itemKey{s.Prefix, s.EP}
	it := a.m[k]
	if it == nil {
		if len(a.m) >= a.max {
			return false
		}
		it = &Item{Prefix: s.Prefix, EP: s.EP}
		a.m[k] = it
	}
	if s.OK {
		it.OK++
		it.SumMs += s.Ms
	} else {
		it.Fail++
	}
	return true
}

// Take returns the gathered items (sorted, so a batch reads the same
// however the map iterated) and empties the accumulator.
func (a *Accumulator) Take() []Item {
	a.mu.Lock()
	m := a.m
	a.m = map[itemKey]*Item{}
	a.mu.Unlock()
	out := make([]Item, 0, len(m))
	for _, it := range m {
		out = append(out, *it)
	}
	slices.SortFunc(out, func(x, y Item) int {
		if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
			return c
		}
		if c := x.Prefix.Bits() - y.Prefix.Bits(); c != 0 {
			return c
		}
		return strings.Compare(x.EP, y.EP)
	})
	return out
}

// Stat is one entry point's decayed sums for a prefix.
type Stat struct {
	EP    string  `json:"ep"`
	OK    float64 `json:"ok"`
	Fail  float64 `json:"fail"`
	SumMs float64 `json:"ms"`
}

// Entry is one prefix's measurements, decayed to At.
type Entry struct {
	Prefix netip.Prefix `json:"p"`
	At     time.Time    `json:"at"`
	Stats  []Stat       `json:"stats"`
}

// Table holds the measurements of every prefix. Apply is called by one
// goroutine (raft's); Lookup from any.
type Table struct {
	mu  sync.RWMutex
	m   map[netip.Prefix]*list.Element // of *Entry
	lru list.List                      // front: updated last
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{m: map[netip.Prefix]*list.Element{}}
}

// decay is the factor a sample loses over d.
func decay(d, halfLife time.Duration) float64 {
	if d <= 0 || halfLife <= 0 {
		return 1
	}
	return math.Exp2(-float64(d) / float64(halfLife))
}

// forgetAfter is how many half-lives a prefix nobody reported from is
// kept: 2^-8 of its weight is left by then.
const forgetAfter = 8

// Apply adds a batch taken at `at`. It depends only on its arguments and
// the table, so every member that applies the same batches in the same
// order holds the same table.
func (t *Table) Apply(at time.Time, b *Batch, s model.RUM) {
	hl := s.HalfLife.D()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, it := range b.Items {
		if !it.Prefix.IsValid() || it.EP == "" || it.OK < 0 || it.Fail < 0 || it.SumMs < 0 ||
			math.IsNaN(it.OK+it.Fail+it.SumMs) || math.IsInf(it.OK+it.Fail+it.SumMs, 0) {
			continue
		}
		var e *Entry
		if el, ok := t.m[it.Prefix]; ok {
			e = el.Value.(*Entry)
			t.lru.MoveToFront(el)
		} else {
			e = &Entry{Prefix: it.Prefix, At: at}
			t.m[it.Prefix] = t.lru.PushFront(e)
		}
		if at.After(e.At) {
			f := decay(at.Sub(e.At), hl)
			for i := range e.Stats {
				e.Stats[i].OK *= f
				e.Stats[i].Fail *= f
				e.Stats[i].SumMs *= f
			}
			e.At = at
		}
		i := slices.IndexFunc(e.Stats, func(st Stat) bool { return st.EP == it.EP })
		if i < 0 {
			if len(e.Stats) >= MaxPerPrefix {
				// the least sampled goes (the first of equals: the order
				// is the same on every member)
				j := 0
				for k := range e.Stats {
					if e.Stats[k].OK+e.Stats[k].Fail < e.Stats[j].OK+e.Stats[j].Fail {
						j = k
					}
				}
				e.Stats = slices.Delete(e.Stats, j, j+1)
			}
			e.Stats = append(e.Stats, Stat{EP: it.EP})
			i = len(e.Stats) - 1
		}
		e.Stats[i].OK += it.OK
		e.Stats[i].Fail += it.Fail
		e.Stats[i].SumMs += it.SumMs
	}
	for t.lru.Len() > 0 {
		back := t.lru.Back()
		e := back.Value.(*Entry)
		if t.lru.Len() <= s.MaxPrefixes && at.Sub(e.At) < forgetAfter*hl {
			break
		}
		delete(t.m, e.Prefix)
		t.lru.Remove(back)
	}
}

// Lookup appends the prefix's measurements, decayed to now, to out.
func (t *Table) Lookup(p netip.Prefix, now time.Time, halfLife time.Duration, out []engine.Measurement) []engine.Measurement {
	t.mu.RLock()
	defer t.mu.RUnlock()
	el, ok := t.m[p]
	if !ok {
		return out
	}
	e := el.Value.(*Entry)
	f := decay(now.Sub(e.At), halfLife)
	for _, st := range e.Stats {
		n := st.OK + st.Fail
		if n <= 0 {
			continue
		}
		m := engine.Measurement{EP: st.EP, Success: st.OK / n, Samples: n * f}
		if st.OK > 0 {
			m.Ms = st.SumMs / st.OK
		}
		out = append(out, m)
	}
	return out
}

// Len is the number of prefixes held.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.lru.Len()
}

// Dump copies the table, heard from longest ago first (the order Load
// needs to rebuild the same table).
func (t *Table) Dump() []Entry {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Entry, 0, t.lru.Len())
	for el := t.lru.Back(); el != nil; el = el.Prev() {
		e := el.Value.(*Entry)
		out = append(out, Entry{Prefix: e.Prefix, At: e.At, Stats: slices.Clone(e.Stats)})
	}
	return out
}

// Load replaces the table's contents with a dump.
func (t *Table) Load(entries []Entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m = make(map[netip.Prefix]*list.Element, len(entries))
	t.lru.Init()
	for i := range entries {
		e := entries[i]
		if !e.Prefix.IsValid() {
			continue
		}
		if el, dup := t.m[e.Prefix]; dup {
			t.lru.Remove(el)
		}
		if len(e.Stats) > MaxPerPrefix {
			e.Stats = e.Stats[:MaxPerPrefix]
		}
		t.m[e.Prefix] = t.lru.PushFront(&e)
	}
}
