package transport

import (
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batcher is what ipv4.PacketConn and ipv6.PacketConn share.
type batcher interface {
	ReadBatch([]ipv4.Message, int) (int, error)
	WriteBatch([]ipv4.Message, int) (int, error)
}

func newBatcher(pc net.PacketConn) (batcher, *net.UDPConn) {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return nil, nil
	}
	if la, ok := uc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() != nil {
		return ipv4.NewPacketConn(uc), uc
	}
	return ipv6.NewPacketConn(uc), uc
}

// batchReader reads UDP packets several at a time (recvmmsg on Linux) and
// hands them out one by one: kcp-go's own batching is bypassed when it runs
// over the sealed packet layer, and one syscall per packet caps throughput.
// Where the kernel offers UDP GRO, one buffer may hold a run of packets of
// the same size from one sender; next splits it.
type batchReader struct {
	pc   net.PacketConn
	bc   batcher
	gro  bool
	msgs []ipv4.Message
	n, i int
	// the run being handed out: msgs[i-1]'s buffer from off, seg bytes each
	off, seg int
	scratch  []byte // the read buffer when the socket cannot batch
}

const readBatch = 64

// readBufSize holds the largest UDP payload (a GRO run can reach it).
const readBufSize = 64 << 10

func newBatchReader(pc net.PacketConn) *batchReader {
	b := &batchReader{pc: pc}
	bc, uc := newBatcher(pc)
	if bc == nil {
		b.scratch = make([]byte, readBufSize)
		return b
	}
	b.bc = bc
	_, b.gro = offloadCapable(uc)
	b.msgs = make([]ipv4.Message, readBatch)
	for k := range b.msgs {
		b.msgs[k].Buffers = [][]byte{make([]byte, readBufSize)}
		if b.gro {
			b.msgs[k].OOB = make([]byte, groCmsgSpace)
		}
	}
	return b
}

// next returns the next packet; the slice is valid until the following call.
// Only one goroutine may call it.
func (b *batchReader) next() ([]byte, net.Addr, error) {
	if b.bc == nil {
		n, a, err := b.pc.ReadFrom(b.scratch)
		return b.scratch[:n], a, err
	}
	if b.seg > 0 {
		m := &b.msgs[b.i-1]
		if b.off < m.N {
			return b.cut(m), m.Addr, nil
		}
		b.seg = 0
	}
	if b.i >= b.n {
		for k := range b.msgs[:b.n] {
			b.msgs[k].OOB = b.msgs[k].OOB[:cap(b.msgs[k].OOB)]
		}
		n, err := b.bc.ReadBatch(b.msgs, 0)
		if err != nil {
			return nil, nil, err
		}
		b.n, b.i = n, 0
	}
	m := &b.msgs[b.i]
	b.i++
	if b.gro {
		if seg := groSegmentSize(m.OOB[:m.NN]); seg > 0 && seg < m.N {
			b.seg, b.off = seg, 0
			return b.cut(m), m.Addr, nil
		}
	}
	return m.Buffers[0][:m.N], m.Addr, nil
}

// cut returns the next segment of the run in m.
func (b *batchReader) cut(m *ipv4.Message) []byte {
	end := min(b.off+b.seg, m.N)
	p := m.Buffers[0][b.off:end]
	b.off = end
	return p
}

// batchWriter sends sealed packets several at a time (sendmmsg on Linux)
// from its own goroutine. kcp-go drops packets when its post-processing
// queue is full, so the sealed layer must drain it as fast as the socket
// allows; WriteTo blocks (back-pressure) only when this queue is full.
// Where the kernel offers UDP GSO, a run of equal-sized packets to one peer
// goes out as one sendmmsg entry (see offload_linux.go).
type batchWriter struct {
	pc    net.PacketConn
	bc    batcher
	gso   atomic.Bool
	stats *SealStats
	q     chan outPacket
	done  chan struct{}
	once  sync.Once
	err   atomic.Value // error
}

type outPacket struct {
	buf  *[]byte
	addr net.Addr
}

const writeBatch = 128

// gsoMaxBytes keeps a run within one UDP datagram's 64 KiB.
const gsoMaxBytes = 65000

func newBatchWriter(pc net.PacketConn, stats *SealStats) *batchWriter {
	w := &batchWriter{pc: pc, stats: stats, q: make(chan outPacket, 4096), done: make(chan struct{})}
	var uc *net.UDPConn
	w.bc, uc = newBatcher(pc)
	if uc != nil {
		gso, _ := offloadCapable(uc)
		w.gso.Store(gso)
	}
	go w.loop()
	return w
}

// writeState is the writer goroutine's reusable scratch.
type writeState struct {
	pkts []outPacket
	msgs []ipv4.Message
	iov  [][]byte
	oob  []byte
}

func (w *batchWriter) loop() {
	st := &writeState{
		pkts: make([]outPacket, 0, writeBatch),
		msgs: make([]ipv4.Message, writeBatch),
		iov:  make([][]byte, writeBatch),
		oob:  make([]byte, writeBatch*segmentCmsgLen),
	}
	for {
		select {
		case p := <-w.q:
			st.pkts = append(st.pkts[:0], p)
		case <-w.done:
			return
		}
	fill:
		for len(st.pkts) < writeBatch {
			select {
			case p := <-w.q:
				st.pkts = append(st.pkts, p)
			default:
				break fill
			}
		}
		err := w.write(st)
		for _, p := range st.pkts {
			putPkt(p.buf)
		}
		if err != nil {
			w.err.Store(err)
			w.close()
			return
		}
	}
}

// write sends st.pkts: runs of equal-sized packets to one address become
// one GSO message each (the last of a run may be shorter), the rest one
// message per packet.
func (w *batchWriter) write(st *writeState) error {
	if w.bc == nil {
		for _, p := range st.pkts {
			if _, err := w.pc.WriteTo(*p.buf, p.addr); err != nil {
				return err
			}
		}
		return nil
	}
	pkts := st.pkts
	for len(pkts) > 0 {
		gso := w.gso.Load()
		nm := 0
		used := 0 // packets placed in messages
		for used < len(pkts) {
			first := pkts[used]
			size := len(*first.buf)
			run := 1
			if gso {
				total := size
				for used+run < len(pkts) && run < gsoMaxSegments {
					p := pkts[used+run]
					l := len(*p.buf)
					if l > size || total+l > gsoMaxBytes || !sameAddr(p.addr, first.addr) {
						break
					}
					total += l
					run++
					if l < size { // a shorter packet ends the run
						break
					}
				}
			}
			m := &st.msgs[nm]
			for k := 0; k < run; k++ {
				st.iov[used+k] = *pkts[used+k].buf
			}
			m.Buffers = st.iov[used : used+run]
			m.Addr = first.addr
			m.OOB = nil
			if run > 1 {
				m.OOB = putSegmentCmsg(st.oob[nm*segmentCmsgLen:], size)
			}
			nm++
			used += run
		}
		todo := st.msgs[:nm]
		sent := 0 // packets of pkts sent
		for len(todo) > 0 {
			n, err := w.bc.WriteBatch(todo, 0)
			for _, m := range todo[:n] {
				sent += len(m.Buffers)
			}
			todo = todo[n:]
			if err != nil {
				if gso && isGSOError(err) {
					// The kernel or device cannot segment: send the rest
					// one packet per message from now on.
					w.gso.Store(false)
					w.stats.GSOFallbacks.Add(1)
					break
				}
				return err
			}
		}
		pkts = pkts[sent:]
		if len(todo) == 0 {
			break
		}
	}
	for k := range st.msgs {
		st.msgs[k].Buffers, st.msgs[k].Addr, st.msgs[k].OOB = nil, nil, nil
	}
	return nil
}

// send queues a sealed packet; it takes ownership of buf.
func (w *batchWriter) send(buf *[]byte, addr net.Addr) error {
	if e, ok := w.err.Load().(error); ok {
		putPkt(buf)
		return e
	}
	select {
	case w.q <- outPacket{buf: buf, addr: addr}:
		return nil
	case <-w.done:
		putPkt(buf)
		return net.ErrClosed
	}
}

func (w *batchWriter) close() { w.once.Do(func() { close(w.done) }) }

func putPkt(b *[]byte) {
	if cap(*b) <= 4096 {
		pktPool.Put(b)
	}
}
