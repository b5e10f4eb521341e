package geo

import (
	"net/netip"
	"sync/atomic"
)

// prefixCache is a direct-mapped, lock-free cache of lookups keyed by the
// client's /24 (IPv4) or /48 (IPv6). An answer is only cached when the record
// it came from covers the whole key prefix, so the cache never widens an
// answer beyond the network the database gave it for.
type prefixCache struct {
	slots []atomic.Pointer[cacheEntry]
	mask  uint64
}

type cacheEntry struct {
	key netip.Prefix
	gen uint64
	loc Location
}

func newPrefixCache(n int) *prefixCache {
	size := 1
	for size < n {
		size <<= 1
	}
	return &prefixCache{slots: make([]atomic.Pointer[cacheEntry], size), mask: uint64(size - 1)}
}

func cacheKey(addr netip.Addr) netip.Prefix {
	bits := 24
	if addr.Is6() {
		bits = 48
	}
	p, _ := addr.Prefix(bits)
	return p
}

// slot hashes the key's network bytes: the first three of an IPv4 address
// (its /24), the first six of an IPv6 one (its /48). Hashing the first bytes
// of As16 sent every IPv4 key, whose 16-byte form starts with zeros, to the
// same slot.
func (c *prefixCache) slot(key netip.Prefix) *atomic.Pointer[cacheEntry] {
	b := key.Addr().As16()
	net := b[:6]
	if key.Addr().Is4() {
		net = b[12:15]
	}
	var h uint64 = 1469598103934665603
	for _, x := range net {
		h ^= uint64(x)
		h *= 1099511628211
	}
	return &c.slots[h&c.mask]
}

func (c *prefixCache) get(addr netip.Addr, gen uint64) (Location, bool) {
	key := cacheKey(addr)
	e := c.slot(key).Load()
	if e == nil || e.key != key || e.gen != gen {
		return Location{}, false
	}
	return e.loc, true
}

func (c *prefixCache) put(addr netip.Addr, loc Location, gen uint64) {
	key := cacheKey(addr)
	if loc.Source == "db" && loc.Prefix.IsValid() && loc.Prefix.Bits() > key.Bits() {
		return // the record is narrower than the key: caching would widen it
	}
	if loc.Source == "none" {
		loc.Prefix = key
	}
	c.slot(key).Store(&cacheEntry{key: key, gen: gen, loc: loc})
}
