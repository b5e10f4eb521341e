package lbs

import (
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpBatch is how many datagrams one recvmmsg or sendmmsg moves. A resolver
// under load keeps many queries in flight, so the socket's queue usually
// holds several: one system call per batch instead of two per query is the
// largest saving on the UDP path. Each worker holds udpBatch × 4 KiB of
// receive buffers.
const udpBatch = 32

// batchConn is an ipv4.PacketConn or an ipv6.PacketConn: on Linux both read
// and write batches of socket.Message with recvmmsg and sendmmsg (one message
// per call elsewhere).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

func newBatchConn(pc net.PacketConn) batchConn {
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok && ua.IP.To4() != nil {
		return ipv4.NewPacketConn(pc)
	}
	// An IPv6 socket, dual-stack when bound to [::]: IPv4 clients arrive
	// as v4-mapped addresses and the replies to them leave as IPv4
	// destinations, which Linux sends through the same socket.
	return ipv6.NewPacketConn(pc)
}

// udpLoop answers queries on pc a batch at a time until pc is closed.
func (s *dnsServer) udpLoop(pc net.PacketConn) {
	defer s.wg.Done()
	bc := newBatchConn(pc)
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	// answers are packed into buffers that grow to the largest answer seen
	// in their slot and are then reused
	outBufs := make([][]byte, udpBatch)
	slab := make([]byte, udpBatch*4096)
	for i := range in {
		in[i].Buffers = [][]byte{slab[i*4096 : (i+1)*4096 : (i+1)*4096]}
		out[i].Buffers = make([][]byte, 1)
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if isClosed(err) {
				return
			}
			continue
		}
		k := 0
		for i := range in[:n] {
			m := &in[i]
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			resp := s.handle(m.Buffers[0][:m.N], ua.AddrPort().Addr().Unmap(), true)
			if resp == nil {
				continue
			}
			b, err := resp.PackBuffer(outBufs[k][:0])
			if err != nil {
				continue
			}
			outBufs[k] = b[:0]
			out[k].Buffers[0] = b
			out[k].Addr = m.Addr
			k++
		}
		for sent := 0; sent < k; {
			w, err := bc.WriteBatch(out[sent:k], 0)
			if err != nil && isClosed(err) {
				return
			}
			if err != nil || w <= 0 {
				// sendmmsg fails only when the first datagram of the
				// batch does (say, an unroutable client): drop that one
				w = 1
			}
			sent += w
		}
	}
}
