package transport

import (
	"io"
	"net"
	"sync"
	"time"
)

// memPipe returns two connected stream ends with buffering in each
// direction, like a real transport's flow-control window (net.Pipe is
// synchronous, which deadlocks protocols where both sides write first).
func memPipe() (net.Conn, net.Conn) {
	ab := newMemBuf()
	ba := newMemBuf()
	return &memStream{r: ba, w: ab}, &memStream{r: ab, w: ba}
}

const memWindow = 1 << 20

type memBuf struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	closed bool
}

func newMemBuf() *memBuf {
	b := &memBuf{}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *memBuf) write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for len(p) > 0 {
		for !b.closed && len(b.buf) >= memWindow {
			b.cond.Wait()
		}
		if b.closed {
			return n, io.ErrClosedPipe
		}
		k := min(len(p), memWindow-len(b.buf))
		b.buf = append(b.buf, p[:k]...)
		p = p[k:]
		n += k
		b.cond.Broadcast()
	}
	return n, nil
}

func (b *memBuf) read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.buf) == 0 && !b.closed {
		b.cond.Wait()
	}
	if len(b.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	b.cond.Broadcast()
	return n, nil
}

func (b *memBuf) close() {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

type memStream struct {
	r, w *memBuf
}

func (s *memStream) Read(p []byte) (int, error)  { return s.r.read(p) }
func (s *memStream) Write(p []byte) (int, error) { return s.w.write(p) }

// Close ends both directions, as Stream.Close does on real transports.
func (s *memStream) Close() error {
	s.r.close()
	s.w.close()
	return nil
}

func (s *memStream) LocalAddr() net.Addr              { return memAddr("stream") }
func (s *memStream) RemoteAddr() net.Addr             { return memAddr("stream") }
func (s *memStream) SetDeadline(time.Time) error      { return nil }
func (s *memStream) SetReadDeadline(time.Time) error  { return nil }
func (s *memStream) SetWriteDeadline(time.Time) error { return nil }
