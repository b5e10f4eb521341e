package wan

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestDelayLineOrder(t *testing.T) {
	var h delayLine
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Unix(0, 0)
	for i := range 5000 {
		// Few distinct times so that ties (broken by arrival) are common.
		h.push(pending{at: base.Add(time.Duration(rng.IntN(50)) * time.Millisecond), seq: uint64(i)})
	}
	prev := h.pop()
	for len(h) > 0 {
		p := h.pop()
		if p.at.Before(prev.at) || (p.at.Equal(prev.at) && p.seq < prev.seq) {
			t.Fatalf("popped %v/%d after %v/%d", p.at, p.seq, prev.at, prev.seq)
		}
		prev = p
	}
}

func TestDelayLineAllocs(t *testing.T) {
	h := make(delayLine, 0, 16)
	at := time.Unix(0, 0)
	if n := testing.AllocsPerRun(1000, func() {
		h.push(pending{at: at, seq: 1})
		h.pop()
	}); n != 0 {
		t.Fatalf("%v allocations per packet", n)
	}
}
