package lbs

import (
	"net/netip"
	"sync"
	"time"
)

// rateLimiter is a token bucket per client /24 (IPv4) or /56 (IPv6), in a
// fixed number of shards: DNS response rate limiting and RUM report
// intake.
type rateLimiter struct {
	rate, burst float64
	// maxPerShard, when > 0, bounds the prefixes a shard tracks: a new
	// prefix beyond it is refused (its memory is then bounded however many
	// addresses send).
	maxPerShard int
	shards      [64]rrlShard
}

type rrlShard struct {
	mu      sync.Mutex
	buckets map[netip.Prefix]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newRateLimiter allows rate per second and burst per prefix; maxPrefixes
// (> 0) bounds the prefixes tracked at once.
func newRateLimiter(rate, burst float64, maxPrefixes int) *rateLimiter {
	r := &rateLimiter{rate: rate, burst: burst}
	if maxPrefixes > 0 {
		r.maxPerShard = max(maxPrefixes/len(r.shards), 1)
	}
	for i := range r.shards {
		r.shards[i].buckets = map[netip.Prefix]*bucket{}
	}
	return r
}

func (r *rateLimiter) allow(a netip.Addr) bool {
	bits := 24
	if a.Is6() {
		bits = 56
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return true
	}
	b16 := p.Addr().As16()
	sh := &r.shards[(b16[12]^b16[13]^b16[14]^b16[6]^b16[5])%64]
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// a full shard is swept at most once a second: a flood of new
	// prefixes must not make every call walk the map
	full := r.maxPerShard > 0 && len(sh.buckets) >= r.maxPerShard && now.Sub(sh.swept) > time.Second
	if now.Sub(sh.swept) > time.Minute || len(sh.buckets) > 100000 || full {
		for k, b := range sh.buckets {
			// a bucket refilled to its burst holds nothing worth keeping
			if now.Sub(b.last) > time.Minute || b.tokens+now.Sub(b.last).Seconds()*r.rate >= r.burst {
				delete(sh.buckets, k)
			}
		}
		sh.swept = now
	}
	b, ok := sh.buckets[p]
	if !ok {
		if r.maxPerShard > 0 && len(sh.buckets) >= r.maxPerShard {
			return false
		}
		b = &bucket{tokens: r.burst, last: now}
		sh.buckets[p] = b
	}
	b.tokens = min(r.burst, b.tokens+now.Sub(b.last).Seconds()*r.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
