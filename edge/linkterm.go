package edge

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/relay"
	"github.com/longlink/longlink/relay/wire"
)

// serveLinkTerminated ends the client's Link handshake at the edge (one
// short round trip), waits for the client's first frame, then opens a
// link-frames tunnel stream whose header and first frame leave together, and
// relays frames both ways: sealed towards the client, plain in the tunnel
// (whose transport encrypts and authenticates them). A login with a signed
// token that verifies is answered here as soon as it is on its way to the
// core (edgeLogins). LINK.md section 7.
func (e *Edge) serveLinkTerminated(name string, c net.Conn, t *LinkTermination, sess *Session, start time.Time) {
	client := sess.Client
	toClient := link.Limits{MaxFrameSize: t.MaxFrameSize}
	// Frames towards the gateway are not compressed again: the tunnel
	// carries them once, and the gateway inflates nothing it need not.
	toCore := link.Limits{MaxFrameSize: t.MaxFrameSize, CompressThreshold: -1}

	hctx, cancel := context.WithTimeout(e.ctx, t.HandshakeTimeout.D())
	lc, err := link.Server(hctx, c, e.ring, toClient)
	cancel()
	if err != nil {
		// A connection closed before its first byte is a reachability
		// probe (load balancers, readiness checks), not a failed client.
		result := "handshake"
		if errors.Is(err, io.EOF) {
			result = "empty"
		}
		e.m.connections.WithLabelValues(name, result).Inc()
		e.log.Debug("link handshake failed", "listener", name, "client", client.String(), "err", err)
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(t.HandshakeTimeout.D()))
	first, err := lc.ReadFrame()
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		e.m.connections.WithLabelValues(name, "handshake").Inc()
		e.log.Debug("link first frame", "listener", name, "client", client.String(), "err", err)
		return
	}

	var answer *link.Frame // the edge's own login answer, if it gives one
	loginResult := ""
	if e.logins != nil {
		first, answer, loginResult = e.logins.answer(first)
	} else {
		first = withoutSessionID(first)
	}

	h := wire.Header{Kind: wire.KindLinkFrames, Cluster: e.cfg.Cluster, Service: t.Service, Client: client}
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Routing.OpenTimeout.D())
	tun, err := e.router.OpenStream(ctx, h)
	cancel()
	if err != nil {
		e.m.connections.WithLabelValues(name, resultOf(err)).Inc()
		e.log.Debug("tunnel open failed", "listener", name, "client", client.String(), "err", err)
		refuse(lc, first, err)
		return
	}
	e.table.setPath(sess, tun.Path)
	e.m.pathSessions.WithLabelValues(name, tun.Path()).Inc()
	defer tun.Close()
	up := e.m.bytes.WithLabelValues(name, "up")
	down := e.m.bytes.WithLabelValues(name, "down")
	tc := &tunnelConn{Tunnel: tun, up: func(n int) { up.Add(float64(n)) }, down: func(n int) { down.Add(float64(n)) }}
	core := link.NewPlain(tc, toCore)
	if err := core.WriteFrame(first); err != nil {
		// The far end may have refused the stream before the frame went
		// out: its status says why, and the client gets the answer.
		if serr := tun.Status(); serr != nil {
			e.m.connections.WithLabelValues(name, resultOf(serr)).Inc()
			refuse(lc, first, serr)
		} else {
			e.m.connections.WithLabelValues(name, "error").Inc()
		}
		return
	}
	if loginResult != "" {
		e.m.logins.WithLabelValues(loginResult).Inc()
	}
	if answer != nil && lc.WriteFrame(*answer) != nil {
		e.m.connections.WithLabelValues(name, "error").Inc()
		return
	}

	done := make(chan struct{}, 2)
	go func() {
		// client → core
		for {
			f, err := lc.ReadFrame()
			if err != nil || core.WriteFrame(f) != nil {
				break
			}
		}
		_ = tun.Close()
		done <- struct{}{}
	}()
	go func() {
		// core → client, after the egress's status
		if err := tun.Status(); err != nil {
			e.m.connections.WithLabelValues(name, resultOf(err)).Inc()
			e.log.Debug("tunnel refused", "listener", name, "client", client.String(), "err", err)
			if answer != nil {
				kickClient(lc, imapi.ErrUnavailable, unreachable(err))
			} else {
				refuse(lc, first, err)
			}
		} else {
			e.m.connections.WithLabelValues(name, "ok").Inc()
			e.m.tunnelOpen.WithLabelValues(name).Observe(time.Since(start).Seconds())
			e.relayToClient(lc, core, first.Seq, answer != nil)
		}
		_ = lc.Close()
		done <- struct{}{}
	}()
	<-done
	_ = lc.Close()
	_ = tun.Close()
	<-done
}

// refuse answers the client's first request with 503 when the core cannot
// be reached, so that the client tries another address at once instead of
// waiting for a timeout.
func refuse(lc *link.Conn, first link.Frame, err error) {
	if first.IsResponse() || first.IsPush() {
		return
	}
	body := []byte(`{"code":503,"message":"` + unreachable(err) + `"}`)
	_ = lc.NetConn().SetWriteDeadline(time.Now().Add(time.Second))
	_ = lc.WriteFrame(link.Frame{Op: first.Op, Flags: link.FlagResponse, Seq: first.Seq, Code: imapi.ErrUnavailable, Body: body})
}

func unreachable(err error) string {
	if errors.Is(err, relay.ErrNoRoute) {
		return "no route to the core from this edge"
	}
	return "core unreachable from this edge"
}

// relayToClient copies frames from the core to the client until either
// side ends. The core's answer to the login (sequence loginSeq) teaches the
// edge the heartbeat interval; when the edge answered the login itself, the
// core's answer is not passed on: if it is an error the client is kicked
// with it, and nothing else from the core may come before it (the gateway
// holds pushes until it has answered the login).
func (e *Edge) relayToClient(lc, core *link.Conn, loginSeq uint32, answered bool) {
	pending := true
	for {
		f, err := core.ReadFrame()
		if err != nil {
			return
		}
		if pending {
			isAnswer := f.Op == imapi.OpLogin && f.IsResponse() && f.Seq == loginSeq
			if isAnswer {
				pending = false
				if f.Code == imapi.OK && e.logins != nil {
					e.logins.learn(f.Body)
				}
			}
			if answered {
				if !isAnswer {
					e.log.Warn("core sent a frame before its login answer", "op", f.Op.String())
					return
				}
				if f.Code != imapi.OK {
					e.m.logins.WithLabelValues("rejected").Inc()
					kickClient(lc, f.Code, refusalReason(f))
					return
				}
				continue // the client has the edge's answer
			}
		}
		if lc.WriteFrame(f) != nil {
			return
		}
	}
}

// tunnelConn gives a tunnel stream the net.Conn shape link.NewPlain wants,
// counting payload bytes. Deadlines are not supported (the tunnel ends with
// the client connection, which has them).
type tunnelConn struct {
	*relay.Tunnel
	up, down func(int)
	once     sync.Once
}

func (t *tunnelConn) Read(p []byte) (int, error) {
	n, err := t.Tunnel.Read(p)
	t.down(n)
	return n, err
}

func (t *tunnelConn) Write(p []byte) (int, error) {
	n, err := t.Tunnel.Write(p)
	t.up(n)
	return n, err
}

func (t *tunnelConn) Close() error {
	var err error
	t.once.Do(func() { err = t.Tunnel.Close() })
	return err
}

func (t *tunnelConn) LocalAddr() net.Addr              { return tunnelAddr{} }
func (t *tunnelConn) RemoteAddr() net.Addr             { return tunnelAddr{} }
func (t *tunnelConn) SetDeadline(time.Time) error      { return os.ErrNoDeadline }
func (t *tunnelConn) SetReadDeadline(time.Time) error  { return os.ErrNoDeadline }
func (t *tunnelConn) SetWriteDeadline(time.Time) error { return os.ErrNoDeadline }

type tunnelAddr struct{}

func (tunnelAddr) Network() string { return "tunnel" }
func (tunnelAddr) String() string  { return "tunnel" }
