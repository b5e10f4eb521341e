package server

import (
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/longlink/longlink/core/weblink/internal/eio"
	"github.com/longlink/longlink/core/weblink/internal/wsframe"
)

// smallRead is the read buffer every WebSocket connection keeps. Frames that
// do not fit borrow a pooled buffer for as long as they are incomplete, so an
// idle connection holds only this.
const smallRead = 64

// wsConn is one WebSocket connection: the transport of a session, or a probe
// that may become it.
type wsConn struct {
	srv  *Server
	conn net.Conn
	sess *session

	wmu      sync.Mutex
	out      *[]byte   // framed bytes waiting to be written
	sealed   []*[]byte // earlier buffers, each to go out in a write of its own (endWrite)
	flushing bool      // a goroutine is writing out
	inBatch  bool      // the read loop will flush when it finishes its batch
	closing  bool      // close after the last write
	closed   bool

	frag     []byte // a fragmented message being assembled
	fragOp   byte
	upgradeT *time.Timer

	// Parking (see parker): raw is the socket epoll watches, nil when the
	// connection cannot be parked.
	raw        syscall.Conn
	token      uint32
	registered bool

	small [smallRead]byte
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// hijack completes the opening handshake and takes the connection from
// net/http, together with any bytes the client sent after its request.
func (s *Server) hijack(w http.ResponseWriter, r *http.Request, first []byte) (net.Conn, []byte, error) {
	accept, err := wsframe.CheckHandshake(r)
	if err != nil {
		http.Error(w, "Bad Request", http.StatusBadRequest)
		return nil, nil, err
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "Bad Request", http.StatusBadRequest)
		return nil, nil, errors.New("websocket: connection cannot be hijacked")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	var rest []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		rest = append([]byte(nil), b...)
	}
	resp := wsframe.AppendResponse(make([]byte, 0, 160+len(first)), accept)
	resp = append(resp, first...)
	_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if _, err := conn.Write(resp); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, rest, nil
}

// serveWebSocketHandshake opens a session directly over WebSocket.
func (s *Server) serveWebSocketHandshake(w http.ResponseWriter, r *http.Request) {
	ss := s.newSession(clientIP(r))
	if !s.register(ss) {
		http.Error(w, "server full", http.StatusServiceUnavailable)
		return
	}
	open := eio.AppendText(nil, s.openPacket(ss.sid, false))
	conn, rest, err := s.hijack(w, r, wsframe.AppendFrame(nil, wsframe.OpText, open))
	if err != nil {
		s.unregister(ss)
		return
	}
	c := &wsConn{srv: s, conn: conn, sess: ss}
	ss.mu.Lock()
	ss.ws = c
	ss.mu.Unlock()
	s.m.handshakes.WithLabelValues("websocket").Inc()
	ss.start()
	s.startReadLoop(c, rest)
}

// serveRejectedWebSocket completes a WebSocket handshake that the reference
// server accepts and then closes at once.
func (s *Server) serveRejectedWebSocket(w http.ResponseWriter, r *http.Request) {
	conn, _, err := s.hijack(w, r, wsframe.AppendClose(nil, wsframe.CloseNormal))
	if err == nil {
		conn.Close()
	}
}

// serveProbe takes a WebSocket that wants to upgrade an existing session.
func (s *Server) serveProbe(w http.ResponseWriter, r *http.Request, ss *session, transport string) {
	if transport != "websocket" {
		s.serveRejectedWebSocket(w, r)
		return
	}
	ss.mu.Lock()
	busy := ss.ws != nil || ss.probe != nil || ss.state != stateOpen
	ss.mu.Unlock()
	if busy {
		s.serveRejectedWebSocket(w, r)
		return
	}
	conn, rest, err := s.hijack(w, r, nil)
	if err != nil {
		return
	}
	c := &wsConn{srv: s, conn: conn, sess: ss}
	ss.mu.Lock()
	if ss.ws != nil || ss.probe != nil || ss.state != stateOpen {
		ss.mu.Unlock()
		c.closeGracefully(false)
		conn.Close()
		return
	}
	ss.probe = c
	c.upgradeT = time.AfterFunc(s.cfg.UpgradeTimeout, func() {
		ss.mu.Lock()
		still := ss.probe == c
		if still {
			ss.probe = nil
		}
		ss.mu.Unlock()
		if still {
			c.closeGracefully(false)
		}
	})
	ss.mu.Unlock()
	s.startReadLoop(c, rest)
}

func (s *Server) startReadLoop(c *wsConn, rest []byte) {
	s.m.wsConns.Inc()
	s.conns.Add(1)
	if s.parker != nil {
		c.raw = parkable(c.conn)
	}
	go c.readLoop(rest)
}

// resume continues reading a parked connection that became readable.
func (c *wsConn) resume() { c.readLoop(nil) }

// finish runs once when the connection is over: the session loses it.
func (c *wsConn) finish() {
	c.onClosed()
	c.srv.m.wsConns.Dec()
	c.srv.conns.Done()
}

// closeConn closes the socket; a parked connection has no reader left to
// notice, so its end is run here.
func (c *wsConn) closeConn() {
	c.conn.Close()
	if c.srv.parker != nil && c.srv.parker.unpark(c) {
		go c.finish()
	}
}

// readLoop reads frames until the connection ends or is parked. It reads into
// the small buffer and moves to a pooled one only while a frame does not fit.
func (c *wsConn) readLoop(rest []byte) {
	parked := false
	defer func() {
		if !parked {
			c.finish()
		}
	}()
	parkAfter := c.srv.cfg.ParkAfter
	var armed time.Time // when the park deadline was last pushed back
	if c.raw != nil {
		armed = time.Now()
		_ = c.conn.SetReadDeadline(armed.Add(parkAfter))
	}
	maxFrame := c.srv.cfg.MaxPayload
	buf := c.small[:]
	var big *[]byte
	have := 0
	if len(rest) > len(buf) {
		big = getBuf()
		*big = append((*big)[:0], rest...)
		buf = (*big)[:cap(*big)]
	}
	have = copy(buf, rest)
	for {
		off := 0
		c.wmu.Lock()
		c.inBatch = true
		c.wmu.Unlock()
		for {
			f, n, need, err := wsframe.Parse(buf[off:have], maxFrame)
			if err != nil {
				code := wsframe.CloseProtocolError
				if errors.Is(err, wsframe.ErrTooBig) {
					code = wsframe.CloseMessageTooBig
					c.srv.m.tooLarge.Inc()
				}
				c.fail(code)
				c.flush()
				return
			}
			if n == 0 {
				if need > len(buf)-off {
					// Move the partial frame to a buffer it fits in.
					nb := getBuf()
					if cap(*nb) < need {
						*nb = make([]byte, 0, need)
					}
					*nb = append((*nb)[:0], buf[off:have]...)
					if big != nil {
						putBuf(big)
					}
					big = nb
					buf = (*big)[:cap(*big)]
					have -= off
					off = 0
				}
				break
			}
			if !c.onFrame(f) {
				c.flush()
				return
			}
			off += n
		}
		if off > 0 {
			have = copy(buf, buf[off:have])
		}
		if have == 0 && big != nil {
			putBuf(big)
			big = nil
			buf = c.small[:]
		}
		c.flush()
		n, err := c.conn.Read(buf[have:])
		if err != nil {
			if c.raw != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				if have == 0 && big == nil && c.srv.parker.park(c) {
					parked = true
					return
				}
				armed = time.Now()
				_ = c.conn.SetReadDeadline(armed.Add(parkAfter))
				continue
			}
			if big != nil {
				putBuf(big)
			}
			return
		}
		if c.raw != nil {
			// Data came: push the park deadline back, at most twice per period.
			if now := time.Now(); now.Sub(armed) > parkAfter/2 {
				armed = now
				_ = c.conn.SetReadDeadline(now.Add(parkAfter))
			}
		}
		if big == nil && have+n == len(buf) {
			// The small buffer filled up: more is probably waiting, so
			// continue in a pooled buffer until the data runs dry.
			big = getBuf()
			*big = append((*big)[:0], buf[:have+n]...)
			buf = (*big)[:cap(*big)]
		}
		have += n
	}
}

// onFrame handles one frame; false ends the connection.
func (c *wsConn) onFrame(f wsframe.Frame) bool {
	switch f.Opcode {
	case wsframe.OpPing:
		c.enqueue(wsframe.OpPong, f.Payload)
		return true
	case wsframe.OpPong:
		return true
	case wsframe.OpClose:
		c.wmu.Lock()
		c.closing = true
		if c.out == nil {
			c.out = getBuf()
		}
		*c.out = wsframe.AppendClose(*c.out, wsframe.CloseNormal)
		c.wmu.Unlock()
		return false
	case wsframe.OpText, wsframe.OpBinary:
		if c.frag != nil {
			c.fail(wsframe.CloseProtocolError)
			return false
		}
		if !f.Fin {
			c.frag = append([]byte(nil), f.Payload...)
			c.fragOp = f.Opcode
			return true
		}
		return c.onMessage(f.Opcode, f.Payload)
	case wsframe.OpContinuation:
		if c.frag == nil {
			c.fail(wsframe.CloseProtocolError)
			return false
		}
		if len(c.frag)+len(f.Payload) > c.srv.cfg.MaxPayload {
			c.srv.m.tooLarge.Inc()
			c.fail(wsframe.CloseMessageTooBig)
			return false
		}
		c.frag = append(c.frag, f.Payload...)
		if !f.Fin {
			return true
		}
		msg, op := c.frag, c.fragOp
		c.frag = nil
		return c.onMessage(op, msg)
	}
	return true
}

// onMessage handles one Engine.IO packet received on this connection.
func (c *wsConn) onMessage(op byte, payload []byte) bool {
	var p eio.Packet
	if op == wsframe.OpBinary {
		p = eio.Packet{Type: eio.Message, Data: payload, Binary: true}
	} else {
		var err error
		if p, err = eio.DecodeText(payload); err != nil {
			c.srv.m.parseErrors.WithLabelValues("eio").Inc()
			ss := c.sess
			ss.mu.Lock()
			active := ss.ws == c
			ss.mu.Unlock()
			if active {
				ss.close("parse error", closeByServer)
			}
			return false
		}
	}
	ss := c.sess
	ss.mu.Lock()
	switch {
	case ss.ws == c:
		ss.mu.Unlock()
		ss.onPacket(p)
		return true
	case ss.probe == c:
		if p.Type == eio.Ping && string(p.Data) == "probe" {
			c.sendPackets([]eio.Packet{{Type: eio.Pong, Data: []byte("probe")}})
			if ss.poll != nil && len(ss.queue) == 0 {
				ss.wakePollLocked(eio.AppendPayload(nil, eio.Packet{Type: eio.Noop}))
			}
			ss.mu.Unlock()
			return true
		}
		if p.Type == eio.Upgrade {
			c.upgradeT.Stop()
			ss.probe = nil
			ss.ws = c
			if ss.poll != nil {
				ss.wakePollLocked(eio.AppendPayload(nil, eio.Packet{Type: eio.Noop}))
			}
			if len(ss.queue) > 0 {
				c.sendPackets(ss.queue)
				ss.queue = nil
			}
			ss.mu.Unlock()
			c.srv.m.upgrades.Inc()
			return true
		}
		ss.probe = nil
		ss.mu.Unlock()
		c.upgradeT.Stop()
		return false
	}
	ss.mu.Unlock()
	return false
}

// sendPackets frames Engine.IO packets: text packets as text frames, binary
// messages as binary frames.
func (c *wsConn) sendPackets(pkts []eio.Packet) {
	c.wmu.Lock()
	if c.closed || c.closing {
		c.wmu.Unlock()
		return
	}
	if c.out == nil {
		c.out = getBuf()
	}
	for _, p := range pkts {
		if p.Binary {
			*c.out = wsframe.AppendFrame(*c.out, wsframe.OpBinary, p.Data)
			continue
		}
		// Frame header first, then the type digit and data, without a copy.
		n := 1 + len(p.Data)
		*c.out = appendHeader(*c.out, wsframe.OpText, n)
		*c.out = append(*c.out, '0'+p.Type)
		*c.out = append(*c.out, p.Data...)
	}
	c.kickLocked()
}

func appendHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		return append(dst, byte(n))
	case n <= 0xFFFF:
		return append(dst, 126, byte(n>>8), byte(n))
	}
	dst = append(dst, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return dst
}

func (c *wsConn) enqueue(op byte, payload []byte) {
	c.wmu.Lock()
	if c.closed || c.closing {
		c.wmu.Unlock()
		return
	}
	if c.out == nil {
		c.out = getBuf()
	}
	*c.out = wsframe.AppendFrame(*c.out, op, payload)
	c.kickLocked()
}

// endWrite makes what is queued go out in a write of its own, before what
// is queued next: as in the reference server, whose transport holds the
// packets sent while a write is in flight until that write completes.
func (c *wsConn) endWrite() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.out == nil || len(*c.out) == 0 {
		return
	}
	c.sealed = append(c.sealed, c.out)
	c.out = nil
}

// kickLocked starts a writer unless one runs or the read loop will flush;
// it drops a client whose queue grew past MaxOutbound. It unlocks c.wmu.
func (c *wsConn) kickLocked() {
	if len(*c.out) > c.srv.cfg.MaxOutbound {
		c.closed = true
		c.wmu.Unlock()
		c.srv.m.slowClients.Inc()
		c.closeConn()
		return
	}
	start := !c.flushing && !c.inBatch
	if start {
		c.flushing = true
	}
	c.wmu.Unlock()
	if start {
		go c.writeOut()
	}
}

// flush ends a read batch: it writes what the batch queued, in the read loop.
func (c *wsConn) flush() {
	c.wmu.Lock()
	c.inBatch = false
	start := !c.flushing && ((c.out != nil && len(*c.out) > 0) || len(c.sealed) > 0 || c.closing)
	if start {
		c.flushing = true
	}
	c.wmu.Unlock()
	if start {
		c.writeOut()
	}
}

// writeOut writes until the queue is empty; it owns c.flushing.
func (c *wsConn) writeOut() {
	for {
		c.wmu.Lock()
		if c.closed {
			c.flushing = false
			c.dropSealedLocked()
			c.wmu.Unlock()
			return
		}
		if len(c.sealed) == 0 && (c.out == nil || len(*c.out) == 0) {
			c.flushing = false
			closing := c.closing
			if closing {
				c.closed = true
			}
			if c.out != nil {
				putBuf(c.out)
				c.out = nil
			}
			c.wmu.Unlock()
			if closing {
				c.closeConn()
			}
			return
		}
		var b *[]byte
		if len(c.sealed) > 0 {
			b = c.sealed[0]
			c.sealed[0] = nil
			c.sealed = c.sealed[1:]
			if len(c.sealed) == 0 {
				c.sealed = nil
			}
		} else {
			b = c.out
			c.out = nil
		}
		c.wmu.Unlock()
		_ = c.conn.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		_, err := c.conn.Write(*b)
		putBuf(b)
		if err != nil {
			c.wmu.Lock()
			c.closed = true
			c.flushing = false
			c.wmu.Unlock()
			c.closeConn()
			return
		}
	}
}

func (c *wsConn) dropSealedLocked() {
	for _, b := range c.sealed {
		putBuf(b)
	}
	c.sealed = nil
}

// closeGracefully sends a close frame after what is queued (or, when
// flushFirst is false, drops what is queued) and then closes.
func (c *wsConn) closeGracefully(flushFirst bool) {
	c.wmu.Lock()
	if c.closed || c.closing {
		c.wmu.Unlock()
		return
	}
	if c.out == nil {
		c.out = getBuf()
	}
	if !flushFirst {
		*c.out = (*c.out)[:0]
		c.dropSealedLocked()
	}
	*c.out = wsframe.AppendClose(*c.out, wsframe.CloseNormal)
	c.closing = true
	start := !c.flushing
	if start {
		c.flushing = true
	}
	c.wmu.Unlock()
	if start {
		go c.writeOut()
	}
}

// fail closes the connection with a status code after a protocol error.
func (c *wsConn) fail(code int) {
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		return
	}
	if c.out == nil {
		c.out = getBuf()
	}
	*c.out = wsframe.AppendClose(*c.out, code)
	c.closing = true
	c.wmu.Unlock()
}

// onClosed runs when the read loop ends: the session loses its transport.
func (c *wsConn) onClosed() {
	c.wmu.Lock()
	c.closed = true
	c.wmu.Unlock()
	c.conn.Close()
	ss := c.sess
	ss.mu.Lock()
	active := ss.ws == c
	if ss.probe == c {
		ss.probe = nil
	}
	ss.mu.Unlock()
	if c.upgradeT != nil {
		c.upgradeT.Stop()
	}
	if active {
		ss.close("transport close", closeByClient)
	}
}
