package turn

import (
	"net"
	"net/netip"
	"sync"
)

// clientAddrCounts counts the client TCP/TLS connections open per client
// address, over every TCP and TLS listener of the server: the descriptors
// they hold are the process's, whichever listener accepted them.
type clientAddrCounts struct {
	mu  sync.Mutex
	n   map[netip.Addr]int
	max int
}

func newClientAddrCounts(max int) *clientAddrCounts {
	return &clientAddrCounts{n: map[netip.Addr]int{}, max: max}
}

// acquire takes a connection slot for key, or reports that key holds max.
func (c *clientAddrCounts) acquire(key netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] >= c.max {
		return false
	}
	c.n[key]++
	return true
}

func (c *clientAddrCounts) release(key netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key]--; c.n[key] <= 0 {
		delete(c.n, key)
	}
}

// clientAddrKey is what a client connection is counted under: its IPv4
// address (also when IPv4-mapped), or its IPv6 /64, which one subscriber
// holds whole.
func clientAddrKey(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64)
		return p.Addr()
	}
	return ip
}
