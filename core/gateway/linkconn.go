package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
)

var drainKick = imapi.Kick{Code: imapi.ErrUnavailable, Reason: ReasonDraining}

// linkConn is a Link connection and its Transport. Writes go through a
// bounded queue drained by a writer goroutine that exists only while there
// is something to write, so an idle connection costs one goroutine (its
// reader) and no buffers.
type linkConn struct {
	g    *Gateway
	c    *link.Conn
	ip   netip.Addr
	sess *Session

	mu      sync.Mutex
	queue   []link.Frame
	spare   []link.Frame
	held    bool // pushes wait until the login answer is written
	writing bool
	// unflushed: a room writer left part of a frame in the link.Conn; the
	// writer goroutine sends it even when the queue is empty.
	unflushed bool
	closing   bool // close the connection once the queue is written
	dead      bool

	// Idle parking (see poller): fd is the socket, or -1 when the
	// connection always keeps its reader goroutine.
	fd     int32
	parked bool
	// admitted: the connection counts against the limits by ip; finished:
	// finish ran. (Beside the other flags they take no padding of their
	// own: linkConn stays in the 144-byte size class.)
	admitted bool
	finished bool
	// idleAt is when a parked connection that stays silent is closed
	// (unix nanoseconds); the poller's sweep closes it, so a parked
	// connection holds no timer of its own.
	idleAt int64

	// What finish releases: raw is the socket serveConn took (under a
	// PROXY header's reader, for trusted sources).
	raw net.Conn
}

// serveConn admits a new TCP connection, accepted at the time given, and
// starts its goroutine. plain connections (pre-terminated Link) are served
// only from trusted addresses.
func (g *Gateway) serveConn(nc net.Conn, plain bool, accepted time.Time) {
	raw := nc
	ip := addrIP(nc.RemoteAddr())
	trusted := g.isTrusted(ip)
	if plain && !trusted {
		g.m.refused.WithLabelValues("untrusted_plain").Inc()
		_ = nc.Close()
		return
	}
	// Connections from trusted proxies are counted against the limits by
	// the client address of their PROXY header, once it is read.
	if !trusted && !g.admit(ip) {
		_ = nc.Close()
		return
	}
	g.connMu.Lock()
	if g.draining.Load() {
		g.connMu.Unlock()
		if !trusted {
			g.release(ip)
		}
		_ = nc.Close()
		return
	}
	g.conns[raw] = struct{}{}
	g.connWG.Add(1)
	g.connMu.Unlock()
	go g.admitAndLogin(raw, trusted, ip, plain, accepted)
}

// admitAndLogin reads the PROXY header (trusted sources), runs the handshake
// and the login, then hands the connection to a fresh goroutine for its read
// loop. The hand-off matters for memory: the login path grows this
// goroutine's stack, while the read loop of an idle connection needs little,
// and a new goroutine starts small.
func (g *Gateway) admitAndLogin(raw net.Conn, trusted bool, ip netip.Addr, plain bool, accepted time.Time) {
	nc := raw
	admitted := !trusted
	if trusted {
		pc := proxyproto.NewConn(raw, proxyproto.WithPolicy(proxyproto.USE),
			proxyproto.SetReadHeaderTimeout(g.cfg.HandshakeTimeout.D()), proxyproto.WithBufferSize(512))
		_ = raw.SetReadDeadline(time.Now().Add(g.cfg.HandshakeTimeout.D()))
		if _, err := pc.Read(nil); err != nil {
			g.m.refused.WithLabelValues("proxy_header").Inc()
			g.endConn(raw, ip, admitted)
			return
		}
		if plain && pc.ProxyHeader() == nil {
			// The client's address is what limits and logs need.
			g.m.refused.WithLabelValues("proxy_header").Inc()
			g.endConn(raw, ip, admitted)
			return
		}
		ip = addrIP(pc.RemoteAddr())
		if !g.admit(ip) {
			g.endConn(raw, ip, admitted)
			return
		}
		admitted = true
		nc = pc
	}
	l := g.login(nc, ip, plain, accepted)
	if l == nil {
		g.endConn(raw, ip, admitted)
		return
	}
	l.raw, l.admitted = raw, admitted
	l.fd = -1
	if g.poller != nil && nc == raw {
		l.fd = socketFD(raw)
	}
	go l.serve()
}

// endConn closes a connection that serveConn took and releases what it
// counted.
func (g *Gateway) endConn(raw net.Conn, ip netip.Addr, admitted bool) {
	g.connMu.Lock()
	delete(g.conns, raw)
	g.connMu.Unlock()
	_ = raw.Close()
	if admitted {
		g.release(ip)
	}
	g.connWG.Done()
}

// serve runs the read loop in a fresh goroutine; the connection ends when it
// returns without parking.
func (l *linkConn) serve() {
	if !l.readLoop() {
		l.finish()
	}
}

// finish releases everything the connection holds, once.
func (l *linkConn) finish() {
	l.mu.Lock()
	done := l.finished
	l.finished = true
	l.mu.Unlock()
	if done {
		return
	}
	if l.fd >= 0 {
		l.g.poller.forget(l)
	}
	l.sess.Close()
	l.g.endConn(l.raw, l.ip, l.admitted)
}

// park hands an idle connection to the poller. It returns false when the
// connection must keep reading (it is closing, or the poller refused).
func (l *linkConn) park() bool {
	l.mu.Lock()
	if l.dead || l.closing {
		l.mu.Unlock()
		return false
	}
	l.parked = true
	l.idleAt = time.Now().Add(l.g.cfg.IdleTimeout.D()).UnixNano()
	if len(l.queue) == 0 && !l.writing {
		// An idle connection keeps no write buffers.
		l.queue, l.spare = nil, nil
	}
	l.mu.Unlock()
	if err := l.g.poller.watch(l); err != nil {
		l.g.poller.forget(l)
		l.mu.Lock()
		taken := !l.parked
		l.parked = false
		l.mu.Unlock()
		return taken // someone else (a close) took over: stop here
	}
	return true
}

// wake is called by the poller when a parked connection's socket is
// readable: it reports whether the connection was parked, and is now the
// caller's to read.
func (l *linkConn) wake() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.parked {
		return false
	}
	l.parked = false
	return true
}

// idleDue reports whether l is parked past its idle deadline.
func (l *linkConn) idleDue(now int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.parked && now >= l.idleAt
}

// idleExpired closes a parked connection that stayed silent too long.
func (l *linkConn) idleExpired() {
	l.mu.Lock()
	if !l.parked {
		l.mu.Unlock()
		return
	}
	l.parked = false
	l.dead = true
	l.mu.Unlock()
	_ = l.c.NetConn().Close()
	l.finish()
}

// closeNow closes the socket; a parked connection has no reader to notice,
// so it is finished here.
func (l *linkConn) closeNow() {
	_ = l.c.NetConn().Close()
	l.mu.Lock()
	wasParked := l.parked
	l.parked = false
	l.mu.Unlock()
	if wasParked {
		l.finish()
	}
}

func addrIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func (g *Gateway) isTrusted(ip netip.Addr) bool {
	for _, p := range g.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// admit counts a connection against the limits.
func (g *Gateway) admit(ip netip.Addr) bool {
	var late net.Conn
	defer func() {
		if late != nil {
			_ = late.Close() // outside connMu
		}
	}()
	g.connMu.Lock()
	defer g.connMu.Unlock()
	if g.cfg.MaxConnectionsPerIP > 0 && g.perIP[ip] >= g.cfg.MaxConnectionsPerIP {
		g.m.refused.WithLabelValues("per_ip").Inc()
		return false
	}
	if g.cfg.MaxConnections > 0 && g.totalConns-g.evicting >= g.cfg.MaxConnections {
		if late = g.evictLateHelloLocked(time.Now()); late == nil {
			g.m.refused.WithLabelValues("max_connections").Inc()
			return false
		}
	}
	g.perIP[ip]++
	g.totalConns++
	g.m.connections.Inc()
	return true
}

func (g *Gateway) release(ip netip.Addr) {
	g.connMu.Lock()
	if g.perIP[ip]--; g.perIP[ip] <= 0 {
		delete(g.perIP, ip)
	}
	g.totalConns--
	g.connMu.Unlock()
	g.m.connections.Dec()
}

func (g *Gateway) protoErr(err error) {
	reason := "io"
	var he *link.HandshakeError
	switch {
	case errors.As(err, &he):
		reason = "unknown_key"
	case errors.Is(err, link.ErrBadHello):
		reason = "handshake"
	case errors.Is(err, link.ErrDecrypt):
		reason = "decrypt"
	case errors.Is(err, link.ErrFrameTooLarge):
		reason = "frame_too_large"
	case errors.Is(err, link.ErrBadFrame):
		reason = "bad_frame"
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded):
		return
	}
	g.m.protocolErrors.WithLabelValues(reason).Inc()
}

// errNoHandshake: the connection was closed without a handshake by the
// admission (counted in handshake_drops_total).
var errNoHandshake = errors.New("gateway: closed without a handshake")

// handshake reads the client's hello, waits for a handshake slot (FIFO,
// until handshake_wait after the accept) and answers it.
func (g *Gateway) handshake(ctx context.Context, nc net.Conn, accepted time.Time) (*link.Conn, error) {
	w := g.awaitHello(nc, accepted)
	hello, err := link.ReadHello(ctx, nc)
	if g.helloDone(w) {
		g.m.handshakeDrops.WithLabelValues("hello_late").Inc()
		return nil, errNoHandshake
	}
	if err != nil {
		return nil, err
	}
	if !g.hs.acquire(accepted.Add(g.cfg.HandshakeWait.D()), g.stop) {
		return nil, errNoHandshake
	}
	defer g.hs.release()
	// A client sends nothing after its hello until it has the answer: EOF
	// here means it gave up while it waited, and its handshake would be
	// CPU spent for no one.
	if peerClosed(nc) {
		g.m.handshakeDrops.WithLabelValues("client_gone").Inc()
		return nil, errNoHandshake
	}
	return hello.Answer(ctx, nc, g.ring, g.lim)
}

// login runs the handshake (none on a plain connection) and the login of a
// connection accepted at the time given. It returns the logged-in
// connection, or nil when it failed (the caller closes it).
func (g *Gateway) login(nc net.Conn, ip netip.Addr, plain bool, accepted time.Time) *linkConn {
	var c *link.Conn
	if plain {
		c = link.NewPlain(nc, g.lim)
	} else {
		hctx, cancel := context.WithTimeout(context.Background(), g.cfg.HandshakeTimeout.D())
		var err error
		c, err = g.handshake(hctx, nc, accepted)
		cancel()
		if errors.Is(err, errNoHandshake) {
			return nil
		}
		if err != nil {
			g.protoErr(err)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				g.m.protocolErrors.WithLabelValues("handshake_timeout").Inc()
			}
			return nil
		}
	}
	l := &linkConn{g: g, c: c, ip: ip, held: true}

	// Login.
	_ = nc.SetReadDeadline(time.Now().Add(g.cfg.LoginTimeout.D()))
	f, err := c.ReadFrame()
	if err != nil {
		g.protoErr(err)
		return nil
	}
	g.m.framesIn.Inc()
	if f.Op != imapi.OpLogin || f.IsResponse() || f.IsPush() {
		g.m.protocolErrors.WithLabelValues("not_logged_in").Inc()
		l.writeNow(link.Frame{Op: f.Op, Flags: link.FlagResponse, Seq: f.Seq, Code: imapi.ErrNotLoggedIn,
			Body: errorBody(imapi.ErrNotLoggedIn, "the first frame must be login")})
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.LoginTimeout.D())
	// The login is answered before any further frame is read: requests that
	// a client pipelines behind it (after an edge's own answer, LINK.md
	// section 7) wait in the socket, and pushes wait in the held queue.
	s, resp, err := g.loginFrom(ctx, l, ip.String(), f.Body, plain)
	cancel()
	if err != nil {
		var ie *imapi.Error
		if !errors.As(err, &ie) {
			ie = imapi.Errorf(imapi.ErrInternal, "%v", err)
		}
		l.writeNow(link.Frame{Op: imapi.OpLogin, Flags: link.FlagResponse, Seq: f.Seq, Code: ie.Code, Body: refusalBody(ie)})
		return nil
	}
	l.sess = s
	if !l.writeNow(link.Frame{Op: imapi.OpLogin, Flags: link.FlagResponse, Seq: f.Seq, Body: resp}) {
		s.Close()
		return nil
	}
	l.mu.Lock()
	l.held = false
	l.kickWriter()
	l.mu.Unlock()
	return l
}

// readLoop reads requests until the connection ends (false) or, with the
// poller, until it has nothing to read and is parked (true).
func (l *linkConn) readLoop() bool {
	g, c, nc := l.g, l.c, l.c.NetConn()
	idle := g.cfg.IdleTimeout.D()
	for {
		if l.fd >= 0 && c.Buffered() == 0 && !readable(nc) && l.park() {
			return true
		}
		_ = nc.SetReadDeadline(time.Now().Add(idle))
		f, err := c.ReadFrame()
		if err != nil {
			l.readFailed(err)
			return false
		}
		if !l.handle(f, nil) {
			return false
		}
	}
}

// serveWoken reads what a woken connection has, on one of the poller's
// readers: the frames in its read-ahead and in the socket, never waiting
// for the socket. The connection parks again when it has nothing more. A
// frame that has not fully arrived (or is larger than the read-ahead) is
// left to a reader goroutine of the connection's own, which waits for the
// rest within idle_timeout, so a slow client never holds a pool reader.
func (l *linkConn) serveWoken(w *link.FrameWriter) {
	c, nc := l.c, l.c.NetConn()
	for {
		if !c.FrameReady() {
			if !readable(nc) {
				if c.Buffered() == 0 && l.park() {
					return
				}
				go l.serve() // part of a frame, or parking was refused
				return
			}
			_ = nc.SetReadDeadline(time.Now().Add(l.g.cfg.IdleTimeout.D()))
			more, err := c.ReadAhead()
			if err != nil {
				l.readFailed(err)
				l.finish()
				return
			}
			if !more {
				go l.serve() // a frame larger than the read-ahead
				return
			}
			continue
		}
		f, err := c.ReadFrame()
		if err != nil {
			l.readFailed(err)
			l.finish()
			return
		}
		if !l.handle(f, w) {
			l.finish()
			return
		}
	}
}

// readFailed ends the connection's reading after err.
func (l *linkConn) readFailed(err error) {
	l.g.protoErr(err)
	l.mu.Lock()
	l.dead = true
	l.mu.Unlock()
}

// handle serves one frame read from the client; false ends the connection.
// A heartbeat is answered at once: by w, a pool reader's writer, when the
// connection has nothing else to write (no writer goroutine for the
// answer), else through the queue.
func (l *linkConn) handle(f link.Frame, w *link.FrameWriter) bool {
	g := l.g
	g.m.framesIn.Inc()
	if f.IsResponse() || f.IsPush() {
		g.m.protocolErrors.WithLabelValues("bad_frame").Inc()
		return false
	}
	if f.Op == imapi.OpHeartbeat {
		answer := link.Frame{Op: f.Op, Flags: link.FlagResponse, Seq: f.Seq}
		if w == nil {
			l.enqueue(answer, true)
			return true
		}
		l.mu.Lock()
		if l.dead || l.closing {
			l.mu.Unlock()
			return true
		}
		l.writeLocked(w, &answer, true)
		return true
	}
	op, seq := f.Op, f.Seq
	l.sess.Go(op, f.Body, func(r Reply) {
		l.enqueue(link.Frame{Op: op, Flags: link.FlagResponse, Seq: seq, Code: r.Code, Body: r.Body}, true)
		if op == imapi.OpLogout && r.Code == imapi.OK {
			l.closeAfterFlush()
		}
	})
	return true
}

// writeNow writes a frame directly (before the writer goroutine may run).
func (l *linkConn) writeNow(f link.Frame) bool {
	_ = l.c.NetConn().SetWriteDeadline(time.Now().Add(l.g.cfg.WriteTimeout.D()))
	if err := l.c.WriteFrame(f); err != nil {
		return false
	}
	l.g.m.framesOut.Inc()
	return true
}

// Push implements Transport.
func (l *linkConn) Push(op imapi.Op, body []byte) bool {
	return l.enqueue(link.Frame{Op: op, Flags: link.FlagPush, Body: body}, false)
}

// Close implements Transport: send the kick, then close.
func (l *linkConn) Close(k imapi.Kick) {
	body, _ := json.Marshal(k)
	l.mu.Lock()
	if !l.closing && !l.dead {
		l.queue = append(l.queue, link.Frame{Op: imapi.OpKick, Flags: link.FlagPush, Body: body})
		l.closing = true
		l.kickWriter()
	}
	l.mu.Unlock()
}

func (l *linkConn) closeAfterFlush() {
	l.mu.Lock()
	l.closing = true
	l.kickWriter()
	l.mu.Unlock()
}

// enqueue queues a frame. A full queue makes the connection a slow
// consumer: responses then close it here; pushes report false and the hub
// drops the session.
func (l *linkConn) enqueue(f link.Frame, response bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.enqueueLocked(f, response)
}

// enqueueLocked is enqueue with l.mu held.
func (l *linkConn) enqueueLocked(f link.Frame, response bool) bool {
	if l.dead || l.closing {
		return true // the session is ending; nothing more is sent
	}
	if len(l.queue) >= l.g.cfg.SendQueue {
		l.dead = true
		go l.closeNow() // not under l.mu
		if response {
			l.g.m.slowConsumers.Inc()
		}
		return false
	}
	l.queue = append(l.queue, f)
	l.kickWriter()
	return true
}

// queued is how many frames wait for the writer.
func (l *linkConn) queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}

// kickWriter starts the writer goroutine if needed; l.mu must be held.
func (l *linkConn) kickWriter() {
	if l.writing || l.held || l.dead {
		return
	}
	if len(l.queue) == 0 && !l.closing {
		return
	}
	l.writing = true
	go l.writeLoop()
}

func (l *linkConn) writeLoop() {
	for {
		l.mu.Lock()
		batch := l.queue
		if len(batch) == 0 && l.unflushed && !l.dead {
			l.unflushed = false
			l.mu.Unlock()
			_ = l.c.NetConn().SetWriteDeadline(time.Now().Add(l.g.cfg.WriteTimeout.D()))
			l.writeFailed(l.c.Flush())
			continue
		}
		if len(batch) == 0 || l.dead {
			l.writing = false
			closeNow := l.closing || l.dead
			if l.parked {
				// The reader parked meanwhile (a heartbeat's answer): an
				// idle connection keeps no write buffers.
				l.queue, l.spare = nil, nil
			} else {
				l.queue = l.queue[:0]
			}
			l.mu.Unlock()
			if closeNow {
				l.closeNow()
			}
			return
		}
		l.queue, l.spare = l.spare[:0], nil
		l.unflushed = false // WriteFrames sends the rest first
		l.mu.Unlock()

		_ = l.c.NetConn().SetWriteDeadline(time.Now().Add(l.g.cfg.WriteTimeout.D()))
		err := l.c.WriteFrames(batch)
		l.g.m.framesOut.Add(float64(len(batch)))
		clear(batch)
		l.mu.Lock()
		if cap(batch) <= 64 {
			l.spare = batch[:0]
		}
		l.mu.Unlock()
		l.writeFailed(err)
	}
}

// writeFailed marks the connection dead after a write error (not after a
// frame refused for its size).
func (l *linkConn) writeFailed(err error) {
	if err == nil || errors.Is(err, link.ErrFrameTooLarge) {
		return
	}
	l.mu.Lock()
	if !l.dead && errors.Is(err, os.ErrDeadlineExceeded) {
		// The client stopped reading: as slow as a full queue.
		l.g.m.slowConsumers.Inc()
	}
	l.dead = true
	l.mu.Unlock()
}
