package linkquic

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// DefaultDuplicateMax is the largest UDP datagram, in bytes, that Link over
// QUIC sends twice unless told otherwise (Options.DuplicateMax). A text
// message, its answer, a push of it, a receipt, a heartbeat and QUIC's
// acknowledgements fit; full-size packets (bulk transfers, history pages,
// batched pushes) do not, so they are never doubled.
const DefaultDuplicateMax = 700

// Options tune Link over QUIC on one end.
type Options struct {
	// DuplicateMax is the largest datagram, in bytes, sent twice: each
	// 1-RTT packet up to this size leaves back to back with an identical
	// copy, and the receiver's QUIC drops whichever copy comes second as a
	// duplicate packet number. A lone packet lost on a lossy access leg has
	// no later packet to reveal the loss, so QUIC recovers it only after a
	// probe timeout (its RTT estimate + 4 deviations + the peer's 25 ms ack
	// delay: 45–65 ms on a 10 ms leg); with a copy, a message is late only
	// when both are lost. Handshake packets are never doubled, and a server
	// doubles only to an address (ip:port) with a connection past its
	// handshake (QUIC's anti-amplification limit stays what quic-go
	// counts). 0:
	// DefaultDuplicateMax; negative: off.
	DuplicateMax int
}

func (o Options) duplicateMax() int {
	if o.DuplicateMax == 0 {
		return DefaultDuplicateMax
	}
	return max(o.DuplicateMax, 0)
}

// DuplicateStats counts the copies one end sent: their cost in packets and
// bytes.
type DuplicateStats struct {
	Packets, Bytes uint64
}

// copyCounter counts copies for one listener, or for the connections of
// one dialer's session cache.
type copyCounter struct{ packets, bytes atomic.Uint64 }

func (c *copyCounter) stats() DuplicateStats {
	return DuplicateStats{Packets: c.packets.Load(), Bytes: c.bytes.Load()}
}

// duplicatingConn is a UDP socket that writes small 1-RTT datagrams twice.
// It keeps *net.UDPConn's methods, so quic-go still reads in batches and
// writes with WriteMsgUDP (ECN, GSO).
type duplicatingConn struct {
	*net.UDPConn
	max int
	// peers, when not nil, holds the addresses (with a count of their
	// connections) whose handshake has completed: only they get copies.
	// nil: every destination does (a client's own socket).
	peers  *peerSet
	copies *copyCounter
}

func newDuplicatingConn(c *net.UDPConn, max int, peers *peerSet, copies *copyCounter) *duplicatingConn {
	return &duplicatingConn{UDPConn: c, max: max, peers: peers, copies: copies}
}

// doubled tells whether b, written to addr, is sent twice: a short-header
// (1-RTT) packet first, small enough, to a peer past its handshake. A
// datagram of coalesced packets starts with a long header and is not.
func (c *duplicatingConn) doubled(b []byte, addr netip.AddrPort) bool {
	if len(b) == 0 || len(b) > c.max || b[0]&0x80 != 0 {
		return false
	}
	return c.peers == nil || c.peers.has(addr)
}

func (c *duplicatingConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	n, oobn, err := c.UDPConn.WriteMsgUDP(b, oob, addr)
	if err == nil && addr != nil && c.doubled(b, addr.AddrPort()) {
		c.count(b, func() error { _, _, err := c.UDPConn.WriteMsgUDP(b, oob, addr); return err })
	}
	return n, oobn, err
}

func (c *duplicatingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.UDPConn.WriteTo(b, addr)
	if ua, ok := addr.(*net.UDPAddr); ok && err == nil && c.doubled(b, ua.AddrPort()) {
		c.count(b, func() error { _, err := c.UDPConn.WriteTo(b, addr); return err })
	}
	return n, err
}

func (c *duplicatingConn) count(b []byte, write func() error) {
	if write() == nil {
		c.copies.packets.Add(1)
		c.copies.bytes.Add(uint64(len(b)))
	}
}

// peerSet counts, per remote address, the connections past their handshake.
type peerSet struct {
	mu sync.RWMutex
	n  map[netip.AddrPort]int
}

func newPeerSet() *peerSet { return &peerSet{n: make(map[netip.AddrPort]int)} }

func key(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

func (s *peerSet) add(a netip.AddrPort) {
	s.mu.Lock()
	s.n[key(a)]++
	s.mu.Unlock()
}

func (s *peerSet) remove(a netip.AddrPort) {
	s.mu.Lock()
	if s.n[key(a)]--; s.n[key(a)] <= 0 {
		delete(s.n, key(a))
	}
	s.mu.Unlock()
}

func (s *peerSet) has(a netip.AddrPort) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.n[key(a)] > 0
}
