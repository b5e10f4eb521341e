package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// forwardMarker starts a connection that carries a forwarded request instead
// of raft RPCs (raft's own RPC type bytes are small integers).
const forwardMarker = 'F'

// tlsStream is raft's StreamLayer over mutual TLS. Every connection, raft's
// and forwarded requests alike, is authenticated by the cluster CA. Block
// simulates a network partition in tests.
type tlsStream struct {
	ln      net.Listener
	tlsConf *tls.Config
	raftCh  chan net.Conn
	forward func(net.Conn)
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup

	mu      sync.Mutex
	blocked bool
	conns   map[net.Conn]struct{}
}

func newTLSStream(ln net.Listener, conf *tls.Config, forward func(net.Conn)) *tlsStream {
	s := &tlsStream{ln: ln, tlsConf: conf, raftCh: make(chan net.Conn), forward: forward,
		done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (s *tlsStream) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blocked {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *tlsStream) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

type trackedConn struct {
	net.Conn
	s    *tlsStream
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.s.untrack(c) })
	return c.Conn.Close()
}

func (s *tlsStream) acceptLoop() {
	defer s.wg.Done()
	for {
		raw, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handshake(raw)
		}()
	}
}

func (s *tlsStream) handshake(raw net.Conn) {
	tc := tls.Server(raw, s.tlsConf)
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return
	}
	br := bufio.NewReader(tc)
	b, err := br.Peek(1)
	if err != nil {
		tc.Close()
		return
	}
	raw.SetDeadline(time.Time{})
	c := &trackedConn{Conn: &peekedConn{Conn: tc, r: br}, s: s}
	if !s.track(c) {
		tc.Close()
		return
	}
	if b[0] == forwardMarker {
		br.Discard(1)
		s.forward(c)
		c.Close()
		return
	}
	select {
	case s.raftCh <- c:
	case <-s.done:
		c.Close()
	}
}

// Accept implements net.Listener for raft.
func (s *tlsStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.raftCh:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (s *tlsStream) Close() error {
	s.once.Do(func() {
		close(s.done)
		s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.(*trackedConn).Conn.Close()
		}
		s.mu.Unlock()
	})
	return nil
}

func (s *tlsStream) wait() { s.wg.Wait() }

// Addr implements net.Listener.
func (s *tlsStream) Addr() net.Addr { return s.ln.Addr() }

var errBlocked = errors.New("cluster: transport blocked (partition)")

// Dial implements raft.StreamLayer.
func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.dial(context.Background(), string(addr), timeout)
}

func (s *tlsStream) dial(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	s.mu.Lock()
	blocked := s.blocked
	s.mu.Unlock()
	if blocked {
		return nil, errBlocked
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.tlsConf}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, s: s}
	if !s.track(tc) {
		c.Close()
		return nil, errBlocked
	}
	return tc, nil
}

// setBlocked cuts (or restores) all traffic through this node's transport:
// a partition as seen from this node.
func (s *tlsStream) setBlocked(b bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blocked = b
	if b {
		for c := range s.conns {
			c.(*trackedConn).Conn.Close()
			delete(s.conns, c)
		}
	}
}
