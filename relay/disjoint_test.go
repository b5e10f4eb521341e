package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

func TestDedupe(t *testing.T) {
	tests := []struct {
		name string
		seqs []uint32
		want []bool
	}{
		{"in order", []uint32{1, 2, 3}, []bool{true, true, true}},
		{"copies", []uint32{1, 1, 2, 2, 3, 1}, []bool{true, false, true, false, true, false}},
		{"reordered", []uint32{5, 3, 4, 3, 6, 4}, []bool{true, true, true, false, true, false}},
		{"wrap", []uint32{1<<32 - 2, 1<<32 - 1, 0, 1, 1<<32 - 1, 0}, []bool{true, true, true, true, false, false}},
		{"too old", []uint32{2000, 2000 - dedupeWindow + 1, 2000 - dedupeWindow}, []bool{true, true, false}},
		{"jump clears the window", []uint32{10, 10 + 3*dedupeWindow, 10 + 3*dedupeWindow - 1, 10 + 2*dedupeWindow + 1}, []bool{true, true, true, true}},
		{"slide clears reused slots", []uint32{0, dedupeWindow, 1, 1 + dedupeWindow}, []bool{true, true, true, true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d dedupe
			for i, s := range tc.seqs {
				if got := d.first(s); got != tc.want[i] {
					t.Fatalf("datagram %d (seq %d): first = %v, want %v", i, s, got, tc.want[i])
				}
			}
		})
	}
}

// FuzzDedupe checks the window against a set of every number seen: within
// the window it answers as the set does; a number behind it is never
// taken as first.
func FuzzDedupe(f *testing.F) {
	f.Add(uint64(1), uint32(0), uint16(50))
	f.Add(uint64(2), uint32(1<<32-20), uint16(2000))
	f.Fuzz(func(t *testing.T, seed uint64, start uint32, spread uint16) {
		rng := rand.New(rand.NewPCG(seed, 0))
		var d dedupe
		seen := map[uint32]bool{}
		top, init := start, false
		for range 500 {
			s := start + uint32(rng.IntN(int(spread)+1))
			if rng.IntN(4) == 0 {
				start += uint32(rng.IntN(64))
			}
			got := d.first(s)
			inWindow := !init || s-top < 1<<31 || top-s < dedupeWindow
			switch {
			case inWindow && got == seen[s]:
				t.Fatalf("seq %d (newest %d): first = %v, seen before %v", s, top, got, seen[s])
			case !inWindow && got:
				t.Fatalf("seq %d behind the window (newest %d) taken as first", s, top)
			}
			if got {
				seen[s] = true
			}
			if !init || s-top < 1<<31 {
				top, init = s, true
			}
		}
	})
}

// stallable wraps a transport so that the connections dialed to one
// address can be stalled, as a relay stopped with SIGSTOP or cut off: its
// streams' reads and writes wait and its datagrams are dropped, until it
// is let go again or the streams close.
type stallable struct {
	transport.Transport
	mu     sync.Mutex
	stalls map[string]chan struct{} // open while the address is stalled
}

func newStallable(tr transport.Transport) *stallable {
	return &stallable{Transport: tr, stalls: map[string]chan struct{}{}}
}

// stop stalls every connection to addr, present and future.
func (s *stallable) stop(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalls[addr] = make(chan struct{})
}

// cont lets the connections to addr go on.
func (s *stallable) cont(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch := s.stalls[addr]; ch != nil {
		close(ch)
		delete(s.stalls, addr)
	}
}

// stalled returns the channel closed when addr is let go, nil when it is
// not stalled.
func (s *stallable) stalled(addr string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stalls[addr]
}

func (s *stallable) Dial(ctx context.Context, addr string) (transport.Conn, error) {
	c, err := s.Transport.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, s: s, addr: addr}, nil
}

type stallConn struct {
	transport.Conn
	s    *stallable
	addr string
}

func (c *stallConn) OpenStream(ctx context.Context) (transport.Stream, error) {
	st, err := c.Conn.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	return &stallStream{Stream: st, c: c, closed: make(chan struct{})}, nil
}

func (c *stallConn) SendDatagram(b []byte) error {
	if c.s.stalled(c.addr) != nil {
		return nil
	}
	return c.Conn.SendDatagram(b)
}

func (c *stallConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	for {
		d, err := c.Conn.ReceiveDatagram(ctx)
		if err != nil || c.s.stalled(c.addr) == nil {
			return d, err
		}
	}
}

type stallStream struct {
	transport.Stream
	c      *stallConn
	once   sync.Once
	closed chan struct{}

	mu       sync.Mutex
	pending  []byte // written while stalled, sent when let go
	flushing bool
}

// hold waits while the stream's relay is stalled; it fails when the
// stream or its connection closes meanwhile.
func (s *stallStream) hold() error {
	if ch := s.c.s.stalled(s.c.addr); ch != nil {
		select {
		case <-ch:
		case <-s.closed:
			return transport.ErrClosed
		case <-s.c.Done():
			return transport.ErrClosed
		}
	}
	return nil
}

// Write never blocks, as a transport's stream does not while its window
// lasts: what is written while stalled goes out, in order, when let go.
func (s *stallStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c.s.stalled(s.c.addr) == nil && !s.flushing {
		return s.Stream.Write(p)
	}
	s.pending = append(s.pending, p...)
	if !s.flushing {
		s.flushing = true
		go s.flush()
	}
	return len(p), nil
}

func (s *stallStream) flush() {
	if s.hold() != nil {
		return
	}
	for {
		s.mu.Lock()
		b := s.pending
		s.pending = nil
		if len(b) == 0 {
			s.flushing = false
			s.mu.Unlock()
			return
		}
		_, err := s.Stream.Write(b)
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (s *stallStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if herr := s.hold(); herr != nil {
		return 0, herr
	}
	return n, err
}

func (s *stallStream) Close() error {
	s.once.Do(func() { close(s.closed) })
	return s.Stream.Close()
}

// disjointChain is a Mem chain edge → relay-a | relay-b → egress with
// disjoint copies on and the edge's connections to either relay
// stallable. A stalled next hop is suspect (its streams move) only after
// 3 s, so that what arrives before came over the other relay.
func disjointChain(t *testing.T) (*memChain, *stallable) {
	t.Helper()
	var st *stallable
	ch := newMemChainVia(t, func(tr transport.Transport) transport.Transport { st = newStallable(tr); return st },
		func(rc *RoutingConfig) {
			rc.Disjoint.Enabled = true
			rc.Redundancy.LinkFrames = 1
			rc.Resume.After = config.Duration(3 * time.Second)
		})
	for _, n := range ch.relays {
		waittest.Until(t, 2*time.Second, "the relay's lanes to the egress up", func() bool {
			return lanesUp(n.router.peers[Hop{Transport: "mem", Address: "egress"}.key()])
		})
	}
	for _, name := range []string{"relay-a", "relay-b"} {
		waittest.Until(t, 2*time.Second, "the edge's lanes to "+name+" up", func() bool {
			return lanesUp(ch.router.peers[Hop{Transport: "mem", Address: name}.key()])
		})
	}
	return ch, st
}

// A stream's small records travel through both relays: when the relay of
// its own path stalls, they still arrive, once and in order, through the
// other before the stream moves; a large record waits for the move.
func TestDisjointStreamRelayStalled(t *testing.T) {
	ch, st := disjointChain(t)
	m := ch.router.m
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tun, err := ch.router.OpenStream(ctx, wire.Header{Kind: wire.KindLink, Cluster: "demo", Service: "link"})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	echoHello(t, tun)
	<-ch.tcp
	if got := testutil.ToFloat64(m.DisjointCopies.WithLabelValues("stream", "opened")); got != 1 {
		t.Fatalf("disjoint copies opened = %v, want 1", got)
	}
	waittest.Until(t, 3*time.Second, "the disjoint copy joined at the egress", func() bool {
		return testutil.ToFloat64(ch.egress.m.RedundantCopies.WithLabelValues("joined")) == 1
	})
	path := tun.Path()
	st.stop(path)
	stalled := time.Now()
	for i := range 20 {
		msg := fmt.Appendf(nil, "message %02d\n", i)
		if _, err := tun.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(tun, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo %d: %q %v, want %q", i, got, err, msg)
		}
	}
	if n := testutil.ToFloat64(m.Resumes.WithLabelValues("ok")); n != 0 {
		t.Fatalf("the stream moved (%v resumes) before the small records came back after %v: they did not need the other relay", n, time.Since(stalled))
	}
	if w := testutil.ToFloat64(m.DisjointWins.WithLabelValues("stream", "disjoint")); w < 20 {
		t.Fatalf("the disjoint copy brought %v echoes first, want all 20", w)
	}
	if w := testutil.ToFloat64(ch.egress.m.DisjointWins.WithLabelValues("stream", "disjoint")); w < 20 {
		t.Fatalf("the egress took %v records first from the disjoint copy, want all 20", w)
	}
	// A record larger than max_frame travels on the stream's own copy
	// only: it arrives once that copy moved off the stalled relay.
	big := bytes.Repeat([]byte("b"), 4096)
	if _, err := tun.Write(big); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(big))
	if _, err := io.ReadFull(tun, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("large echo: %v", err)
	}
	if n := testutil.ToFloat64(m.Resumes.WithLabelValues("ok")); n < 1 {
		t.Fatal("the large record came back without its copy moving: the disjoint copy carried it")
	}
	// The 20 messages, and the first "hello" unless the primary's echo
	// was acknowledged before the disjoint copy's writer ran; never the
	// large record.
	if sent := testutil.ToFloat64(m.DisjointSent.WithLabelValues("stream")); sent < 20 || sent > 21 {
		t.Fatalf("records sent on the disjoint copy = %v, want the 20 or 21 small ones", sent)
	}
	// Nothing more arrives: every record came once.
	echoHello(t, tun)
}

// A numbered UDP flow: each datagram reaches the service once and each
// answer the client once while both relays work, and the answers keep
// coming over the other relay when the flow's own stalls.
func TestDisjointUDPRelayStalled(t *testing.T) {
	ch, st := disjointChain(t)
	m := ch.router.m
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	got := map[string]int{}
	arrived := make(chan string, 64)
	f, err := ch.router.OpenFlow(ctx, wire.Header{Kind: wire.KindUDP, Cluster: "demo", Service: "media"}, func(p []byte) {
		mu.Lock()
		got[string(p)]++
		mu.Unlock()
		arrived <- string(p)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Status(); err != nil {
		t.Fatal(err)
	}
	if !f.Numbered() {
		t.Fatal("the flow is not numbered though two relays are up")
	}
	if n := testutil.ToFloat64(m.DisjointCopies.WithLabelValues("udp", "opened")); n != 1 {
		t.Fatalf("disjoint copies opened = %v, want 1", n)
	}
	// Datagrams on a copy the egress has not joined yet are dropped there
	// (unknown flow), so the exchange waits for both.
	waittest.Until(t, 5*time.Second, "both copies at the egress", func() bool {
		return testutil.ToFloat64(ch.egress.m.Streams.WithLabelValues("udp", "terminated")) == 2
	})
	exchange := func(prefix string, n int) {
		t.Helper()
		want := map[string]bool{}
		for i := range n {
			p := fmt.Sprintf("%s-%d", prefix, i)
			want["echo:"+p] = true
			f.Send([]byte(p))
		}
		for len(want) > 0 {
			select {
			case a := <-arrived:
				delete(want, a)
			case <-ctx.Done():
				t.Fatalf("%d answers of %s missing", len(want), prefix)
			}
		}
	}
	exchange("both", 10)
	// The egress dropped the service's duplicates (one echo per datagram)
	// and the edge the duplicate answers.
	waittest.Until(t, 5*time.Second, "the second copies dropped", func() bool {
		return testutil.ToFloat64(m.DisjointDuplicates.WithLabelValues("udp")) == 10 &&
			testutil.ToFloat64(ch.egress.m.DisjointDuplicates.WithLabelValues("udp")) == 10
	})
	st.stop(f.Path())
	exchange("stalled", 10)
	mu.Lock()
	defer mu.Unlock()
	for p, n := range got {
		if n != 1 {
			t.Fatalf("%q arrived %d times", p, n)
		}
	}
	if w := testutil.ToFloat64(m.DisjointWins.WithLabelValues("udp", "disjoint")); w < 10 {
		t.Fatalf("answers first over the disjoint copy = %v, want at least the 10 sent while stalled", w)
	}
}

// Without a second relay up, streams and flows go without a disjoint copy
// (and UDP flows are not numbered).
func TestDisjointNeedsTwoRelays(t *testing.T) {
	ch, _ := disjointChain(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = ch.relays[1].Shutdown(ctx)
	waittest.Until(t, 3*time.Second, "relay-b down", func() bool {
		for _, p := range ch.router.Paths() {
			if p.Name == "relay-b" {
				return !p.Up
			}
		}
		return false
	})
	tun, err := ch.router.OpenStream(ctx, wire.Header{Kind: wire.KindLink, Cluster: "demo", Service: "link"})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	echoHello(t, tun)
	m := ch.router.m
	if n := testutil.ToFloat64(m.DisjointCopies.WithLabelValues("stream", "no_path")); n != 1 {
		t.Fatalf("stream no_path = %v, want 1", n)
	}
	f, err := ch.router.OpenFlow(ctx, wire.Header{Kind: wire.KindUDP, Cluster: "demo", Service: "media"}, func([]byte) {})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Numbered() {
		t.Fatal("a flow with one relay up is numbered")
	}
}

// A stream that opened while its relay was the only one up gets its
// disjoint copy once another relay answers again.
func TestDisjointAddedWhenRelayReturns(t *testing.T) {
	ch, st := disjointChain(t)
	m := ch.router.m
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	other := "relay-b"
	if ch.router.Primary("demo") == other {
		other = "relay-a"
	}
	st.stop(other)
	waittest.Until(t, 3*time.Second, other+" down", func() bool {
		for _, p := range ch.router.Paths() {
			if p.Name == other {
				return !p.Up
			}
		}
		return false
	})
	tun, err := ch.router.OpenStream(ctx, wire.Header{Kind: wire.KindLink, Cluster: "demo", Service: "link"})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	echoHello(t, tun)
	if n := testutil.ToFloat64(m.DisjointCopies.WithLabelValues("stream", "no_path")); n != 1 {
		t.Fatalf("no_path = %v, want 1", n)
	}
	st.cont(other)
	waittest.Until(t, 5*time.Second, "the disjoint copy joined at the egress", func() bool {
		return testutil.ToFloat64(m.DisjointCopies.WithLabelValues("stream", "opened")) == 1 &&
			testutil.ToFloat64(ch.egress.m.RedundantCopies.WithLabelValues("joined")) == 1
	})
	echoHello(t, tun)
	if n := testutil.ToFloat64(m.DisjointCopies.WithLabelValues("stream", "no_path")); n != 1 {
		t.Fatalf("no_path counted again: %v", n)
	}
}

// A copy that reaches the egress after the opener acknowledged records it
// asked for (other copies carried them meanwhile, as a disjoint copy's
// detour may) starts at the oldest record kept, and its copy start says
// so, instead of being refused.
func TestSenderJoinAfterAck(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry(), nil)
	s := newSender(m, newMerger(m, 0), 64<<10)
	for range 5 {
		if _, err := s.Write([]byte("record")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.acked(3); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	var start uint64
	c, err := s.join(1, nopCloser{&got}, 0, 0, func(first uint64) []byte { start = first; return nil })
	if err != nil || c == nil {
		t.Fatalf("join with a stale acknowledgement: %v", err)
	}
	if start != 3 {
		t.Fatalf("the copy starts at record %d, want 3 (the oldest kept)", start)
	}
	waittest.Until(t, 2*time.Second, "the copy's frames", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return c.next == 5 && !c.writing
	})
	r := bytes.NewReader(got.Bytes())
	var records int
	for {
		f, err := wire.ReadFrame(r)
		if err != nil {
			break
		}
		if f.Kind == wire.FrameSeek && f.Index != 3 {
			t.Fatalf("seek to %d, want 3", f.Index)
		}
		if f.Kind == wire.FrameRecord {
			records++
		}
	}
	if records != 2 {
		t.Fatalf("the copy carried %d records, want the 2 not acknowledged", records)
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
