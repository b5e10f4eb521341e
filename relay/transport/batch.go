package transport

import (
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batchReader reads UDP packets several at a time (recvmmsg on Linux) and
// hands them out one by one: kcp-go's own batching is bypassed when it runs
// over the sealed packet layer, and one syscall per packet caps throughput.
type batchReader struct {
	pc net.PacketConn
	bc interface {
		ReadBatch([]ipv4.Message, int) (int, error)
	}
	msgs []ipv4.Message
	n, i int
}

const readBatch = 64

func newBatchReader(pc net.PacketConn) *batchReader {
	b := &batchReader{pc: pc}
	if uc, ok := pc.(*net.UDPConn); ok {
		if la, ok := uc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() != nil {
			b.bc = ipv4.NewPacketConn(uc)
		} else {
			b.bc = ipv6.NewPacketConn(uc)
		}
		b.msgs = make([]ipv4.Message, readBatch)
		for k := range b.msgs {
			b.msgs[k].Buffers = [][]byte{make([]byte, 64<<10)}
		}
	}
	return b
}

// next returns the next packet; the slice is valid until the following call.
// Only one goroutine may call it.
func (b *batchReader) next(scratch []byte) ([]byte, net.Addr, error) {
	if b.bc == nil {
		n, a, err := b.pc.ReadFrom(scratch)
		return scratch[:n], a, err
	}
	if b.i >= b.n {
		n, err := b.bc.ReadBatch(b.msgs, 0)
		if err != nil {
			return nil, nil, err
		}
		b.n, b.i = n, 0
	}
	m := &b.msgs[b.i]
	b.i++
	return m.Buffers[0][:m.N], m.Addr, nil
}

// batchWriter sends sealed packets several at a time (sendmmsg on Linux)
// from its own goroutine. kcp-go drops packets when its post-processing
// queue is full, so the sealed layer must drain it as fast as the socket
// allows; WriteTo blocks (back-pressure) only when this queue is full.
type batchWriter struct {
	pc net.PacketConn
	bc interface {
		WriteBatch([]ipv4.Message, int) (int, error)
	}
	q    chan outPacket
	done chan struct{}
	once sync.Once
	err  atomic.Value // error
}

type outPacket struct {
	buf  *[]byte
	addr net.Addr
}

const writeBatch = 64

func newBatchWriter(pc net.PacketConn) *batchWriter {
	w := &batchWriter{pc: pc, q: make(chan outPacket, 4096), done: make(chan struct{})}
	if uc, ok := pc.(*net.UDPConn); ok {
		if la, ok := uc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() != nil {
			w.bc = ipv4.NewPacketConn(uc)
		} else {
			w.bc = ipv6.NewPacketConn(uc)
		}
	}
	go w.loop()
	return w
}

func (w *batchWriter) loop() {
	msgs := make([]ipv4.Message, writeBatch)
	pkts := make([]outPacket, 0, writeBatch)
	for {
		select {
		case p := <-w.q:
			pkts = append(pkts[:0], p)
		case <-w.done:
			return
		}
	fill:
		for len(pkts) < writeBatch {
			select {
			case p := <-w.q:
				pkts = append(pkts, p)
			default:
				break fill
			}
		}
		var err error
		if w.bc != nil {
			for i, p := range pkts {
				msgs[i].Buffers = [][]byte{*p.buf}
				msgs[i].Addr = p.addr
			}
			todo := msgs[:len(pkts)]
			for len(todo) > 0 && err == nil {
				var n int
				n, err = w.bc.WriteBatch(todo, 0)
				todo = todo[n:]
			}
		} else {
			for _, p := range pkts {
				if _, err = w.pc.WriteTo(*p.buf, p.addr); err != nil {
					break
				}
			}
		}
		for _, p := range pkts {
			putPkt(p.buf)
		}
		if err != nil {
			w.err.Store(err)
			w.close()
			return
		}
	}
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
