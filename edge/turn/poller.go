package turn

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// One goroutine per UDP listener socket reads the relay sockets of that
// listener's allocations (a listener socket per core, udp_sockets). An allocation's
// peer sends a few hundred datagrams a second at most (audio: 50), so a
// goroutine per relay socket is woken, scheduled and parked again for
// nearly every datagram, and each sends its one ChannelData frame to the
// client with its own syscall. The poller instead waits on an epoll set of
// all relay sockets (itself registered with Go's netpoller), reads each
// ready socket with recvmmsg, and sends what is bound for clients through
// their listener socket with one sendmmsg per wakeup.
//
// Datagrams of peers without a bound channel (Data indications, packets pion
// drops for want of a permission) are handed to pion's read goroutine of
// that allocation, which now waits on a channel instead of the socket.

const (
	pollEvents     = 64   // epoll events per epoll_wait
	pollPerRead    = 8    // datagrams per recvmmsg
	pollPending    = 64   // datagrams held for one sendmmsg round
	slowQueueLen   = 64   // datagrams waiting for pion per relay
	listenQueueLen = 1024 // client datagrams waiting for pion per listener socket

	// Datagrams read from one socket per round (run). A relay socket holds
	// answers to datagrams already relayed, so it may take more per round
	// than the listener, which brings new work.
	listenBudget = 64
	relayBudget  = 32
)

type relayPoller struct {
	s    *Server
	epfd *os.File
	raw  syscall.RawConn
	ln   *authPacketConn // the listener socket served
	lnFD int32

	mu    sync.RWMutex
	conns map[int32]*relayPacketConn // relay socket fd → relay

	// Used by the poller goroutine only.
	events  [pollEvents]unix.EpollEvent
	ready   []*relayPacketConn // relay sockets to read in the next round
	spare   []*relayPacketConn // the other half of ready's double buffer
	lnReady bool               // the listener may hold datagrams
	recv    [pollPending]mmsghdr
	iovs    [pollPending]unix.Iovec
	names   [pollPending]unix.RawSockaddrInet6
	bufs    [pollPending][]byte
	pending int // datagrams in bufs waiting for flush
	out     []*sendBatch
	bytes   int // relayed to clients since the last flush
	packets int
}

// sendBatch collects the ChannelData frames for one listener socket.
type sendBatch struct {
	ln    *authPacketConn
	msgs  [pollPending]mmsghdr
	iovs  [pollPending]unix.Iovec
	names [pollPending]unix.RawSockaddrInet6
	n     int
}

// slowDatagram is a datagram pion handles itself; queued by pointer, as
// every relay has a queue.
type slowDatagram struct {
	b    []byte
	from netip.AddrPort
}

// newRelayPoller makes the poller of a UDP listener socket; from now on the
// poller reads it.
func newRelayPoller(s *Server, ln *authPacketConn) (*relayPoller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "turn-relay-epoll") // non-blocking: joins the netpoller
	raw, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	p := &relayPoller{s: s, epfd: f, raw: raw, ln: ln, conns: map[int32]*relayPacketConn{}}
	for i := range p.bufs {
		p.bufs[i] = make([]byte, 4+rtpMTU) // 4 bytes of room for the ChannelData header
	}
	if err := ln.raw.Control(func(fd uintptr) { p.lnFD = int32(fd) }); err != nil {
		_ = f.Close()
		return nil, err
	}
	if err := p.ctl(unix.EPOLL_CTL_ADD, p.lnFD); err != nil {
		_ = f.Close()
		return nil, err
	}
	ln.slow, ln.closed, ln.poller = make(chan *slowDatagram, listenQueueLen), make(chan struct{}), p
	return p, nil
}

// ctl adds or removes a socket. Edge-triggered: the poller drains a socket
// each time it is reported, so a level-triggered report would only repeat
// itself.
func (p *relayPoller) ctl(op int, fd int32) error {
	var perr error
	err := p.raw.Control(func(ep uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: fd}
		perr = unix.EpollCtl(int(ep), op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	return perr
}

// rtpMTU is the largest peer datagram relayed, as pion's own relay buffer.
const rtpMTU = 1600

// add puts a relay socket in the epoll set; its datagrams are read by the
// poller from now on.
func (p *relayPoller) add(c *relayPacketConn) error {
	var fd int32 = -1
	if err := c.raw.Control(func(f uintptr) { fd = int32(f) }); err != nil {
		return err
	}
	c.pollFD, c.poller = fd, p
	p.mu.Lock()
	p.conns[fd] = c
	p.mu.Unlock()
	if err := p.ctl(unix.EPOLL_CTL_ADD, fd); err != nil {
		p.mu.Lock()
		delete(p.conns, fd)
		p.mu.Unlock()
		return err
	}
	return nil
}

// remove takes a relay socket out of the set before it is closed, so its
// descriptor number can be reused safely.
func (p *relayPoller) remove(c *relayPacketConn) {
	_ = p.ctl(unix.EPOLL_CTL_DEL, c.pollFD)
	p.mu.Lock()
	if p.conns[c.pollFD] == c {
		delete(p.conns, c.pollFD)
	}
	p.mu.Unlock()
}

func (p *relayPoller) close() error { return p.epfd.Close() }

// run serves until the poller is closed.
//
// It serves in rounds, each socket at most its budget per round, rather
// than reading each socket until it is empty. Under overload the listener
// socket is never empty: a poller that drained it first never came back to
// the relay sockets, so it sent every client datagram to its peer and lost
// every answer (relayed pkt/s to clients fell to 0 in the turn-overload
// sweep) — the costliest way to drop. Now the peers' datagrams, answers to
// work already done, are read first, and the listener gives way after
// listenBudget datagrams: what does not fit stays in the listener's socket
// buffer, and what overflows it is dropped by the kernel before this server
// spends anything on it (counted in longlink_turn_socket_drops_total).
// A socket left with data is kept on the poller's own list, as the
// edge-triggered epoll set will not report it again.
func (p *relayPoller) run() {
	_ = p.raw.Read(func(ep uintptr) bool {
		for p.collect(ep) {
			p.round()
		}
		return false // wait for readiness of the epoll set
	})
}

// collect takes the sockets the epoll set reports ready, without waiting,
// into the next round; false when no socket has anything to read.
func (p *relayPoller) collect(ep uintptr) bool {
	for {
		r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, ep, uintptr(unsafe.Pointer(&p.events[0])), uintptr(len(p.events)), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		n := int(r)
		if errno != 0 {
			n = 0
		}
		p.mu.RLock()
		for i := 0; i < n; i++ {
			if p.events[i].Fd == p.lnFD {
				p.lnReady = true
			} else if c := p.conns[p.events[i].Fd]; c != nil && !c.ready {
				c.ready = true
				p.ready = append(p.ready, c)
			}
		}
		p.mu.RUnlock()
		return p.lnReady || len(p.ready) > 0
	}
}

// round reads each ready relay socket, then the listener, each up to its
// budget, and sends what is bound for clients.
func (p *relayPoller) round() {
	ready := p.ready
	p.ready = p.spare[:0]
	for _, c := range ready {
		if p.drain(c) {
			p.ready = append(p.ready, c)
		} else {
			c.ready = false
		}
	}
	clear(ready)
	p.spare = ready[:0]
	if p.lnReady {
		p.lnReady = p.drainListener()
	}
	p.flush()
}

// drain reads one relay socket, up to relayBudget datagrams; true when
// it may hold more.
func (p *relayPoller) drain(c *relayPacketConn) bool {
	return p.readAll(c.raw, relayBudget, func(start, n int) { p.relay(c, start, n) })
}

// drainListener reads the listener socket, up to listenBudget datagrams:
// ChannelData of known channels is relayed to the peer here, the rest goes
// to pion. True when it may hold more.
func (p *relayPoller) drainListener() bool {
	ln := p.ln
	// The free buffers serve for the read: nothing read here is kept past
	// the handler.
	return p.readAll(ln.raw, listenBudget, func(start, n int) {
		for i := start; i < start+n; i++ {
			if p.recv[i].hdr.Flags&unix.MSG_TRUNC != 0 {
				continue // larger than any TURN datagram we accept
			}
			size := int(p.recv[i].len)
			data := p.bufs[i][4 : 4+size]
			from := sockaddrToAddrPort(&p.names[i])
			if size >= 4 && data[0]&0xC0 == 0x40 && p.s.clientChannelData(data, from, ln.local) {
				continue
			}
			ln.toPion(data, from)
		}
	})
}

// readAll reads raw's socket with recvmmsg until it is empty or budget
// datagrams were read, handing each run of datagrams
// (bufs[start:start+n]) to handle; queued sends are flushed first when the
// next read could overrun them. True when the budget ran out first (the
// socket may hold more).
func (p *relayPoller) readAll(raw syscall.RawConn, budget int, handle func(start, n int)) bool {
	more := false
	_ = raw.Control(func(fd uintptr) { // holds the descriptor open while reading
		for read := 0; read < budget; {
			if p.pending+pollPerRead > pollPending {
				p.flush()
			}
			start := p.pending
			n, errno := p.recvmmsg(int(fd), start, pollPerRead)
			if errno == unix.EINTR {
				continue
			}
			if errno != 0 || n == 0 {
				return
			}
			handle(start, n)
			if n < pollPerRead {
				return
			}
			read += n
		}
		more = true
	})
	return more
}

func (p *relayPoller) recvmmsg(fd, start, max int) (int, syscall.Errno) {
	for i := start; i < start+max; i++ {
		p.iovs[i].Base = &p.bufs[i][4]
		p.iovs[i].SetLen(len(p.bufs[i]) - 4)
		p.recv[i].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&p.names[i])), Namelen: uint32(unsafe.Sizeof(p.names[i])), Iov: &p.iovs[i], Iovlen: 1}
		p.recv[i].len = 0
	}
	r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&p.recv[start])), uintptr(max), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// relay queues the datagrams of bufs[start:start+n], read from c, for
// their clients, or hands them to pion.
func (p *relayPoller) relay(c *relayPacketConn, start, n int) {
	limited := c.down != nil || c.user.down != nil
	var now time.Time
	if limited {
		now = time.Now()
	}
	c.chMu.RLock()
	ln, client := c.listener, c.client
	for i := start; i < start+n; i++ {
		size := int(p.recv[i].len)
		if p.recv[i].hdr.Flags&unix.MSG_TRUNC != 0 {
			continue // larger than pion would relay
		}
		if limited {
			if ok, why := allowN(c.down, c.user.down, size, now); !ok {
				c.s.dropped(why)
				continue
			}
		}
		peer := sockaddrToAddrPort(&p.names[i])
		number, bound := c.ch.byPeer[peer]
		if !bound || ln == nil {
			c.toPion(p.bufs[i][4:4+size], peer)
			continue
		}
		frame := p.bufs[i][:4+size]
		binary.BigEndian.PutUint16(frame[0:2], number)
		binary.BigEndian.PutUint16(frame[2:4], uint16(size))
		p.queue(ln, frame, client)
		p.bytes += size
		p.packets++
	}
	c.chMu.RUnlock()
	p.pending = start + n // queued frames live in bufs until the flush
}

// queue adds a frame for client to its listener's batch.
func (p *relayPoller) queue(ln *authPacketConn, frame []byte, client netip.AddrPort) {
	if client.Addr().Zone() != "" {
		// A scoped (link-local) client: the stdlib resolves the zone.
		_, _ = ln.udp.WriteToUDPAddrPort(frame, client)
		return
	}
	var b *sendBatch
	for _, o := range p.out {
		if o.ln == ln {
			b = o
			break
		}
	}
	if b == nil {
		b = &sendBatch{ln: ln}
		p.out = append(p.out, b)
	}
	i := b.n
	b.n++
	b.iovs[i].Base = &frame[0]
	b.iovs[i].SetLen(len(frame))
	namelen := putSockaddr(&b.names[i], client, ln.v6)
	b.msgs[i].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[i])), Namelen: namelen, Iov: &b.iovs[i], Iovlen: 1}
	b.msgs[i].len = 0
}

// flush sends every queued frame and frees the buffers.
func (p *relayPoller) flush() {
	for _, b := range p.out {
		if b.n > 0 {
			b.send()
		}
	}
	if p.packets > 0 {
		p.s.m.bytesToClient.Add(float64(p.bytes))
		p.s.m.packetsToClient.Add(float64(p.packets))
	}
	p.pending, p.bytes, p.packets = 0, 0, 0
}

// send writes the batch with sendmmsg, waiting for room in the socket's
// send buffer as a plain write would. A datagram the kernel refuses (for
// instance an unreachable client) is skipped, as a failed sendto is.
func (b *sendBatch) send() {
	sent := 0
	_ = b.ln.raw.Write(func(fd uintptr) bool {
		for sent < b.n {
			r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[sent])), uintptr(b.n-sent), 0, 0, 0)
			switch {
			case e == unix.EAGAIN:
				return false
			case e == unix.EINTR:
			case e != 0:
				sent++ // the error belongs to the first datagram
			default:
				sent += int(r)
			}
		}
		return true
	})
	b.n = 0
}

// putSockaddr encodes ap for a socket of the given family (an IPv6 socket
// reaches IPv4 clients by their mapped address).
func putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort, v6 bool) uint32 {
	if !v6 {
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:], ap.Port())
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ap.Addr().As16()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	return unix.SizeofSockaddrInet6
}

// toPion queues a datagram for pion's read goroutine of the allocation; a
// full queue drops it, as a full socket buffer would, and counts it.
func (c *relayPacketConn) toPion(b []byte, from netip.AddrPort) {
	select {
	case c.slow <- &slowDatagram{b: append([]byte(nil), b...), from: from}:
		c.s.m.bytesToClient.Add(float64(len(b)))
		c.s.m.packetsToClient.Inc()
	default:
		c.s.m.droppedQueueFull.Inc()
	}
}

// toPion queues a client datagram for pion's read goroutine of the
// listener; a full queue drops it, as a full socket buffer would, and
// counts it.
func (c *authPacketConn) toPion(b []byte, from netip.AddrPort) {
	select {
	case c.slow <- &slowDatagram{b: append([]byte(nil), b...), from: from}:
	default:
		c.s.m.droppedQueueFull.Inc()
	}
}

// readFromPoller is relayPacketConn.ReadFrom for polled relays.
func (c *relayPacketConn) readFromPoller(p []byte) (int, net.Addr, error) {
	select {
	case d := <-c.slow:
		return copy(p, d.b), net.UDPAddrFromAddrPort(d.from), nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

// socketIsIPv6 reports whether a socket is of family AF_INET6.
func socketIsIPv6(raw syscall.RawConn) (bool, error) {
	var domain int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return false, err
	}
	if serr != nil {
		return false, serr
	}
	if domain != unix.AF_INET && domain != unix.AF_INET6 {
		return false, errors.New("turn: listener is not an IP socket")
	}
	return domain == unix.AF_INET6, nil
}
