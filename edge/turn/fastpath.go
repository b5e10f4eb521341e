package turn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The fast path relays ChannelData for UDP clients without going through
// pion's per-packet request handling: the relay poller of each UDP listener
// socket (poller.go) reads the listener and its allocations' relay sockets
// in batches (recvmmsg), without the extra EAGAIN read a blocking read costs
// per wakeup.
// pion still handles every STUN message (allocations, permissions, channel
// binds, refreshes, Send and Data indications); the fast path learns the
// channels from pion's lifecycle events and only ever carries data whose
// channel pion has bound. Semantics are pion's: a bound channel relays in
// both directions until pion removes it.

// fastPath is the server's table of UDP allocations with channels.
type fastPath struct {
	mu        sync.RWMutex
	byClient  map[clientKey]*relayPacketConn     // client and server transport addresses → the relay
	listeners map[netip.AddrPort]*authPacketConn // listener address → a socket bound to it
}

// clientKey is the client side of an allocation's 5-tuple (UDP): a client
// may use one socket toward several listen addresses.
type clientKey struct {
	client, server netip.AddrPort
}

func newFastPath() *fastPath {
	return &fastPath{byClient: map[clientKey]*relayPacketConn{}, listeners: map[netip.AddrPort]*authPacketConn{}}
}

func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	return ua.AddrPort(), true
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// allocationCreated links a UDP client's relay to the listener socket that
// answers it.
func (s *Server) allocationCreated(src, dst, relay net.Addr) {
	client, ok := addrPortOf(src)
	if !ok {
		return // TCP or TLS client: pion's path
	}
	local, ok := addrPortOf(dst)
	if !ok {
		return
	}
	rp, ok := relay.(*net.UDPAddr)
	if !ok {
		return
	}
	v, ok := s.udpRelays.Load(unmapAP(rp.AddrPort()))
	if !ok {
		return
	}
	rc := v.(*relayPacketConn)
	if rc.raw == nil {
		return // not in a relay poller: pion's path
	}
	s.fast.mu.Lock()
	defer s.fast.mu.Unlock()
	ln := s.fast.listeners[unmapAP(local)]
	if ln == nil {
		return
	}
	rc.bindClient(unmapAP(client), ln)
	s.fast.byClient[clientKey{unmapAP(client), unmapAP(local)}] = rc
}

func (s *Server) allocationDeleted(src, dst net.Addr) {
	client, ok := addrPortOf(src)
	if !ok {
		return
	}
	local, ok := addrPortOf(dst)
	if !ok {
		return
	}
	s.fast.mu.Lock()
	delete(s.fast.byClient, clientKey{unmapAP(client), unmapAP(local)})
	s.fast.mu.Unlock()
}

func (s *Server) channelChanged(relay, peer net.Addr, number uint16, bound bool) {
	rp, ok := relay.(*net.UDPAddr)
	if !ok {
		return
	}
	v, ok := s.udpRelays.Load(unmapAP(rp.AddrPort()))
	if !ok {
		return
	}
	pa, ok := addrPortOf(peer)
	if !ok {
		return
	}
	v.(*relayPacketConn).setChannel(unmapAP(pa), number, bound)
}

// channels of one relay, both ways.
type channels struct {
	byNumber map[uint16]netip.AddrPort
	byPeer   map[netip.AddrPort]uint16
}

func (c *relayPacketConn) bindClient(client netip.AddrPort, ln *authPacketConn) {
	c.chMu.Lock()
	c.client, c.listener = client, ln
	c.chMu.Unlock()
}

func (c *relayPacketConn) setChannel(peer netip.AddrPort, number uint16, bound bool) {
	c.chMu.Lock()
	defer c.chMu.Unlock()
	if c.ch.byNumber == nil {
		c.ch = channels{byNumber: map[uint16]netip.AddrPort{}, byPeer: map[netip.AddrPort]uint16{}}
	}
	if bound {
		c.ch.byNumber[number] = peer
		c.ch.byPeer[peer] = number
		return
	}
	delete(c.ch.byNumber, number)
	if c.ch.byPeer[peer] == number {
		delete(c.ch.byPeer, peer)
	}
}

// clientChannelData relays one ChannelData datagram from a UDP client, if
// its channel is known; false hands the datagram to pion.
func (s *Server) clientChannelData(b []byte, from, local netip.AddrPort) bool {
	if len(b) < 4 || b[0]&0xC0 != 0x40 {
		return false
	}
	number := binary.BigEndian.Uint16(b[0:2])
	length := int(binary.BigEndian.Uint16(b[2:4]))
	if length > len(b)-4 {
		return false
	}
	s.fast.mu.RLock()
	rc := s.fast.byClient[clientKey{unmapAP(from), local}]
	s.fast.mu.RUnlock()
	if rc == nil {
		return false
	}
	rc.chMu.RLock()
	peer, ok := rc.ch.byNumber[number]
	rc.chMu.RUnlock()
	if !ok {
		return false
	}
	rc.writeToPeer(b[4:4+length], peer)
	return true
}

// writeToPeer applies limits and counts, then sends.
func (c *relayPacketConn) writeToPeer(p []byte, peer netip.AddrPort) {
	if c.up != nil || c.user.up != nil {
		if ok, why := allowN(c.up, c.user.up, len(p), time.Now()); !ok {
			c.s.dropped(why)
			return
		}
	}
	if peer.Addr().Zone() != "" {
		// A scoped (link-local) peer: the stdlib resolves the zone.
		if _, err := c.udp.WriteToUDPAddrPort(p, peer); err == nil {
			c.s.m.bytesToPeer.Add(float64(len(p)))
			c.s.m.packetsToPeer.Inc()
		}
		return
	}
	var sa unix.RawSockaddrInet6
	salen := putSockaddr(&sa, peer, c.v6)
	var errno syscall.Errno
	err := c.raw.Write(func(fd uintptr) bool {
		_, _, errno = unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
			0, uintptr(unsafe.Pointer(&sa)), uintptr(salen))
		return errno != unix.EAGAIN // full send buffer: wait for room, as a plain write does
	})
	if err == nil && errno == 0 {
		c.s.m.bytesToPeer.Add(float64(len(p)))
		c.s.m.packetsToPeer.Inc()
	}
}

type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), port)
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}
