package impair

import (
	"math"
	"sort"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestPerfectLink(t *testing.T) {
	pl := New(Params{}, 1)
	for i := range 1000 {
		now := t0.Add(time.Duration(i) * time.Microsecond)
		at, v := pl.Admit(now, 1500)
		if v != Deliver || !at.Equal(now) {
			t.Fatalf("packet %d: %v at %v, want delivered at %v", i, v, at, now)
		}
	}
}

func TestRandomLossRate(t *testing.T) {
	for _, loss := range []float64{0.001, 0.01, 0.02, 0.1, 0.5} {
		t.Run("", func(t *testing.T) {
			pl := New(Params{Loss: loss}, 7)
			const n = 200000
			lost := 0
			for i := range n {
				if _, v := pl.Admit(t0.Add(time.Duration(i)), 100); v == DropLoss {
					lost++
				}
			}
			got := float64(lost) / n
			// Five standard deviations of a binomial proportion.
			tol := 5 * math.Sqrt(loss*(1-loss)/n)
			if math.Abs(got-loss) > tol {
				t.Fatalf("loss %.4f: measured %.4f, tolerance %.4f", loss, got, tol)
			}
		})
	}
}

func TestGilbertElliottBursts(t *testing.T) {
	tests := []struct {
		name string
		ge   GilbertElliott
	}{
		{"short bursts", GilbertElliott{P: 0.005, R: 0.5, LossBad: 1}},
		{"long bursts", GilbertElliott{P: 0.002, R: 0.1, LossBad: 1}},
		{"bursts of four", GilbertElliott{P: 0.01, R: 0.25, LossBad: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pl := New(Params{Burst: &tc.ge}, 11)
			const n = 1_000_000
			lost, bursts, run := 0, 0, 0
			var lengths []int
			for i := range n {
				_, v := pl.Admit(t0.Add(time.Duration(i)), 100)
				if v == DropLoss {
					lost++
					run++
					continue
				}
				if run > 0 {
					bursts++
					lengths = append(lengths, run)
					run = 0
				}
			}
			rate := float64(lost) / n
			if want := tc.ge.MeanLoss(); math.Abs(rate-want) > 0.15*want {
				t.Errorf("loss rate %.4f, want %.4f ±15%%", rate, want)
			}
			mean := float64(lost) / float64(bursts)
			if want := 1 / tc.ge.R; math.Abs(mean-want) > 0.1*want {
				t.Errorf("mean burst length %.2f packets, want %.2f ±10%%", mean, want)
			}
			// Burst lengths of the model are geometric: P(len >= k) = (1-R)^(k-1).
			k := int(math.Ceil(2 / tc.ge.R))
			longer := 0
			for _, l := range lengths {
				if l >= k {
					longer++
				}
			}
			got := float64(longer) / float64(len(lengths))
			want := math.Pow(1-tc.ge.R, float64(k-1))
			if math.Abs(got-want) > 0.2*want+0.005 {
				t.Errorf("P(burst >= %d) = %.4f, want %.4f", k, got, want)
			}
		})
	}
}

func TestGilbertElliottDiffersFromBernoulli(t *testing.T) {
	// Same mean loss, but losses cluster: the chance that the packet after a
	// lost one is lost too is far above the mean.
	ge := GilbertElliott{P: 0.01, R: 0.3, LossBad: 1}
	pl := New(Params{Burst: &ge}, 3)
	prevLost := false
	afterLoss, afterLossLost := 0, 0
	for i := range 500000 {
		_, v := pl.Admit(t0.Add(time.Duration(i)), 100)
		lost := v == DropLoss
		if prevLost {
			afterLoss++
			if lost {
				afterLossLost++
			}
		}
		prevLost = lost
	}
	cond := float64(afterLossLost) / float64(afterLoss)
	if cond < 10*ge.MeanLoss() {
		t.Fatalf("P(loss | previous lost) = %.3f, mean loss %.3f: losses do not cluster", cond, ge.MeanLoss())
	}
}

func TestDelayAndJitter(t *testing.T) {
	p := Params{Delay: 45 * time.Millisecond, Jitter: 5 * time.Millisecond}
	pl := New(p, 5)
	var delays []time.Duration
	// Packets spaced far apart so that order preservation never kicks in.
	for i := range 20000 {
		now := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		at, v := pl.Admit(now, 1000)
		if v != Deliver {
			t.Fatalf("dropped: %v", v)
		}
		delays = append(delays, at.Sub(now))
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	if lo, hi := delays[0], delays[len(delays)-1]; lo < 40*time.Millisecond || hi > 50*time.Millisecond {
		t.Fatalf("delays span [%v, %v], want within [40ms, 50ms]", lo, hi)
	}
	var sum time.Duration
	for _, d := range delays {
		sum += d
	}
	if mean := sum / time.Duration(len(delays)); mean < 44800*time.Microsecond || mean > 45200*time.Microsecond {
		t.Fatalf("mean delay %v, want 45ms", mean)
	}
	// Uniform: the quartiles sit near 42.5ms and 47.5ms.
	q1, q3 := delays[len(delays)/4], delays[3*len(delays)/4]
	if (q1-42500*time.Microsecond).Abs() > 300*time.Microsecond || (q3-47500*time.Microsecond).Abs() > 300*time.Microsecond {
		t.Fatalf("quartiles %v %v, want 42.5ms 47.5ms", q1, q3)
	}
}

func TestJitterKeepsOrder(t *testing.T) {
	pl := New(Params{Delay: 20 * time.Millisecond, Jitter: 10 * time.Millisecond}, 9)
	var last time.Time
	for i := range 10000 {
		at, _ := pl.Admit(t0.Add(time.Duration(i)*100*time.Microsecond), 100)
		if at.Before(last) {
			t.Fatalf("packet %d delivered before its predecessor", i)
		}
		last = at
	}
}

func TestReorder(t *testing.T) {
	pl := New(Params{Delay: 10 * time.Millisecond, Reorder: 0.05, ReorderDelay: 5 * time.Millisecond}, 13)
	const n = 100000
	var last time.Time
	overtaken := 0
	for i := range n {
		// One packet per millisecond: a packet held 5 ms is overtaken by ~5.
		at, _ := pl.Admit(t0.Add(time.Duration(i)*time.Millisecond), 100)
		if at.Sub(t0.Add(time.Duration(i)*time.Millisecond)) == 15*time.Millisecond {
			overtaken++
		}
		if at.Before(last) {
			t.Fatalf("non-reordered packet %d went backwards", i)
		}
		if at.Sub(t0.Add(time.Duration(i)*time.Millisecond)) == 10*time.Millisecond {
			last = at
		}
	}
	got := float64(overtaken) / n
	if math.Abs(got-0.05) > 0.005 {
		t.Fatalf("reordered fraction %.4f, want 0.05", got)
	}
}

func TestTokenBucketRate(t *testing.T) {
	tests := []struct {
		name string
		rate int64
		size int
	}{
		{"1 Mbit/s", 1_000_000, 1500},
		{"10 Mbit/s", 10_000_000, 1500},
		{"100 Mbit/s small packets", 100_000_000, 200},
		{"1 Gbit/s", 1_000_000_000, 1500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pl := New(Params{RateBits: tc.rate, BucketBytes: 3000, QueueBytes: 1 << 30}, 1)
			// Offer twice the rate for 20000 packets.
			gap := time.Duration(float64(tc.size*8) / float64(tc.rate) / 2 * float64(time.Second))
			var first, lastAt time.Time
			sent := 0
			now := t0
			for range 20000 {
				now = now.Add(gap)
				at, v := pl.Admit(now, tc.size)
				if v != Deliver {
					t.Fatalf("dropped with an unbounded queue")
				}
				if first.IsZero() {
					first = at
				}
				lastAt = at
				sent += tc.size
			}
			got := float64(sent-tc.size) * 8 / lastAt.Sub(first).Seconds()
			if math.Abs(got-float64(tc.rate)) > 0.01*float64(tc.rate) {
				t.Fatalf("rate %.0f bit/s, want %d", got, tc.rate)
			}
		})
	}
}

func TestTokenBucketTailDrop(t *testing.T) {
	const rate = 8_000_000 // 1 MB/s
	const queue = 15000    // ten packets
	pl := New(Params{RateBits: rate, BucketBytes: 1500, QueueBytes: queue}, 1)
	delivered, dropped := 0, 0
	var maxWait time.Duration
	// A burst of 100 packets at one instant: the bucket's one packet plus ten
	// queued ones get through, the rest are tail-dropped.
	for range 100 {
		at, v := pl.Admit(t0, 1500)
		switch v {
		case Deliver:
			delivered++
			maxWait = max(maxWait, at.Sub(t0))
		case DropQueue:
			dropped++
		default:
			t.Fatalf("unexpected %v", v)
		}
	}
	if delivered != 11 || dropped != 89 {
		t.Fatalf("delivered %d dropped %d, want 11 and 89", delivered, dropped)
	}
	// The last queued packet waits for ten packets' worth of tokens: 15 ms.
	if (maxWait - 15*time.Millisecond).Abs() > 10*time.Microsecond {
		t.Fatalf("queueing delay %v, want 15ms", maxWait)
	}
	// Once the queue drains, packets pass again.
	if _, v := pl.Admit(t0.Add(20*time.Millisecond), 1500); v != Deliver {
		t.Fatalf("after drain: %v", v)
	}
}

func TestTokenBucketBurst(t *testing.T) {
	// After idling, a full bucket lets its depth through at once.
	pl := New(Params{RateBits: 8_000_000, BucketBytes: 15000, QueueBytes: 100000}, 1)
	for i := range 10 {
		at, _ := pl.Admit(t0, 1500)
		if !at.Equal(t0) {
			t.Fatalf("packet %d of the burst delayed by %v", i, at.Sub(t0))
		}
	}
	at, _ := pl.Admit(t0, 1500)
	if d := at.Sub(t0); (d - 1500*time.Microsecond).Abs() > time.Microsecond {
		t.Fatalf("packet after the burst delayed %v, want 1.5ms", d)
	}
}

func TestSeedReproducible(t *testing.T) {
	p := Params{Loss: 0.1, Delay: 10 * time.Millisecond, Jitter: 5 * time.Millisecond}
	a, b := New(p, 42), New(p, 42)
	for i := range 1000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		at1, v1 := a.Admit(now, 100)
		at2, v2 := b.Admit(now, 100)
		if v1 != v2 || !at1.Equal(at2) {
			t.Fatalf("packet %d differs between runs with one seed", i)
		}
	}
}

func BenchmarkAdmit(b *testing.B) {
	pl := New(Params{Delay: 10 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.01,
		RateBits: 1e9, QueueBytes: 1 << 20}, 1)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		pl.Admit(now, 1500)
	}
}
