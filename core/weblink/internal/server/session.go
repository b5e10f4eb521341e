package server

import (
	"sync"
	"time"

	"github.com/longlink/longlink/core/weblink/internal/eio"
	"github.com/longlink/longlink/core/weblink/internal/sio"
)

const (
	stateOpen = iota
	stateClosing
	stateClosed
)

// closeKind says how a pending long-poll learns about the close.
type closeKind int

const (
	closeByServer   closeKind = iota // the pending poll gets a close packet
	closeByClient                    // the client sent close: the pending poll gets a noop
	closeGracefully                  // flush what is queued, then close (the reference's socket.close())
)

// session is one Engine.IO session and the Socket.IO client on top of it.
type session struct {
	srv    *Server
	sid    string
	remote string

	mu         sync.Mutex
	ws         *wsConn // the transport once it is WebSocket
	probe      *wsConn // a WebSocket probing for an upgrade
	queue      []eio.Packet
	poll       *pollReq
	hb         *time.Timer // ping interval, then ping timeout
	closeTimer *time.Timer
	// The small fields share one word (state and the flags of both
	// mutexes): session is 192 bytes, a size class less than with
	// each padded to its own word.
	state     uint8 // guarded by mu
	posting   bool  // guarded by mu
	awaitPong bool  // guarded by mu
	sioClosed bool  // guarded by sioMu

	sioMu       sync.Mutex
	sockets     socketList  // usually one: a map would cost more per idle session
	pending     *sio.Packet // a binary packet waiting for its attachments
	pendingBufs [][]byte
	connTimer   *time.Timer
}

type pollReq struct {
	ch chan pollResult
}

type pollResult struct {
	body []byte
}

func (s *Server) newSession(remote string) *session {
	ss := &session{srv: s, sid: newID(), remote: remote}
	return ss
}

// start arms the heartbeat and the connect timeout once the open packet is out.
func (ss *session) start() {
	ss.mu.Lock()
	ss.hb = time.AfterFunc(ss.srv.cfg.PingInterval, ss.onHeartbeat)
	ss.mu.Unlock()
	if ss.srv.cfg.engineEcho {
		return
	}
	ss.sioMu.Lock()
	ss.connTimer = time.AfterFunc(ss.srv.cfg.ConnectTimeout, func() {
		ss.sioMu.Lock()
		none := len(ss.sockets) == 0
		ss.sioMu.Unlock()
		if none {
			ss.close("connect timeout", closeGracefully)
		}
	})
	ss.sioMu.Unlock()
}

func (ss *session) transportName() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ws != nil {
		return "websocket"
	}
	return "polling"
}

func (ss *session) onHeartbeat() {
	ss.mu.Lock()
	if ss.state != stateOpen {
		ss.mu.Unlock()
		return
	}
	if ss.awaitPong {
		ss.mu.Unlock()
		ss.srv.m.pingTimeouts.Inc()
		ss.close("ping timeout", closeByServer)
		return
	}
	ss.awaitPong = true
	ss.hb.Reset(ss.srv.cfg.PingTimeout)
	ss.sendLocked(eio.Packet{Type: eio.Ping})
	ss.mu.Unlock()
}

// onPacket handles a packet that arrived on the session's transport.
func (ss *session) onPacket(p eio.Packet) {
	switch p.Type {
	case eio.Pong:
		ss.mu.Lock()
		if ss.state == stateOpen && ss.awaitPong {
			ss.awaitPong = false
			ss.hb.Reset(ss.srv.cfg.PingInterval)
		}
		ss.mu.Unlock()
	case eio.Ping:
		// Protocol v4: only the server pings.
		ss.close("transport error", closeByServer)
	case eio.Close:
		ss.close("transport close", closeByClient)
	case eio.Message:
		ss.srv.m.packetsIn.Inc()
		if ss.srv.cfg.engineEcho {
			ss.send(eio.Packet{Type: eio.Message, Data: append([]byte(nil), p.Data...), Binary: p.Binary})
			return
		}
		ss.onMessage(p)
	}
}

// endWrite ends the current write on a WebSocket transport: packets sent
// after it go out in a later write (wsConn.endWrite). Polling answers carry
// whatever is queued when the poll comes, as the reference's do.
func (ss *session) endWrite() {
	ss.mu.Lock()
	ws := ss.ws
	ss.mu.Unlock()
	if ws != nil {
		ws.endWrite()
	}
}

// send queues packets for the client on the current transport.
func (ss *session) send(pkts ...eio.Packet) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.state != stateOpen {
		return false
	}
	ss.sendLocked(pkts...)
	return true
}

func (ss *session) sendLocked(pkts ...eio.Packet) {
	ss.srv.m.packetsOut.Add(float64(len(pkts)))
	if ss.ws != nil {
		ss.ws.sendPackets(pkts)
		return
	}
	ss.queue = append(ss.queue, pkts...)
	if ss.poll != nil {
		ss.wakePollLocked(ss.takeQueueLocked())
	} else if len(ss.queue) > 0 && queueBytes(ss.queue) > ss.srv.cfg.MaxOutbound {
		ss.srv.m.slowClients.Inc()
		go ss.close("transport error", closeByServer)
	}
}

func queueBytes(q []eio.Packet) int {
	n := 0
	for _, p := range q {
		n += len(p.Data) + 2
	}
	return n
}

func (ss *session) takeQueueLocked() []byte {
	var body []byte
	for _, p := range ss.queue {
		body = eio.AppendPayload(body, p)
	}
	clear(ss.queue)
	ss.queue = ss.queue[:0]
	if cap(ss.queue) > 64 {
		ss.queue = nil
	}
	return body
}

func (ss *session) wakePollLocked(body []byte) {
	p := ss.poll
	ss.poll = nil
	p.ch <- pollResult{body: body}
}

// close ends the session. It is safe to call more than once.
func (ss *session) close(reason string, kind closeKind) {
	ss.mu.Lock()
	if ss.state == stateClosed || (ss.state == stateClosing && kind == closeGracefully) {
		ss.mu.Unlock()
		return
	}
	if kind == closeGracefully {
		if ss.ws == nil && ss.poll == nil {
			// Wait for the next poll to deliver what is queued and the close packet.
			ss.state = stateClosing
			ss.closeTimer = time.AfterFunc(ss.srv.cfg.CloseTimeout, func() { ss.close(reason, closeByServer) })
			ss.mu.Unlock()
			ss.closeSockets(reason)
			return
		}
	}
	ss.state = stateClosed
	if ss.hb != nil {
		ss.hb.Stop()
	}
	if ss.closeTimer != nil {
		ss.closeTimer.Stop()
	}
	ws, probe := ss.ws, ss.probe
	ss.probe = nil
	if ss.poll != nil {
		var body []byte
		switch kind {
		case closeByClient:
			body = eio.AppendPayload(nil, eio.Packet{Type: eio.Noop})
		case closeGracefully:
			body = ss.takeQueueLocked()
			body = eio.AppendPayload(body, eio.Packet{Type: eio.Close})
		default:
			body = eio.AppendPayload(nil, eio.Packet{Type: eio.Close})
		}
		ss.wakePollLocked(body)
	}
	ss.queue = nil
	ss.mu.Unlock()

	ss.srv.unregister(ss)
	ss.srv.m.closes.WithLabelValues(reason).Inc()
	if ws != nil {
		ws.closeGracefully(kind == closeGracefully)
	}
	if probe != nil {
		probe.closeGracefully(false)
	}
	ss.closeSockets(reason)
}

// closeSockets tells the handler that every namespace socket is gone.
func (ss *session) closeSockets(reason string) {
	ss.sioMu.Lock()
	if ss.sioClosed {
		ss.sioMu.Unlock()
		return
	}
	ss.sioClosed = true
	if ss.connTimer != nil {
		ss.connTimer.Stop()
	}
	socks := ss.sockets
	ss.sockets = nil
	ss.pending, ss.pendingBufs = nil, nil
	ss.sioMu.Unlock()
	for _, sock := range socks {
		sock.closed(reason)
	}
}
