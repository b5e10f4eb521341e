package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/pkg/pki"
	"github.com/longlink/longlink/pkg/waittest"
	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

// delayedCopy is one copy's path in the property test: what the fanout
// writes arrives at the merger after a random delay per write, in order,
// and the path may die after some writes.
type delayedCopy struct {
	pr   *io.PipeReader
	pw   *io.PipeWriter
	ch   chan []byte
	once sync.Once
}

func newDelayedCopy(rng *rand.Rand, maxDelay time.Duration, dieAfter int) *delayedCopy {
	pr, pw := io.Pipe()
	c := &delayedCopy{pr: pr, pw: pw, ch: make(chan []byte, 1024)}
	seed := rng.Uint64()
	go func() {
		r := rand.New(rand.NewPCG(seed, 1))
		n := 0
		for b := range c.ch {
			time.Sleep(time.Duration(r.Int64N(int64(maxDelay))))
			if dieAfter >= 0 && n >= dieAfter {
				_ = pw.CloseWithError(errors.New("copy's connection died"))
				continue
			}
			if _, err := pw.Write(b); err != nil {
				continue
			}
			n++
		}
		_ = pw.Close()
	}()
	return c
}

func (c *delayedCopy) Write(p []byte) (int, error) {
	c.ch <- bytes.Clone(p)
	return len(p), nil
}

func (c *delayedCopy) Close() error {
	c.once.Do(func() { close(c.ch) })
	return nil
}

// Property: whatever the per-copy delays, and with copies dying part way,
// the merged stream is exactly what was written: nothing lost, duplicated
// or reordered, as long as one copy lives.
func TestSequencedOrderUnderRandomDelays(t *testing.T) {
	for seed := range uint64(30) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 7))
			m := NewMetrics(prometheus.NewRegistry(), nil)
			// No acknowledgements come back: the window holds it all.
			in := newMerger(m, 0)
			out := newSender(m, newMerger(m, 0), 4<<20)
			copies := 2 + rng.IntN(3)
			survivor := rng.IntN(copies)
			for i := range copies {
				dieAfter := -1
				if i != survivor && rng.IntN(2) == 0 {
					dieAfter = rng.IntN(40)
				}
				c := newDelayedCopy(rng, time.Duration(1+rng.IntN(3))*time.Millisecond, dieAfter)
				in.add()
				co, err := out.join(uint8(i), c, 0, 0, nil)
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					if err := in.feed(uint8(i), 0, c.pr); err != nil {
						co.lost("error")
					}
				}()
			}
			var want bytes.Buffer
			go func() {
				for range 200 {
					p := make([]byte, 1+rng.IntN(3000))
					for j := range p {
						p[j] = byte(rng.Uint32())
					}
					want.Write(p)
					if _, err := out.Write(p); err != nil {
						t.Errorf("write: %v", err)
						return
					}
				}
				out.end()
			}()
			got, err := io.ReadAll(in)
			if err != nil {
				t.Fatalf("merged stream ended with %v after %d bytes", err, len(got))
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("merged %d bytes, wrote %d: not the same bytes", len(got), want.Len())
			}
		})
	}
}

// A copy that joins late starts at the index the sender had reached; the
// merger waits for the other copy to bring the records before it.
func TestMergerLateCopy(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry(), nil)
	g := newMerger(m, 0)
	var early, late bytes.Buffer
	for i := range 10 {
		rec := wire.AppendRecord(nil, []byte{byte(i)})
		early.Write(rec)
		if i >= 6 {
			late.Write(rec)
		}
	}
	early.Write(wire.AppendEndRecord(nil))
	late.Write(wire.AppendEndRecord(nil))
	g.add()
	g.add()
	// The late copy is fed first: it must wait, not deliver record 6 first.
	lateDone := make(chan error, 1)
	go func() { lateDone <- g.feed(1, 6, &late) }()
	time.Sleep(20 * time.Millisecond)
	if err := g.feed(0, 0, &early); err != nil {
		t.Fatal(err)
	}
	if err := <-lateDone; err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(g)
	if err != nil || !bytes.Equal(got, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("merged %v, %v", got, err)
	}
	if d := testutil.ToFloat64(m.RedundantDuplicateBytes); d != 4 {
		t.Fatalf("duplicate bytes %v, want 4", d)
	}
}

// When the only copy that could fill a gap dies, the merged stream fails
// instead of waiting forever; with a grace, it waits that long for a copy
// that resumes the stream, and such a copy fills the gap.
func TestMergerGap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		fill  bool
		want  error
	}{
		{"no grace", 0, false, errCopyGap},
		{"grace, nobody comes", 50 * time.Millisecond, false, errCopyGap},
		{"grace, a copy resumes", time.Minute, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newMerger(NewMetrics(prometheus.NewRegistry(), nil), tc.grace)
			g.add()
			g.add()
			pr, pw := io.Pipe()
			late := bytes.NewReader(wire.AppendEndRecord(wire.AppendRecord(nil, []byte("x"))))
			lateDone := make(chan error, 1)
			go func() { lateDone <- g.feed(1, 5, late) }()
			go func() { _ = g.feed(0, 0, pr) }()
			_, _ = pw.Write(wire.AppendRecord(nil, []byte("a")))
			waittest.Until(t, 2*time.Second, "record 0 delivered", func() bool { return g.received() == 1 })
			_ = pw.CloseWithError(errors.New("dead"))
			if tc.fill {
				// The replacement starts at record 1 (a seek) and brings
				// 1..4; the late copy then delivers 5 and the end.
				g.add()
				var b []byte
				b = wire.AppendAck(b, 0)
				b = wire.AppendSeek(b, 1)
				for _, r := range []string{"b", "c", "d", "e"} {
					b = wire.AppendRecord(b, []byte(r))
				}
				go func() { _ = g.feed(0, 0, bytes.NewReader(b)) }()
			}
			if err := <-lateDone; !errors.Is(err, tc.want) {
				t.Fatalf("late copy: %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				if got, err := io.ReadAll(g); string(got) != "a" || !errors.Is(err, tc.want) {
					t.Fatalf("read %q: %v", got, err)
				}
				return
			}
			if got, err := io.ReadAll(g); err != nil || string(got) != "abcdex" {
				t.Fatalf("merged %q, %v", got, err)
			}
		})
	}
}

// redundantChain is an edge-like router whose only path is the egress
// (direct), as in the WAN benchmark: the copies of a stream take two
// connections to the same hop. tr is mem, or quic or kcp over loopback UDP.
func redundantChain(t *testing.T, tr string) (*Router, *Node, *Metrics, <-chan string) {
	t.Helper()
	tcpAddr, sources := proxyEcho(t)
	ecfg := DefaultEgress()
	ecfg.Cluster = "demo"
	ecfg.Services = map[string]Service{"link-frames": {Kind: "link-frames", Address: tcpAddr}}
	var edeps, rdeps Deps
	addr := "egress"
	if tr == "mem" {
		mn := transport.NewMemNetwork()
		ecfg.Listen = map[string]string{"mem": addr}
		edeps.Transports = map[string]transport.Transport{"mem": mn.Transport("egress")}
		rdeps.Transports = map[string]transport.Transport{"mem": mn.Transport("edge")}
	} else {
		ca, _ := pki.NewCA("cluster")
		ecert, _ := ca.Issue("egress", "127.0.0.1")
		rcert, _ := ca.Issue("edge", "127.0.0.1")
		key := []byte("redundant-test-cluster-key-0123")
		ecfg.Listen = map[string]string{tr: "127.0.0.1:0"}
		edeps = Deps{TLS: pki.MutualTLS(ecert, ca.Pool()), ClusterKey: key}
		rdeps = Deps{TLS: pki.MutualTLS(rcert, ca.Pool()), ClusterKey: key}
	}
	eg, err := NewEgress(ecfg, edeps)
	if err != nil {
		t.Fatal(err)
	}
	if err := eg.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eg.Shutdown(context.Background()) })
	if tr != "mem" {
		addr = eg.Addr(tr).String()
	}
	rdeps.defaults()
	trs, err := BuildTransports([]string{tr}, SecurityConfig{}, DefaultTransport(), rdeps, &transport.SealStats{})
	if err != nil {
		t.Fatal(err)
	}
	rc := fastRouting(Route{Cluster: "demo", Direct: &Hop{Name: "egress", Transport: tr, Address: addr}})
	m := NewMetrics(prometheus.NewRegistry(), nil)
	r := NewRouter(rc, trs, m, discardLog())
	r.Start()
	t.Cleanup(r.Shutdown)
	waittest.Until(t, 5*time.Second, "a primary with its lanes up", func() bool {
		p := r.peers[rc.Routes[0].Direct.key()]
		return r.Primary("demo") != "" && lanesUp(p)
	})
	return r, eg, m, sources
}

// One copy's connection dies mid-traffic: no frame is lost, duplicated or
// reordered and the flow goes on over the other copy; the gateway saw one
// session.
func TestRedundantCopyKilled(t *testing.T) {
	trs := []string{"mem"}
	if os.Getenv("LONGLINK_INTEGRATION") != "" {
		trs = append(trs, "quic", "kcp")
	}
	for _, tr := range trs {
		for _, lane := range []uint8{0, 1} {
			t.Run(fmt.Sprintf("%s lane %d", tr, lane), func(t *testing.T) { copyKilled(t, tr, lane) })
		}
	}
}

func copyKilled(t *testing.T, tr string, lane uint8) {
	r, eg, m, sources := redundantChain(t, tr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := netip.MustParseAddrPort("198.51.100.9:40000")
	// A trace whose lane number is 0: copy i rides lane i.
	trace := wire.TraceID{15: 1}
	tun, err := r.OpenStream(ctx, wire.Header{Kind: wire.KindLinkFrames, Cluster: "demo", Service: "link-frames", Client: client, Trace: trace})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	if tun.red == nil {
		t.Fatal("link-frames tunnel is not sequenced")
	}
	if got := testutil.ToFloat64(m.RedundantCopies.WithLabelValues("opened")); got != 2 {
		t.Fatalf("%v copies opened, want 2", got)
	}
	var want bytes.Buffer
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, 0, 1<<20)
		buf := make([]byte, 4096)
		for len(b) < 300*100 {
			n, err := tun.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				break
			}
		}
		got <- b
	}()
	p := r.peers[r.cfg.Routes[0].Direct.key()]
	for i := range 300 {
		frame := bytes.Repeat([]byte{byte(i)}, 100)
		binaryIndex(frame, i)
		want.Write(frame)
		if _, err := tun.Write(frame); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if i == 100 {
			_ = p.lane(int(lane)).conn.Close()
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("echoed %d bytes, sent %d: not the same bytes", len(b), want.Len())
		}
	case <-ctx.Done():
		t.Fatal("echo did not come back")
	}
	if src := <-sources; src != client.String() {
		t.Fatalf("PROXY source %s", src)
	}
	select {
	case s := <-sources:
		t.Fatalf("the gateway saw a second session (%s)", s)
	default:
	}
	// Each side counts the loss when its reader of the copy notices it,
	// which may come after the echo.
	waittest.Until(t, 5*time.Second, "the killed copy counted lost", func() bool {
		return testutil.ToFloat64(m.RedundantCopies.WithLabelValues("lost_error"))+
			testutil.ToFloat64(eg.m.RedundantCopies.WithLabelValues("lost_error")) > 0
	})
	// The second copy joined, and so did the replacement of the killed
	// one (it resumed on a new connection).
	waittest.Until(t, 10*time.Second, "the killed copy resumed and joined", func() bool {
		return testutil.ToFloat64(eg.m.RedundantCopies.WithLabelValues("joined")) >= 2 &&
			testutil.ToFloat64(m.Resumes.WithLabelValues("ok")) >= 1
	})
}

func binaryIndex(b []byte, i int) { b[0], b[1] = byte(i>>8), byte(i) }

// After a flow ended, a late copy with its trace id is refused: it must not
// open a second gateway session.
func TestSequencedLateCopyRefused(t *testing.T) {
	r, eg, _, sources := redundantChain(t, "mem")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := wire.Header{Kind: wire.KindLinkFrames, Cluster: "demo", Service: "link-frames", Trace: wire.NewTraceID()}
	tun, err := r.OpenStream(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tun.Write([]byte("login")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(tun, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	<-sources
	// Both copies in (a copy arriving after the flow ended would be
	// refused too).
	waittest.Until(t, 3*time.Second, "the second copy joined", func() bool {
		return testutil.ToFloat64(eg.m.RedundantCopies.WithLabelValues("joined")) == 1
	})
	_ = tun.Close()
	waittest.Until(t, 3*time.Second, "no sequenced flow left", func() bool { return testutil.ToFloat64(eg.m.RedundantFlows) == 0 })

	late := h
	r.fill(&late)
	late.Sequenced, late.Copy = true, 1
	s, _, _, err := r.open(ctx, &late, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _ = s.Write(wire.AppendRecord(wire.AppendAck(nil, 0), []byte("login")))
	var se *wire.StatusError
	if err := wire.ReadStatus(s); !errors.As(err, &se) || se.Status != wire.StatusGone {
		t.Fatalf("late copy: status %v, want gone", err)
	}
	if n := testutil.ToFloat64(eg.m.RedundantCopies.WithLabelValues("refused_late")); n != 1 {
		t.Fatalf("refused_late = %v", n)
	}
	select {
	case s := <-sources:
		t.Fatalf("the late copy reached the gateway (%s)", s)
	case <-time.After(100 * time.Millisecond):
	}
}

// The egress pairs the copies of one flow and keeps two flows apart;
// a copy that does not match its flow's header is refused; a joining copy
// waits for the copy that opens its flow, and is refused when none comes.
func TestEgressPairing(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry(), nil)
	pt := newPairTable(m, DefaultRouting().Resume)
	ctx := context.Background()
	a := &wire.Header{Kind: wire.KindLinkFrames, Cluster: "c", Service: "s", Trace: wire.NewTraceID(), Sequenced: true}
	b := *a
	b.Trace = wire.NewTraceID()
	fa, created, err := pt.join(ctx, a)
	if err != nil || !created {
		t.Fatal(created, err)
	}
	a1 := *a
	a1.Copy = 1
	if f, created, err := pt.join(ctx, &a1); err != nil || created || f != fa {
		t.Fatalf("copy 1 did not join its flow: %v %v", created, err)
	}
	if fb, created, err := pt.join(ctx, &b); err != nil || !created || fb == fa {
		t.Fatalf("another trace joined: %v %v", created, err)
	}
	bad := a1
	bad.Service = "other"
	if _, _, err := pt.join(ctx, &bad); !errors.Is(err, errFlowMismatch) {
		t.Fatalf("mismatched copy: %v", err)
	}
	for range wire.MaxCopies - 2 {
		if _, _, err := pt.join(ctx, &a1); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := pt.join(ctx, &a1); !errors.Is(err, errTooManyCopies) {
		t.Fatalf("copy past MaxCopies: %v", err)
	}
	pt.leave(fa) // a copy ends: its slot can be taken again
	if _, _, err := pt.join(ctx, &a1); err != nil {
		t.Fatalf("copy after one left: %v", err)
	}
	if g := testutil.ToFloat64(m.RedundantFlows); g != 2 {
		t.Fatalf("flows gauge %v", g)
	}

	// A joining copy that overtook its flow's first copy waits for it.
	c := &wire.Header{Kind: wire.KindHTTP, Cluster: "c", Service: "w", Trace: wire.NewTraceID(), Sequenced: true, Copy: 1, Join: true}
	joined := make(chan *pairedFlow, 1)
	go func() {
		f, _, err := pt.join(ctx, c)
		if err != nil {
			t.Error(err)
		}
		joined <- f
	}()
	waittest.Until(t, 2*time.Second, "the joining copy waiting", func() bool {
		pt.mu.Lock()
		defer pt.mu.Unlock()
		return len(pt.waiting[c.Trace]) == 1
	})
	c0 := *c
	c0.Copy, c0.Join = 0, false
	fc, created, err := pt.join(ctx, &c0)
	if err != nil || !created {
		t.Fatal(created, err)
	}
	if f := <-joined; f != fc {
		t.Fatal("the waiting copy did not join the flow opened after it")
	}
	// One whose flow never comes is refused.
	d := *c
	d.Trace = wire.NewTraceID()
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, _, err := pt.join(dctx, &d); !errors.Is(err, errNoSuchFlow) {
		t.Fatalf("joining copy without a flow: %v", err)
	}

	pt.end(fa)
	if _, _, err := pt.join(ctx, a); !errors.Is(err, errFlowEnded) {
		t.Fatalf("copy after the end: %v", err)
	}
	// Tombstones expire and are bounded.
	pt.sweep(time.Now().Add(tombstoneTTL + time.Second))
	if len(pt.tombs) != 0 {
		t.Fatalf("%d tombstones after their TTL", len(pt.tombs))
	}
	for range maxTombstones + 10 {
		h := &wire.Header{Kind: wire.KindLinkFrames, Cluster: "c", Service: "s", Trace: wire.NewTraceID()}
		f, _, _ := pt.join(ctx, h)
		pt.end(f)
	}
	if len(pt.tombs) != maxTombstones {
		t.Fatalf("%d tombstones, limit %d", len(pt.tombs), maxTombstones)
	}
	if ev := testutil.ToFloat64(m.RedundantTombstones.WithLabelValues("evicted")); ev != 10 {
		t.Fatalf("evicted %v", ev)
	}
}

// Through relays, both copies of a stream take the same relay (the pin),
// which forwards each on its own lane, and meet at the egress.
func TestRedundantThroughRelays(t *testing.T) {
	ch := newMemChain(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range ch.relays {
		waittest.Until(t, 2*time.Second, "the relay's lanes to the egress up", func() bool {
			p := n.router.peers[Hop{Transport: "mem", Address: "egress"}.key()]
			return lanesUp(p)
		})
	}
	tun, err := ch.router.OpenStream(ctx, wire.Header{Kind: wire.KindLinkFrames, Cluster: "demo", Service: "link-frames"})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	echoHello(t, tun)
	<-ch.tcp
	var forwarded []float64
	waittest.Until(t, 2*time.Second, "both copies forwarded", func() bool { // the second copy may still be on its way
		forwarded = forwarded[:0]
		for _, n := range ch.relays {
			forwarded = append(forwarded, testutil.ToFloat64(n.m.Streams.WithLabelValues("link-frames", "forwarded")))
		}
		return forwarded[0]+forwarded[1] == 2
	})
	if !(forwarded[0] == 2 && forwarded[1] == 0 || forwarded[0] == 0 && forwarded[1] == 2) {
		t.Fatalf("relays forwarded %v copies: the copies split", forwarded)
	}
	waittest.Until(t, 2*time.Second, "the copies joined", func() bool {
		return testutil.ToFloat64(ch.egress.m.RedundantCopies.WithLabelValues("joined")) == 1
	})
	egressConns := func() int { ch.egress.mu.Lock(); defer ch.egress.mu.Unlock(); return len(ch.egress.conns) }
	if n := egressConns(); n < 4 {
		t.Fatalf("egress has %d connections, want 2 lanes from each relay", n)
	}
}

// A copy whose connection stalls does not hold the stream back: the other
// end's acknowledgements (of what the live copy brought) free the window,
// writes go on, and the stalled copy would skip what was acknowledged.
// Without acknowledgements the writer waits at the window.
func TestSenderStalledCopy(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry(), nil)
	const window = 256 << 10
	s := newSender(m, newMerger(m, 0), window)
	stuckR, stuck := io.Pipe() // nobody reads: every write blocks
	defer stuckR.Close()
	if _, err := s.join(0, stuck, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	live := &countingWriter{}
	if _, err := s.join(1, live, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 16<<10)
	done := make(chan error, 1)
	var written atomic.Int64
	go func() {
		for range 4 * window / len(chunk) {
			if _, err := s.Write(chunk); err != nil {
				done <- err
				return
			}
			written.Add(int64(len(chunk)))
		}
		done <- nil
	}()
	waittest.Until(t, 5*time.Second, "the writer at the window", func() bool { return written.Load() >= window })
	select {
	case <-done:
		t.Fatal("the writer went past the window without acknowledgements")
	case <-time.After(50 * time.Millisecond):
	}
	if b := testutil.ToFloat64(m.ResumeBuffered); b < window {
		t.Fatalf("buffered gauge %v below the window", b)
	}
	// The other end acknowledges everything the live copy carried.
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			s.end()
			waittest.Until(t, 2*time.Second, "the live stream closed", func() bool { return live.closed.Load() })
			return
		case <-time.After(time.Millisecond):
			s.mu.Lock()
			top := s.base + uint64(len(s.recs))
			s.mu.Unlock()
			if err := s.acked(top); err != nil {
				t.Fatal(err)
			}
		}
	}
}

type countingWriter struct {
	n      atomic.Int64
	closed atomic.Bool
}

func (w *countingWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }
func (w *countingWriter) Close() error                { w.closed.Store(true); return nil }

// lanesUp reports whether every lane of p has its own live connection.
func lanesUp(p *peer) bool {
	l0 := p.lane(0)
	if l0 == nil {
		return false
	}
	for i := 1; i < len(p.extra)+1; i++ {
		if p.lane(i) == l0 {
			return false
		}
	}
	return true
}

// Flows spread over every lane, and the copies of one stream never share
// one.
func TestLaneSpread(t *testing.T) {
	r := NewRouter(fastRouting(), nil, NewMetrics(prometheus.NewRegistry(), nil), discardLog())
	p := newPeer(r, Hop{Name: "egress", Transport: "mem", Address: "egress"}, nil)
	lanes := make([]*link, r.cfg.Lanes)
	for i := range lanes {
		lanes[i] = &link{}
		if i == 0 {
			p.link = lanes[0]
		} else {
			p.extra[i-1] = lanes[i]
		}
	}
	index := func(l *link) int {
		for i, x := range lanes {
			if x == l {
				return i
			}
		}
		t.Fatal("stream took no lane")
		return -1
	}
	used := make([]int, len(lanes))
	for range 400 {
		tr := wire.NewTraceID()
		first := index(p.laneLink(tr, 0))
		used[first]++
		if second := index(p.laneLink(tr, 1)); second == first {
			t.Fatalf("both copies of %x on lane %d", tr, first)
		}
	}
	for i, n := range used {
		if n < 400/len(lanes)/2 {
			t.Fatalf("lane %d carried %d of 400 flows: %v", i, n, used)
		}
	}
	// A lane being redialed hands its flows to lane 0.
	p.extra[0] = nil
	if got := p.laneLink(wire.TraceID{3: 1}, 0); got != lanes[0] {
		t.Fatalf("flow of a lane being redialed took lane %d, want 0", index(got))
	}
}

// FuzzSequencedCopy feeds any bytes to a sequenced stream's end as its
// only copy: no panic, and the feed returns (at the end of the bytes, at
// a bad frame, or at once when a seek leaves a gap no copy can fill).
func FuzzSequencedCopy(f *testing.F) {
	var b []byte
	b = wire.AppendAck(b, 0)
	b = wire.AppendRecord(b, []byte("ab"))
	b = wire.AppendSeek(b, 1)
	b = wire.AppendRecord(b, []byte("c"))
	f.Add(wire.AppendEndRecord(b))
	f.Add(wire.AppendAck(nil, 5)) // an acknowledgement of records never sent
	f.Add(wire.AppendSeek(wire.AppendSeek(nil, 3), 1))
	f.Add([]byte{0x80, 9, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 'x'})
	f.Fuzz(func(t *testing.T, in []byte) {
		m := NewMetrics(prometheus.NewRegistry(), nil)
		g := newMerger(m, 0)
		out := newSender(m, g, 64<<10)
		g.out = out
		if _, err := out.Write([]byte("sent")); err != nil {
			t.Fatal(err)
		}
		g.add()
		done := make(chan error, 1)
		go func() { done <- g.feed(0, 0, bytes.NewReader(in)) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("feed hung")
		}
		g.close()
		out.abort()
	})
}

// A copy waiting for a record that another copy then delivers is no longer
// ahead: when that other copy ends right after, the merged stream goes on
// with the waiting copy instead of failing with a gap.
func TestMergerWaiterSatisfiedBeforeCopyEnds(t *testing.T) {
	for range 50 {
		g := newMerger(NewMetrics(prometheus.NewRegistry(), nil), 0)
		var early, late bytes.Buffer
		for i := range 8 {
			rec := wire.AppendRecord(nil, []byte{byte(i)})
			if i < 5 {
				early.Write(rec) // 0..4, then the copy dies
			}
			if i >= 3 {
				late.Write(rec) // 3..7 and the end
			}
		}
		late.Write(wire.AppendEndRecord(nil))
		g.add()
		g.add()
		lateDone := make(chan error, 1)
		go func() { lateDone <- g.feed(1, 3, &late) }()
		waittest.Until(t, 5*time.Second, "the late copy waiting", func() bool {
			g.mu.Lock()
			defer g.mu.Unlock()
			return g.waitingAhead() == 1
		})
		if err := g.feed(0, 0, &early); !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Fatalf("early copy: %v", err)
		}
		if err := <-lateDone; err != nil {
			t.Fatalf("late copy: %v", err)
		}
		if got, err := io.ReadAll(g); err != nil || !bytes.Equal(got, []byte{0, 1, 2, 3, 4, 5, 6, 7}) {
			t.Fatalf("merged %v, %v", got, err)
		}
	}
}

// FuzzMerger feeds the merger copies of one record stream that start at
// arbitrary indexes and may stop early, concurrently. The merged stream is
// the records in order, each once, and ends with EOF exactly when the copies
// together cover every record and one brings the end; otherwise it fails.
// It never hangs.
func FuzzMerger(f *testing.F) {
	f.Add([]byte("hello, redundant world"), []byte{3, 5, 1}, []byte{0, 0xff, 2, 0xff})
	f.Add([]byte("abcdef"), []byte{1}, []byte{0, 3, 2, 0xff})
	f.Add([]byte("x"), []byte{1}, []byte{1, 0xff})
	f.Add([]byte{}, []byte{}, []byte{0, 0xff, 0, 0xff, 0, 0xff, 0, 0xff})
	f.Fuzz(func(t *testing.T, payload, sizes, copies []byte) {
		// The records: payload cut by sizes (1..16 bytes each).
		var recs [][]byte
		for i := 0; len(payload) > 0; i++ {
			n := 1
			if len(sizes) > 0 {
				n = int(sizes[i%len(sizes)])%16 + 1
			}
			n = min(n, len(payload))
			recs = append(recs, payload[:n])
			payload = payload[n:]
		}
		// Each copy: (first, last) byte pairs; last 0xff means up to the end
		// record, else the copy dies after record last.
		type cp struct {
			first, stop int
			end         bool
		}
		var cps []cp
		for i := 0; i+1 < len(copies) && len(cps) < wire.MaxCopies; i += 2 {
			c := cp{first: int(copies[i]) % (len(recs) + 1)}
			if copies[i+1] == 0xff {
				c.stop, c.end = len(recs), true
			} else {
				c.stop = max(c.first, min(len(recs), int(copies[i+1])))
			}
			cps = append(cps, c)
		}
		if len(cps) == 0 {
			return
		}
		covered := make([]bool, len(recs))
		complete := false
		for _, c := range cps {
			for k := c.first; k < c.stop; k++ {
				covered[k] = true
			}
		}
		complete = !slices.Contains(covered, false)
		anyEnd := slices.ContainsFunc(cps, func(c cp) bool { return c.end })
		g := newMerger(NewMetrics(prometheus.NewRegistry(), nil), 0)
		for range cps {
			g.add()
		}
		for i, c := range cps {
			var b []byte
			for _, r := range recs[c.first:c.stop] {
				b = wire.AppendRecord(b, r)
			}
			if c.end {
				b = wire.AppendEndRecord(b)
			}
			go func() { _ = g.feed(uint8(i), uint64(c.first), bytes.NewReader(b)) }()
		}
		type result struct {
			b   []byte
			err error
		}
		done := make(chan result, 1)
		go func() { b, err := io.ReadAll(g); done <- result{b, err} }()
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			g.close()
			t.Fatal("the merged stream hangs")
		}
		want := bytes.Join(recs, nil)
		if complete && anyEnd {
			if r.err != nil || !bytes.Equal(r.b, want) {
				t.Fatalf("copies %+v cover every record: merged %q, %v; want %q", cps, r.b, r.err, want)
			}
			return
		}
		if r.err == nil {
			t.Fatalf("copies %+v leave a gap or no end, yet the merged stream ended cleanly with %q", cps, r.b)
		}
		if !bytes.HasPrefix(want, r.b) {
			t.Fatalf("merged %q is not a prefix of %q", r.b, want)
		}
	})
}

// FuzzCopyStart: ParseCopyStart accepts exactly CopyStartLen bytes, and
// what it accepts re-encodes to the same bytes.
func FuzzCopyStart(f *testing.F) {
	f.Add(wire.AppendCopyStart(nil, 0xfeed, 42))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		flow, first, err := wire.ParseCopyStart(b)
		if (err == nil) != (len(b) == wire.CopyStartLen) {
			t.Fatalf("%d bytes: err %v", len(b), err)
		}
		if err == nil && !bytes.Equal(wire.AppendCopyStart(nil, flow, first), b) {
			t.Fatalf("re-encoding differs: %x", b)
		}
	})
}
