package edge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/longlink/longlink/relay"
	"github.com/longlink/longlink/relay/wire"
)

func (e *Edge) acceptLoop(name string, ln net.Listener, svc TCPListener) {
	defer e.wg.Done()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, do not spin.
			delay = min(max(delay*2, 5*time.Millisecond), time.Second)
			e.log.Warn("accept", "listener", name, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.serveTCP(name, c, svc)
		}()
	}
}

func resultOf(err error) string {
	var se *wire.StatusError
	switch {
	case errors.Is(err, errTooMany):
		return "limit_total"
	case errors.Is(err, errPerIP):
		return "limit_ip"
	case errors.Is(err, errDraining):
		return "draining"
	case errors.Is(err, relay.ErrNoRoute):
		return "no_route"
	case errors.As(err, &se):
		return "refused"
	}
	return "error"
}

// serveTCP carries one client connection through a tunnel stream.
func (e *Edge) serveTCP(name string, c net.Conn, svc TCPListener) {
	start := time.Now()
	client := addrPort(c.RemoteAddr())
	var once sync.Once
	closeClient := func() { once.Do(func() { _ = c.Close() }) }
	sess, err := e.table.add(name, client, closeClient)
	if err != nil {
		e.m.connections.WithLabelValues(name, resultOf(err)).Inc()
		_ = c.Close()
		return
	}
	defer e.table.remove(sess)
	defer closeClient()
	active := e.m.active.WithLabelValues(name)
	active.Inc()
	defer active.Dec()
	if svc.Terminate != nil {
		e.serveLinkTerminated(name, c, svc.Terminate, sess, start)
		return
	}

	h := wire.Header{Kind: wire.KindLink, Cluster: e.cfg.Cluster, Service: svc.Service, Client: client}
	var clientSide io.Reader = c
	if name == "weblink" {
		h.Kind = wire.KindHTTP
		// Read the request line to find the Socket.IO session id, so that
		// every request of one session takes the same path.
		_ = c.SetReadDeadline(time.Now().Add(e.cfg.Limits.FirstByteTimeout.D()))
		br := bufio.NewReaderSize(c, 4096)
		line, err := br.ReadSlice('\n')
		_ = c.SetReadDeadline(time.Time{})
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			e.m.connections.WithLabelValues(name, "no_request").Inc()
			return
		}
		h.Affinity = socketIOSid(line)
		first := bytes.Clone(line)
		clientSide = io.MultiReader(bytes.NewReader(first), br)
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Routing.OpenTimeout.D())
	tun, err := e.router.OpenStream(ctx, h)
	cancel()
	if err != nil {
		e.m.connections.WithLabelValues(name, resultOf(err)).Inc()
		e.log.Debug("tunnel open failed", "listener", name, "client", client.String(), "err", err)
		return
	}
	e.table.setPath(sess, tun.Path())
	e.m.pathSessions.WithLabelValues(name, tun.Path()).Inc()
	defer tun.Close()

	// Client bytes flow at once; the answer direction first waits for the
	// egress's status.
	up := e.m.bytes.WithLabelValues(name, "up")
	down := e.m.bytes.WithLabelValues(name, "down")
	done := make(chan struct{}, 2)
	go func() {
		n, _ := copyCount(tun, clientSide)
		up.Add(float64(n))
		_ = tun.Close()
		done <- struct{}{}
	}()
	go func() {
		err := tun.Status()
		if err != nil {
			e.m.connections.WithLabelValues(name, resultOf(err)).Inc()
			e.log.Debug("tunnel refused", "listener", name, "client", client.String(), "err", err)
		} else {
			e.m.connections.WithLabelValues(name, "ok").Inc()
			e.m.tunnelOpen.WithLabelValues(name).Observe(time.Since(start).Seconds())
			n, _ := copyCount(c, tun)
			down.Add(float64(n))
		}
		closeClient()
		done <- struct{}{}
	}()
	<-done
	closeClient()
	_ = tun.Close()
	<-done
}

func copyCount(dst io.Writer, src io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return io.CopyBuffer(dst, onlyReader{src}, *bp)
}

// onlyReader hides WriterTo/ReaderFrom so io.CopyBuffer uses our buffer.
type onlyReader struct{ io.Reader }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// socketIOSid extracts the sid query parameter of an HTTP request line
// ("GET /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1").
func socketIOSid(line []byte) string {
	parts := bytes.SplitN(bytes.TrimSpace(line), []byte(" "), 3)
	if len(parts) < 2 {
		return ""
	}
	u, err := url.ParseRequestURI(string(parts[1]))
	if err != nil {
		return ""
	}
	sid := u.Query().Get("sid")
	if len(sid) > wire.MaxAffinityLen {
		return ""
	}
	return sid
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
