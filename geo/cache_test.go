package geo

import (
	"net/netip"
	"testing"
)

// TestCacheSpreadsKeys: distinct IPv4 /24s and IPv6 /48s land in distinct
// slots of a cache much larger than their number, so each stays cached.
func TestCacheSpreadsKeys(t *testing.T) {
	c := newPrefixCache(1 << 16)
	var addrs []netip.Addr
	for i := range 64 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{byte(1 + i*3), byte(i), 7, 9}))
		addrs = append(addrs, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i), byte(i * 5), 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}))
	}
	for _, a := range addrs {
		c.put(a, Location{Source: "none", Country: a.String()}, 1)
	}
	hits := 0
	for _, a := range addrs {
		if loc, ok := c.get(a, 1); ok && loc.Country == a.String() {
			hits++
		}
	}
	// a few collisions among 128 keys in 65,536 slots are possible; a
	// hash that ignores the network bytes leaves one key per family
	if hits < len(addrs)-4 {
		t.Fatalf("%d of %d keys still cached", hits, len(addrs))
	}
}
