package gateway

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/longlink/longlink/core/link"
)

// poller watches the sockets of idle Link connections with its own epoll
// instance, so that an idle connection holds no goroutine (and no goroutine
// stack): when a connection has nothing to read, its reader registers the
// socket here (one-shot) and exits; when the socket becomes readable, one
// of a fixed set of readers (two per CPU) reads what it has and parks it
// again (linkConn.serveWoken). Thousands of connections woken at once (their
// clients' heartbeats) then cost no goroutine each: every goroutine the
// process ever ran at once leaves its descriptor (~450 B) allocated for
// good. The sockets stay in Go's own netpoller too; reads go through
// net.Conn as usual.
type poller struct {
	epfd    int
	mu      sync.Mutex
	m       map[int32]*linkConn
	done    chan struct{}
	woken   chan *linkConn // readable connections, for the readers
	readers sync.WaitGroup
}

func newPoller() (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &poller{epfd: fd, m: make(map[int32]*linkConn), done: make(chan struct{}),
		woken: make(chan *linkConn, 1024)}, nil
}

// run dispatches readiness until close. It blocks one OS thread in
// epoll_wait, which is what it is for. It starts the readers, which end
// after it.
func (p *poller) run() {
	n := max(4, 2*runtime.GOMAXPROCS(0))
	p.readers.Add(n)
	for range n {
		go p.read()
	}
	defer close(p.done)
	defer close(p.woken)
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
			fd := events[i].Fd
			if fd == -1 {
				return // the wake-up of close
			}
			p.mu.Lock()
			l := p.m[fd]
			p.mu.Unlock()
			if l != nil && l.wake() {
				p.woken <- l
			}
		}
	}
}

// read serves woken connections until run ends. A reader never waits for a
// socket (serveWoken), so the readers keep up with the poller.
func (p *poller) read() {
	defer p.readers.Done()
	w := link.NewFrameWriter()
	for l := range p.woken {
		l.serveWoken(w)
	}
}

// sweep closes the parked connections that stayed silent past their idle
// deadline, until close: one sweep over the parked set every idle/8 (at
// most a second late) instead of a timer per connection.
func (p *poller) sweep(idle time.Duration) {
	t := time.NewTicker(min(max(idle/8, 10*time.Millisecond), time.Second))
	defer t.Stop()
	var due []*linkConn
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		p.mu.Lock()
		for _, l := range p.m {
			if l.idleDue(now) {
				due = append(due, l)
			}
		}
		p.mu.Unlock()
		for _, l := range due {
			l.idleExpired()
		}
		clear(due)
		due = due[:0]
	}
}

// watch arms a one-shot read notification for l's socket.
func (p *poller) watch(l *linkConn) error {
	p.mu.Lock()
	p.m[l.fd] = l
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: l.fd}
	err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(l.fd), &ev)
	if errors.Is(err, unix.ENOENT) {
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(l.fd), &ev)
	}
	return err
}

// forget drops l (its socket is being closed; the kernel removes the socket
// from the epoll set when it is closed).
// parked returns the connections the poller watches now.
func (p *poller) parked() []*linkConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*linkConn, 0, len(p.m))
	for _, l := range p.m {
		out = append(out, l)
	}
	return out
}

func (p *poller) forget(l *linkConn) {
	p.mu.Lock()
	if p.m[l.fd] == l {
		delete(p.m, l.fd)
	}
	p.mu.Unlock()
}

func (p *poller) close() {
	// An eventfd registered with Fd -1 wakes run so that it returns.
	efd, err := unix.Eventfd(1, unix.EFD_CLOEXEC)
	if err == nil {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, efd, &ev)
		<-p.done
		_ = unix.Close(efd)
	}
	p.readers.Wait()
	_ = unix.Close(p.epfd)
}

// socketFD returns the descriptor of a plain TCP connection, or -1.
func socketFD(nc net.Conn) int32 {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return -1
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := int32(-1)
	_ = rc.Control(func(s uintptr) { fd = int32(s) })
	return fd
}

// readable reports whether the socket has bytes (or EOF, or an error) to
// read now, without blocking.
func readable(nc net.Conn) bool {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return true
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return true
	}
	ready := true
	var b [1]byte
	_ = rc.Read(func(s uintptr) bool {
		_, _, err := unix.Recvfrom(int(s), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		ready = !errors.Is(err, syscall.EAGAIN)
		return true
	})
	return ready
}

// peerClosed reports whether the peer has closed the socket (a read would
// return EOF or a reset now) while nothing is left to read before that.
func peerClosed(nc net.Conn) bool {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	var b [1]byte
	_ = rc.Read(func(s uintptr) bool {
		n, _, err := unix.Recvfrom(int(s), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		gone = (n == 0 && err == nil) || errors.Is(err, syscall.ECONNRESET)
		return true
	})
	return gone
}
