// Package impair models what a WAN path does to packets: random and bursty
// (Gilbert-Elliott) loss, a bandwidth limit with a finite queue, propagation
// delay with jitter, and reordering. The models work on virtual time: a
// Pipeline is told when a packet arrives and answers when it leaves the far
// end (or that it was dropped), so they can be tested without sleeping and the
// caller decides how to wait.
package impair

import (
	"math/rand/v2"
	"time"
)

// Params describes one direction of one link. The zero value is a perfect
// link: no delay, no loss, unlimited bandwidth.
type Params struct {
	// Delay is the one-way propagation delay added to every packet.
	Delay time.Duration
	// Jitter spreads the delay uniformly over [Delay-Jitter, Delay+Jitter]
	// (never below zero). Packets keep their order unless Reorder picks them.
	Jitter time.Duration
	// Loss is the probability in [0,1] that a packet is dropped independently
	// of the others (Bernoulli loss).
	Loss float64
	// Burst, when set, adds Gilbert-Elliott loss on top of Loss.
	Burst *GilbertElliott
	// RateBits limits the link to this many bits per second; 0 = unlimited.
	RateBits int64
	// BucketBytes is the token bucket's depth: how many bytes may leave at
	// line speed after an idle period. 0 = one 1500-byte packet.
	BucketBytes int
	// QueueBytes is how many bytes may wait for tokens; a packet that would
	// exceed it is tail-dropped. 0 = unbounded (only with RateBits = 0 it
	// makes sense; Validate of the caller should require a limit).
	QueueBytes int
	// Reorder is the probability in [0,1] that a packet is held back by
	// ReorderDelay, so that packets sent after it overtake it.
	Reorder float64
	// ReorderDelay is the extra hold time of a reordered packet.
	ReorderDelay time.Duration
}

// GilbertElliott is the two-state Markov loss model. The chain moves once per
// packet: from Good to Bad with probability P and from Bad back to Good with
// probability R; a packet is then lost with LossGood or LossBad depending on
// the state. With LossGood = 0 and LossBad = 1, bursts of loss last 1/R packets
// on average and the long-run loss rate is P/(P+R).
type GilbertElliott struct {
	P, R              float64
	LossGood, LossBad float64
}

// MeanLoss is the model's long-run loss probability.
func (g GilbertElliott) MeanLoss() float64 {
	if g.P+g.R == 0 {
		return g.LossGood
	}
	bad := g.P / (g.P + g.R)
	return (1-bad)*g.LossGood + bad*g.LossBad
}

// Verdict is what happened to a packet.
type Verdict int

const (
	// Deliver means the packet leaves the far end at the returned time.
	Deliver Verdict = iota
	// DropLoss means the packet was lost on the wire (random or burst loss).
	DropLoss
	// DropQueue means the bandwidth limiter's queue was full (tail drop).
	DropQueue
)

func (v Verdict) String() string {
	switch v {
	case Deliver:
		return "delivered"
	case DropLoss:
		return "lost"
	case DropQueue:
		return "queue_full"
	}
	return "unknown"
}

// Pipeline applies Params to a stream of packets in arrival order. It is not
// safe for concurrent use; callers serialize Admit.
type Pipeline struct {
	p           Params
	rng         *rand.Rand
	geBad       bool
	bucket      tokenBucket
	lastDeliver time.Time
}

// New returns a pipeline whose random choices come from seed, so runs with
// the same seed and the same arrivals make the same decisions.
func New(p Params, seed uint64) *Pipeline {
	pl := &Pipeline{p: p, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	if p.RateBits > 0 {
		depth := p.BucketBytes
		if depth <= 0 {
			depth = 1500
		}
		pl.bucket = tokenBucket{rateBits: p.RateBits, depth: float64(depth), queueLimit: p.QueueBytes}
	}
	return pl
}

// Params returns the parameters the pipeline was built with.
func (pl *Pipeline) Params() Params { return pl.p }

// Admit decides the fate of a packet of size bytes that arrives at now. For
// Deliver it returns the time the packet reaches the far end.
func (pl *Pipeline) Admit(now time.Time, size int) (time.Time, Verdict) {
	if pl.lost() {
		return time.Time{}, DropLoss
	}
	depart := now
	if pl.p.RateBits > 0 {
		var ok bool
		if depart, ok = pl.bucket.admit(now, size); !ok {
			return time.Time{}, DropQueue
		}
	}
	at := depart.Add(pl.delay())
	if pl.p.Reorder > 0 && pl.rng.Float64() < pl.p.Reorder {
		// Held back: later packets may overtake it; it does not hold them up.
		return at.Add(pl.p.ReorderDelay), Deliver
	}
	if at.Before(pl.lastDeliver) {
		at = pl.lastDeliver // jitter alone never reorders, as on a real path
	}
	pl.lastDeliver = at
	return at, Deliver
}

func (pl *Pipeline) lost() bool {
	lost := false
	if pl.p.Loss > 0 && pl.rng.Float64() < pl.p.Loss {
		lost = true
	}
	if g := pl.p.Burst; g != nil {
		if pl.geBad {
			if pl.rng.Float64() < g.R {
				pl.geBad = false
			}
		} else if pl.rng.Float64() < g.P {
			pl.geBad = true
		}
		pLoss := g.LossGood
		if pl.geBad {
			pLoss = g.LossBad
		}
		if pLoss > 0 && pl.rng.Float64() < pLoss {
			lost = true
		}
	}
	return lost
}

func (pl *Pipeline) delay() time.Duration {
	d := pl.p.Delay
	if j := pl.p.Jitter; j > 0 {
		d += time.Duration(pl.rng.Int64N(int64(2*j)+1)) - j
		if d < 0 {
			d = 0
		}
	}
	return d
}

// tokenBucket is a FIFO shaper: packets wait in a queue until the bucket
// holds enough tokens (bytes) for them. Because the queue is FIFO and the
// refill rate is constant, each packet's departure time is known when it
// arrives, so the shaper needs no timer of its own.
type tokenBucket struct {
	rateBits   int64
	depth      float64
	queueLimit int

	last    time.Time // departure time of the previous packet
	tokens  float64   // tokens left at last
	started bool
	pending []departure // packets still queued at the last arrival, oldest first, from head
	head    int
	backlog int // bytes in pending[head:]
}

type departure struct {
	at   time.Time
	size int
}

func (b *tokenBucket) bytesPerSecond() float64 { return float64(b.rateBits) / 8 }

func (b *tokenBucket) admit(now time.Time, size int) (time.Time, bool) {
	// Forget packets that have left by now.
	for b.head < len(b.pending) && !b.pending[b.head].at.After(now) {
		b.backlog -= b.pending[b.head].size
		b.head++
	}
	if b.head == len(b.pending) {
		b.pending, b.head = b.pending[:0], 0
	} else if b.head > 1024 && b.head > len(b.pending)/2 {
		n := copy(b.pending, b.pending[b.head:])
		b.pending, b.head = b.pending[:n], 0
	}
	if b.queueLimit > 0 && b.backlog+size > b.queueLimit {
		return time.Time{}, false
	}
	if !b.started {
		b.started = true
		b.last = now
		b.tokens = b.depth
	}
	start := now
	if b.last.After(start) {
		start = b.last
	}
	tokens := b.tokens + start.Sub(b.last).Seconds()*b.bytesPerSecond()
	if tokens > b.depth {
		tokens = b.depth
	}
	depart := start
	if need := float64(size) - tokens; need > 0 {
		depart = start.Add(time.Duration(need / b.bytesPerSecond() * float64(time.Second)))
		tokens = 0
	} else {
		tokens -= float64(size)
	}
	b.last, b.tokens = depart, tokens
	if depart.After(now) {
		b.pending = append(b.pending, departure{at: depart, size: size})
		b.backlog += size
	}
	return depart, true
}
