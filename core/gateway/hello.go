package gateway

import (
	"container/list"
	"net"
	"time"
)

// A connection that waits for its client's hello holds a place under
// max_connections and an open file, and costs nothing else; normally the
// hello is in the socket before the accept. In a reconnect storm it is
// not: when the listen queue overflows, the kernel drops the client's
// first data with the handshake's last ACK, and the connection, once
// accepted, waits for the client's retransmission, seconds later after
// its backoff; a starved client may not write for seconds either. In the
// 19,000-client storm of ac072c6, 191,515 connections waited the whole
// handshake_timeout (10 s) for a hello, and they held the server at its
// file limit for minutes while new clients were refused. So when a new
// connection finds the gateway full, the oldest connection still waiting
// for its hello past hello_grace is closed to make room for it
// (handshake_drops_total{reason="hello_late"}); its client comes back
// like any refused one.

// helloWait is a connection waiting for its hello (Gateway.hellos).
type helloWait struct {
	nc      net.Conn
	since   time.Time // accepted
	e       *list.Element
	evicted bool
}

// awaitHello registers nc, accepted at the time given, as waiting for its
// hello; helloDone ends the wait.
func (g *Gateway) awaitHello(nc net.Conn, accepted time.Time) *helloWait {
	w := &helloWait{nc: nc, since: accepted}
	g.connMu.Lock()
	w.e = g.hellos.PushBack(w)
	g.connMu.Unlock()
	return w
}

// helloDone ends w's wait and reports whether w was closed to make room
// (the caller drops it without a handshake).
func (g *Gateway) helloDone(w *helloWait) bool {
	g.connMu.Lock()
	defer g.connMu.Unlock()
	if w.evicted {
		// Its place went to another connection at eviction; it leaves
		// totalConns when its goroutine ends it, soon after this.
		g.evicting--
		return true
	}
	g.hellos.Remove(w.e)
	return false
}

// evictLateHelloLocked picks the oldest connection that has waited for
// its hello longer than hello_grace, marks it evicted and returns it for
// the caller to close (outside connMu); nil when there is none. The list is
// in about accept order (each connection's goroutine registers it), so
// only its front is looked at.
func (g *Gateway) evictLateHelloLocked(now time.Time) net.Conn {
	e := g.hellos.Front()
	if e == nil {
		return nil
	}
	w := e.Value.(*helloWait)
	if now.Sub(w.since) < g.cfg.HelloGrace.D() {
		return nil
	}
	g.hellos.Remove(e)
	w.evicted = true
	g.evicting++
	return w.nc
}
