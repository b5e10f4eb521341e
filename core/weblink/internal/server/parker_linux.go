//go:build linux

package server

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// parker keeps idle WebSocket connections without a goroutine: a connection
// that has been quiet for a moment registers its socket with an epoll set
// (level-triggered, one-shot) and its read goroutine exits; when the socket
// becomes readable (or hangs up) a new goroutine resumes reading. An idle
// connection then costs no stack, which is most of what a goroutine-per-
// connection server spends on it.
type parker struct {
	epfd   int
	wakefd int // eventfd that ends run
	mu     sync.Mutex
	conns  map[uint32]*wsConn
	parked prometheus.Gauge // len(conns)
	next   atomic.Uint32
	done   chan struct{}
}

const wakeToken = 0

func newParker(parked prometheus.Gauge) (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeToken}); err != nil {
		unix.Close(epfd)
		unix.Close(wfd)
		return nil, err
	}
	p := &parker{epfd: epfd, wakefd: wfd, conns: map[uint32]*wsConn{}, parked: parked, done: make(chan struct{})}
	go p.run()
	return p, nil
}

// parkable returns the raw connection whose socket can be watched, or nil
// when reads go through a user-space buffer that epoll cannot see (TLS).
// A PROXY-protocol connection qualifies: its header buffer is at most as big
// as net/http's first read, so it is drained before the upgrade.
func parkable(c net.Conn) syscall.Conn {
	switch t := c.(type) {
	case *net.TCPConn:
		return t
	case *proxyproto.Conn:
		if tc, ok := t.TCPConn(); ok {
			return tc
		}
	}
	return nil
}

func (p *parker) token() uint32 {
	for {
		if t := p.next.Add(1); t != wakeToken {
			return t
		}
	}
}

// park registers c; false when it could not (the caller keeps reading).
func (p *parker) park(c *wsConn) bool {
	if c.token == 0 {
		c.token = p.token()
	}
	rc, err := c.raw.SyscallConn()
	if err != nil {
		return false
	}
	p.mu.Lock()
	p.conns[c.token] = c
	p.parked.Set(float64(len(p.conns)))
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(c.token)}
	var cerr error
	err = rc.Control(func(fd uintptr) {
		op := unix.EPOLL_CTL_MOD
		if !c.registered {
			op = unix.EPOLL_CTL_ADD
		}
		cerr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
		if cerr == nil {
			c.registered = true
		}
	})
	if err != nil || cerr != nil {
		p.mu.Lock()
		delete(p.conns, c.token)
		p.parked.Set(float64(len(p.conns)))
		p.mu.Unlock()
		return false
	}
	return true
}

// unpark takes c back if it is parked; the caller then owns its end.
func (p *parker) unpark(c *wsConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.token == 0 || p.conns[c.token] != c {
		return false
	}
	delete(p.conns, c.token)
	p.parked.Set(float64(len(p.conns)))
	return true
}

func (p *parker) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for i := 0; i < n; i++ {
			tok := uint32(events[i].Fd)
			if tok == wakeToken {
				return
			}
			p.mu.Lock()
			c := p.conns[tok]
			delete(p.conns, tok)
			p.parked.Set(float64(len(p.conns)))
			p.mu.Unlock()
			if c != nil {
				go c.resume()
			}
		}
	}
}

func (p *parker) close() {
	var one = [8]byte{1}
	_, _ = unix.Write(p.wakefd, one[:])
	<-p.done
	unix.Close(p.epfd)
	unix.Close(p.wakefd)
}
