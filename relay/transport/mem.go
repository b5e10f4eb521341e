package transport

import (
	"context"
	"fmt"
	"net"
	"sync"
)

// Mem is an in-process transport for unit tests: listeners are names in a
// shared MemNetwork, streams are net.Pipe pairs, datagrams are channels
// (dropped when the receiver lags, as on a real network).
type Mem struct {
	net  *MemNetwork
	name string
}

// MemNetwork is the address space of Mem transports.
type MemNetwork struct {
	mu        sync.Mutex
	listeners map[string]*memListener
}

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork { return &MemNetwork{listeners: map[string]*memListener{}} }

// Transport returns a Mem transport attached to n; name is its local address.
func (n *MemNetwork) Transport(name string) *Mem { return &Mem{net: n, name: name} }

// Name implements Transport.
func (m *Mem) Name() string { return "mem" }

// Listen implements Transport.
func (m *Mem) Listen(addr string) (Listener, error) {
	m.net.mu.Lock()
	defer m.net.mu.Unlock()
	if _, ok := m.net.listeners[addr]; ok {
		return nil, fmt.Errorf("mem listen %s: address in use", addr)
	}
	l := &memListener{net: m.net, addr: memAddr(addr), conns: make(chan *memConn, 16), done: make(chan struct{})}
	m.net.listeners[addr] = l
	return l, nil
}

// Dial implements Transport.
func (m *Mem) Dial(ctx context.Context, addr string) (Conn, error) {
	m.net.mu.Lock()
	l, ok := m.net.listeners[addr]
	m.net.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("mem dial %s: connection refused", addr)
	}
	a, b := newMemPair(memAddr(m.name), memAddr(addr))
	select {
	case l.conns <- b:
		return a, nil
	case <-l.done:
		return nil, fmt.Errorf("mem dial %s: connection refused", addr)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

type memListener struct {
	net   *MemNetwork
	addr  memAddr
	conns chan *memConn
	once  sync.Once
	done  chan struct{}
}

func (l *memListener) Accept(ctx context.Context) (Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *memListener) Addr() net.Addr { return l.addr }

func (l *memListener) Close() error {
	l.once.Do(func() {
		l.net.mu.Lock()
		delete(l.net.listeners, string(l.addr))
		l.net.mu.Unlock()
		close(l.done)
	})
	return nil
}

type memConn struct {
	local, remote memAddr
	peer          *memConn
	streams       chan net.Conn
	dgrams        chan []byte
	done          chan struct{}
	once          *sync.Once

	mu   sync.Mutex
	open []net.Conn
}

func newMemPair(a, b memAddr) (*memConn, *memConn) {
	done := make(chan struct{})
	once := &sync.Once{}
	x := &memConn{local: a, remote: b, streams: make(chan net.Conn, 64), dgrams: make(chan []byte, 256), done: done, once: once}
	y := &memConn{local: b, remote: a, streams: make(chan net.Conn, 64), dgrams: make(chan []byte, 256), done: done, once: once}
	x.peer, y.peer = y, x
	return x, y
}

func (c *memConn) track(s net.Conn) {
	c.mu.Lock()
	c.open = append(c.open, s)
	c.mu.Unlock()
	select {
	case <-c.done: // closed meanwhile: Close may have missed it
		_ = s.Close()
	default:
	}
}

func (c *memConn) OpenStream(ctx context.Context) (Stream, error) {
	select {
	case <-c.done:
		// Without this the select below may still hand the stream over
		// (both cases ready), and it would never end.
		return nil, ErrClosed
	default:
	}
	a, b := memPipe()
	c.track(a)
	c.peer.track(b)
	select {
	case c.peer.streams <- b:
		return a, nil
	case <-c.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *memConn) AcceptStream(ctx context.Context) (Stream, error) {
	select {
	case s := <-c.streams:
		return s, nil
	case <-c.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *memConn) SendDatagram(b []byte) error {
	if len(b) > c.MaxDatagramSize() {
		return ErrDatagramTooLarge
	}
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	select {
	case c.peer.dgrams <- append([]byte(nil), b...):
	default: // receiver lags: drop, like a full socket buffer
	}
	return nil
}

func (c *memConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	select {
	case d := <-c.dgrams:
		return d, nil
	case <-c.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *memConn) MaxDatagramSize() int  { return 1200 }
func (c *memConn) Done() <-chan struct{} { return c.done }
func (c *memConn) LocalAddr() net.Addr   { return c.local }
func (c *memConn) RemoteAddr() net.Addr  { return c.remote }

func (c *memConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		for _, x := range []*memConn{c, c.peer} {
			x.mu.Lock()
			for _, s := range x.open {
				_ = s.Close()
			}
			x.mu.Unlock()
		}
	})
	return nil
}
