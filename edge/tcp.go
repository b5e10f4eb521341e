package edge

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
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
		e.accepted.Add(1)
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.serveTCP(name, c, svc)
		}()
	}
}

// acceptRate is the TCP client connections accepted per second since the
// previous call (the heartbeat's conn_rate).
func (e *Edge) acceptRate() float64 {
	e.rateMu.Lock()
	defer e.rateMu.Unlock()
	now, n := time.Now(), e.accepted.Load()
	defer func() { e.rateAt, e.rateN = now, n }()
	if e.rateAt.IsZero() {
		return 0
	}
	s := now.Sub(e.rateAt).Seconds()
	if s <= 0 {
		return 0
	}
	return float64(n-e.rateN) / s
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
	var clientConn net.Conn = c
	var web *webRequest
	if name == "weblink" {
		h.Kind = wire.KindHTTP
		var failed string
		if web, failed = e.readWebRequest(c); web == nil {
			e.m.connections.WithLabelValues(name, failed).Inc()
			return
		}
		// Answers go to the TLS end when the edge ended TLS.
		clientConn, clientSide, h.Affinity = web.conn, web.body, web.sid
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Routing.OpenTimeout.D())
	tun, err := e.router.OpenStream(ctx, h)
	cancel()
	if err != nil {
		e.m.connections.WithLabelValues(name, resultOf(err)).Inc()
		e.log.Debug("tunnel open failed", "listener", name, "client", client.String(), "err", err)
		return
	}
	e.table.setPath(sess, tun.Path)
	e.m.pathSessions.WithLabelValues(name, tun.Path()).Inc()
	defer tun.Close()

	// Client bytes flow at once; the answer direction first waits for the
	// egress's status.
	var coreSide io.Reader = tun
	if web != nil && web.handshake {
		// The session this handshake opens sticks to its path.
		coreSide = &sidSniffer{r: tun, found: func(sid string) { e.router.Stick(sid, tun) }}
	}
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
			n, _ := copyCount(clientConn, coreSide)
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
