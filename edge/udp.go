package edge

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/relay"
	"github.com/longlink/longlink/relay/wire"
)

// udpForwarder maps each client address on one UDP port to a tunnel flow.
// The mapping is stable for the client's 5-tuple and ends after IdleTimeout
// without packets either way.
type udpForwarder struct {
	e    *Edge
	cfg  UDPListener
	pc   *net.UDPConn
	name string

	mu    sync.Mutex
	flows map[netip.AddrPort]*udpFlow
	done  chan struct{}
	once  sync.Once
}

type udpFlow struct {
	sess    *Session
	last    atomic.Int64
	mu      sync.Mutex
	flow    *relay.Flow
	pending [][]byte // packets that arrived while the flow was opening
	closed  bool
}

const maxPending = 32

func newUDPForwarder(e *Edge, cfg UDPListener) (*udpForwarder, error) {
	ua, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	_ = pc.SetReadBuffer(4 << 20)
	_ = pc.SetWriteBuffer(4 << 20)
	return &udpForwarder{e: e, cfg: cfg, pc: pc, name: "udp:" + cfg.Service, flows: map[netip.AddrPort]*udpFlow{}, done: make(chan struct{})}, nil
}

func (f *udpForwarder) close() {
	f.once.Do(func() {
		close(f.done)
		_ = f.pc.Close()
		f.mu.Lock()
		flows := make([]*udpFlow, 0, len(f.flows))
		for _, fl := range f.flows {
			flows = append(flows, fl)
		}
		f.mu.Unlock()
		for _, fl := range flows {
			fl.sess.close()
		}
	})
}

func (f *udpForwarder) readLoop() {
	defer f.e.wg.Done()
	buf := make([]byte, 64<<10)
	up := f.e.m.udpPackets.WithLabelValues(f.name, "up")
	for {
		n, ap, err := f.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		client := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		f.mu.Lock()
		fl := f.flows[client]
		f.mu.Unlock()
		if fl == nil {
			fl = f.open(client)
			if fl == nil {
				continue
			}
		}
		fl.last.Store(time.Now().UnixNano())
		fl.mu.Lock()
		switch {
		case fl.closed:
		case fl.flow != nil:
			up.Inc()
			fl.flow.Send(buf[:n])
		case len(fl.pending) < maxPending:
			fl.pending = append(fl.pending, append([]byte(nil), buf[:n]...))
		default:
			f.e.m.udpDropped.WithLabelValues(f.name, "pending_full").Inc()
		}
		fl.mu.Unlock()
	}
}

// open registers a new mapping and opens its tunnel flow in the background,
// so that a slow path never stalls the port's other clients.
func (f *udpForwarder) open(client netip.AddrPort) *udpFlow {
	fl := &udpFlow{}
	sess, err := f.e.table.add(f.name, client, func() { f.end(client, fl) })
	if err != nil {
		f.e.m.connections.WithLabelValues(f.name, resultOf(err)).Inc()
		f.e.m.udpDropped.WithLabelValues(f.name, "limit").Inc()
		return nil
	}
	fl.sess = sess
	f.mu.Lock()
	f.flows[client] = fl
	f.mu.Unlock()
	f.e.m.active.WithLabelValues(f.name).Inc()
	down := f.e.m.udpPackets.WithLabelValues(f.name, "down")
	go func() {
		ctx, cancel := context.WithTimeout(f.e.ctx, f.e.cfg.Routing.OpenTimeout.D())
		defer cancel()
		flow, err := f.e.router.OpenFlow(ctx, wire.Header{Kind: wire.KindUDP, Cluster: f.e.cfg.Cluster, Service: f.cfg.Service, Client: client},
			func(p []byte) {
				fl.last.Store(time.Now().UnixNano())
				down.Inc()
				_, _ = f.pc.WriteToUDPAddrPort(p, client)
			})
		if err != nil {
			f.e.m.connections.WithLabelValues(f.name, resultOf(err)).Inc()
			f.e.m.udpDropped.WithLabelValues(f.name, "no_route").Inc()
			sess.close()
			return
		}
		f.e.table.setPath(sess, flow.Path)
		f.e.m.pathSessions.WithLabelValues(f.name, flow.Path()).Inc()
		fl.mu.Lock()
		if fl.closed {
			fl.mu.Unlock()
			flow.Close()
			return
		}
		fl.flow = flow
		for _, p := range fl.pending {
			flow.Send(p)
		}
		f.e.m.udpPackets.WithLabelValues(f.name, "up").Add(float64(len(fl.pending)))
		fl.pending = nil
		fl.mu.Unlock()
		if err := flow.Status(); err != nil {
			f.e.m.connections.WithLabelValues(f.name, resultOf(err)).Inc()
		} else {
			f.e.m.connections.WithLabelValues(f.name, "ok").Inc()
		}
		// The flow ends when the far end or the path goes away.
		<-flow.Done()
		sess.close()
	}()
	return fl
}

// end removes a mapping; it is the session's close function.
func (f *udpForwarder) end(client netip.AddrPort, fl *udpFlow) {
	fl.mu.Lock()
	if fl.closed {
		fl.mu.Unlock()
		return
	}
	fl.closed = true
	flow := fl.flow
	fl.mu.Unlock()
	if flow != nil {
		flow.Close()
	}
	f.mu.Lock()
	if f.flows[client] == fl {
		delete(f.flows, client)
	}
	f.mu.Unlock()
	f.e.table.remove(fl.sess)
	f.e.m.active.WithLabelValues(f.name).Dec()
}

// janitor ends mappings idle for longer than IdleTimeout.
func (f *udpForwarder) janitor() {
	defer f.e.wg.Done()
	idle := f.cfg.IdleTimeout.D()
	t := time.NewTicker(max(idle/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-f.done:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		var stale []*udpFlow
		f.mu.Lock()
		for _, fl := range f.flows {
			if now-fl.last.Load() > int64(idle) {
				stale = append(stale, fl)
			}
		}
		f.mu.Unlock()
		for _, fl := range stale {
			fl.sess.close()
		}
	}
}
