package sdk

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

// LinkOptions tune the Link transport's loss recovery (LinkDialerWith).
type LinkOptions struct {
	// DialRace races connection attempts (TCP connection and Link
	// handshake) to one address, happy-eyeballs style: when an attempt has
	// not finished after a stagger, a second one starts; the first to finish
	// is used and the other closed before the login (so there is never a
	// second login). A lost SYN otherwise costs the kernel's 1 s initial
	// retransmission timeout, and a lost client hello a tail-loss probe of
	// over 200 ms. The stagger is 3 × the round trip last measured to that
	// address + 20 ms (at least 50 ms), or DialRace when none was measured
	// yet. Default 250ms; negative disables.
	DialRace time.Duration
	// DisableNudge turns off the request nudge: when a request's bytes are
	// still unacknowledged by the peer's TCP two round trips (plus 10 ms)
	// after they were written, the transport writes a heartbeat frame, so
	// that the peer's SACK of it lets the kernel retransmit the lost request
	// at once (RACK) instead of after a tail-loss probe or the 200 ms
	// minimum retransmission timeout. Linux only (it reads TCP_INFO).
	DisableNudge bool
	// QUICDuplicateMax is the largest datagram, in bytes, that a Link over
	// QUIC connection sends twice, so that a request is late only when both
	// copies are lost (core/link/linkquic Options.DuplicateMax; the edge
	// doubles its answers alike). 0: linkquic.DefaultDuplicateMax (700);
	// negative: off.
	QUICDuplicateMax int

	now func() time.Time // the race's clock (tests); nil: time.Now
}

func (o LinkOptions) withDefaults() LinkOptions {
	if o.DialRace == 0 {
		o.DialRace = 250 * time.Millisecond
	}
	return o
}

// rtts remembers the last TCP round trip measured per address, like the
// kernel's TCP metrics cache, so that reconnects race with a stagger that
// fits the path.
var rtts sync.Map // address → time.Duration

// raceDial runs dial (a TCP connection and the Link handshake) for addr,
// starting a second attempt after a stagger when the first has not
// finished; the first to finish wins and the other is cancelled and closed.
// The stagger is 3 × the round trip remembered for addr + 20 ms (the
// connection and the handshake take two; at least 50 ms), or o.DialRace
// when none is known.
//
// busy, when set, reports that the first attempt is connected and the
// server's TCP has acknowledged everything it was sent: nothing was lost,
// the server is only slow to answer (a reconnect storm after a restart). A
// second attempt would then only double the server's handshakes, so none
// starts while busy holds; the check repeats every stagger.
//
// Nor does one start when the stagger's timer fires a stagger or more
// late: this process did not run for that long (starved of CPU, like a
// load generator holding thousands of clients in a storm), so the first
// attempt is slow on this side, and a second one would add a connection,
// a key generation and a handshake to what the CPU cannot keep up with.
// In the 19,000-client storm of 04:15 (load 21-30) the workers' goroutines
// ran up to 60 s late and the server accepted 11 connections per client.
func raceDial[T io.Closer](ctx context.Context, addr string, o LinkOptions, dial func(context.Context, string) (T, error), busy func() bool) (T, error) {
	if o.DialRace < 0 {
		return dial(ctx, addr)
	}
	stagger := o.DialRace
	if v, ok := rtts.Load(addr); ok {
		stagger = min(max(3*v.(time.Duration)+20*time.Millisecond, 50*time.Millisecond), 5*time.Second)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c   T
		err error
	}
	results := make(chan result, 2)
	try := func() {
		c, err := dial(ctx, addr)
		results <- result{c, err}
	}
	now := o.now
	if now == nil {
		now = time.Now
	}
	go try()
	due := now().Add(stagger)
	timer := time.NewTimer(stagger)
	defer timer.Stop()
	started, pending := 1, 1
	var firstErr error
	for pending > 0 {
		select {
		case <-timer.C:
			t := now()
			starved := t.Sub(due) >= stagger
			if started < 2 && (starved || busy != nil && busy()) {
				due = t.Add(stagger)
				timer.Reset(stagger)
				continue
			}
			if started < 2 {
				started++
				pending++
				go try()
			}
		case r := <-results:
			pending--
			if r.err == nil {
				if pending > 0 {
					cancel()
					go func() {
						if l := <-results; l.err == nil {
							_ = l.c.Close()
						}
					}()
				}
				return r.c, nil
			}
			if firstErr == nil {
				firstErr = r.err
			}
			if started < 2 && ctx.Err() == nil {
				// Refused, or the server answered: no point racing.
				var zero T
				return zero, r.err
			}
		}
	}
	var zero T
	if firstErr == nil {
		firstErr = errors.New("sdk: dial failed")
	}
	return zero, firstErr
}

func tcpDial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// nudger sends a heartbeat frame when a request stays unacknowledged by
// the peer's TCP (see LinkOptions.DisableNudge).
type nudger struct {
	info func() (rtt time.Duration, unacked int, ok bool)
	send func() error

	mu    sync.Mutex
	armed bool
	t     *time.Timer
	sent  atomic.Int64
}

// arm is called after a request is written; at most one check is pending.
func (n *nudger) arm() {
	rtt, _, ok := n.info()
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.armed {
		return
	}
	n.armed = true
	d := min(max(2*rtt+10*time.Millisecond, 20*time.Millisecond), time.Second)
	if n.t == nil {
		n.t = time.AfterFunc(d, n.fire)
	} else {
		n.t.Reset(d)
	}
}

func (n *nudger) fire() {
	n.mu.Lock()
	n.armed = false
	n.mu.Unlock()
	if _, unacked, ok := n.info(); ok && unacked > 0 {
		if n.send() == nil {
			n.sent.Add(1)
		}
	}
}

func (n *nudger) stop() {
	n.mu.Lock()
	if n.t != nil {
		n.t.Stop()
	}
	n.mu.Unlock()
}

// nudgeSeq is the sequence of nudge heartbeats; the client numbers its own
// requests from 1 and skips 0, so their answers match no request.
const nudgeSeq = 0

var nudgeOp = imapi.OpHeartbeat
