package sdk

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/link/linkquic"
)

// Incoming is a frame from the server: a response (Push false, matched by
// Seq) or a push.
type Incoming struct {
	Op   imapi.Op
	Seq  uint32
	Code imapi.Code
	Push bool
	Body []byte
}

// Transport is one connection to a gateway. Link is the default; WebLink
// (Socket.IO) can provide another. Send may be called concurrently; Recv is
// called by one goroutine. Close unblocks Recv.
type Transport interface {
	Send(op imapi.Op, seq uint32, body []byte) error
	Recv() (Incoming, error)
	Close() error
}

// Dialer opens a Transport to addr; ctx bounds the whole setup.
type Dialer func(ctx context.Context, addr string) (Transport, error)

// LinkDialer returns a Dialer for Link over TCP, or over QUIC for an
// address "quic://host:port" (core/link/linkquic: the same Noise handshake
// and frames on a QUIC stream; reconnects send the handshake as 0-RTT
// data). keys are tried newest id first (descending order) until the server
// accepts one.
func LinkDialer(keys map[string][]byte, lim link.Limits) Dialer {
	return LinkDialerWith(keys, lim, LinkOptions{})
}

// LinkDialerWith is LinkDialer with loss-recovery options.
func LinkDialerWith(keys map[string][]byte, lim link.Limits, opts LinkOptions) Dialer {
	opts = opts.withDefaults()
	ids := make([]string, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	quic := quicDialer.WithOptions(linkquic.Options{DuplicateMax: opts.QUICDuplicateMax})
	return func(ctx context.Context, addr string) (Transport, error) {
		netDial, target := tcpDial, addr
		if a, ok := strings.CutPrefix(addr, linkquic.Scheme); ok {
			netDial, target = quic.Dial, a
		}
		var last error
		for _, id := range ids {
			// The first attempt's socket, for busy: its TCP state tells a
			// lost packet (race) from a slow server (wait).
			var firstMu sync.Mutex
			var first func() (time.Duration, int, bool)
			busy := func() bool {
				firstMu.Lock()
				info := first
				firstMu.Unlock()
				if info == nil {
					return false
				}
				_, unacked, ok := info()
				return ok && unacked == 0
			}
			c, err := raceDial(ctx, addr, opts, func(ctx context.Context, _ string) (*link.Conn, error) {
				for try := 0; ; try++ {
					nc, err := netDial(ctx, target)
					if err != nil {
						return nil, err
					}
					firstMu.Lock()
					if first == nil {
						first = tcpInfo(nc) // nil over QUIC: races as before
					}
					firstMu.Unlock()
					c, err := link.Client(ctx, nc, id, keys[id], lim)
					if err == nil {
						return c, nil
					}
					_ = nc.Close()
					if try > 0 || !linkquic.Is0RTTRejected(err) {
						return nil, err
					}
					// The server forgot the session (restarted): again,
					// with a full QUIC handshake.
				}
			}, busy)
			if err == nil {
				t := &linkTransport{c: c, addr: addr, info: tcpInfo(c.NetConn())}
				t.remember()
				if t.info != nil && !opts.DisableNudge {
					t.nudge = &nudger{info: t.info, send: func() error {
						return c.WriteFrame(link.Frame{Op: nudgeOp, Seq: nudgeSeq})
					}}
				}
				return t, nil
			}
			last = err
			var he *link.HandshakeError
			if !errors.As(err, &he) || he.Status != link.StatusUnknownKey {
				return nil, err
			}
		}
		if last == nil {
			last = errors.New("no server keys")
		}
		return nil, fmt.Errorf("link %s: %w", addr, last)
	}
}

// quicDialer keeps the TLS session tickets of Link over QUIC per process,
// as rtts keeps round trips: every client's next connection to an entry
// point sends its handshake as 0-RTT data.
var quicDialer = linkquic.NewDialer(linkquic.Options{})

type linkTransport struct {
	c     *link.Conn
	addr  string
	info  func() (time.Duration, int, bool) // nil: not TCP, or not Linux
	nudge *nudger                           // nil: disabled
}

func (t *linkTransport) Send(op imapi.Op, seq uint32, body []byte) error {
	err := t.c.WriteFrame(link.Frame{Op: op, Seq: seq, Body: body})
	if err == nil && t.nudge != nil && op != imapi.OpHeartbeat {
		t.nudge.arm()
	}
	return err
}

// remember stores the connection's measured round trip for the next dial
// race to the same address.
func (t *linkTransport) remember() {
	if qc, ok := t.c.NetConn().(*linkquic.Conn); ok {
		if rtt := qc.RTT(); rtt > 0 {
			rtts.Store(t.addr, rtt)
		}
		return
	}
	if t.info == nil {
		return
	}
	if rtt, _, ok := t.info(); ok && rtt > 0 {
		rtts.Store(t.addr, rtt)
	}
}

func (t *linkTransport) Recv() (Incoming, error) {
	f, err := t.c.ReadFrame()
	if err != nil {
		return Incoming{}, err
	}
	return Incoming{Op: f.Op, Seq: f.Seq, Code: f.Code, Push: f.IsPush(), Body: f.Body}, nil
}

func (t *linkTransport) Close() error {
	if t.nudge != nil {
		t.nudge.stop()
	}
	t.remember()
	return t.c.Close()
}
