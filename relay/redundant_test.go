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
func TestRedundantOrderUnderRandomDelays(t *testing.T) {
	for seed := range uint64(30) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 7))
			m := NewMetrics(prometheus.NewRegistry(), nil)
			out, in := newFanout(m), newMerger(m)
			copies := 2 + rng.IntN(3)
			survivor := rng.IntN(copies)
			for i := range copies {
				dieAfter := -1
				if i != survivor && rng.IntN(2) == 0 {
					dieAfter = rng.IntN(40)
				}
				c := newDelayedCopy(rng, time.Duration(1+rng.IntN(3))*time.Millisecond, dieAfter)
				in.add()
				co := out.join(uint8(i), c, nil)
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
	g := newMerger(m)
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
// instead of waiting forever.
func TestMergerGap(t *testing.T) {
	g := newMerger(NewMetrics(prometheus.NewRegistry(), nil))
	g.add()
	g.add()
	pr, pw := io.Pipe()
	late := bytes.NewReader(wire.AppendRecord(nil, []byte("x")))
	lateDone := make(chan error, 1)
	go func() { lateDone <- g.feed(1, 5, late) }()
	go func() { _ = g.feed(0, 0, pr) }()
	time.Sleep(20 * time.Millisecond)
	_ = pw.CloseWithError(errors.New("dead"))
	if err := <-lateDone; !errors.Is(err, errCopyGap) {
		t.Fatalf("late copy: %v", err)
	}
	if _, err := g.Read(make([]byte, 1)); !errors.Is(err, errCopyGap) {
		t.Fatalf("read: %v", err)
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
		t.Fatal("link-frames tunnel is not redundant")
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
	if lost := testutil.ToFloat64(m.RedundantCopies.WithLabelValues("lost_error")) +
		testutil.ToFloat64(eg.m.RedundantCopies.WithLabelValues("lost_error")); lost == 0 {
		t.Fatal("the killed copy was not counted lost")
	}
	if joined := testutil.ToFloat64(eg.m.RedundantCopies.WithLabelValues("joined")); joined != 1 {
		t.Fatalf("egress joined %v copies, want 1", joined)
	}
}

func binaryIndex(b []byte, i int) { b[0], b[1] = byte(i>>8), byte(i) }

// After a flow ended, a late copy with its trace id is refused: it must not
// open a second gateway session.
func TestRedundantLateCopyRefused(t *testing.T) {
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
	_ = tun.Close()
	waittest.Until(t, 3*time.Second, "no redundant flow left", func() bool { return testutil.ToFloat64(eg.m.RedundantFlows) == 0 })

	late := h
	r.fill(&late)
	late.Redundant, late.Copy = true, 1
	s, _, _, err := r.open(ctx, &late, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _ = s.Write(wire.AppendRecord(nil, []byte("login")))
	var se *wire.StatusError
	if err := wire.ReadStatus(s); !errors.As(err, &se) || se.Status != wire.StatusRefused {
		t.Fatalf("late copy: status %v, want refused", err)
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
// a copy that does not match its flow's header is refused.
func TestEgressPairing(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry(), nil)
	pt := newPairTable(m)
	a := &wire.Header{Kind: wire.KindLinkFrames, Cluster: "c", Service: "s", Trace: wire.NewTraceID(), Redundant: true}
	b := *a
	b.Trace = wire.NewTraceID()
	fa, created, err := pt.join(a)
	if err != nil || !created {
		t.Fatal(created, err)
	}
	a1 := *a
	a1.Copy = 1
	if f, created, err := pt.join(&a1); err != nil || created || f != fa {
		t.Fatalf("copy 1 did not join its flow: %v %v", created, err)
	}
	if fb, created, err := pt.join(&b); err != nil || !created || fb == fa {
		t.Fatalf("another trace joined: %v %v", created, err)
	}
	bad := a1
	bad.Service = "other"
	if _, _, err := pt.join(&bad); !errors.Is(err, errFlowMismatch) {
		t.Fatalf("mismatched copy: %v", err)
	}
	for range wire.MaxCopies - 2 {
		if _, _, err := pt.join(&a1); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := pt.join(&a1); !errors.Is(err, errTooManyCopies) {
		t.Fatalf("copy past MaxCopies: %v", err)
	}
	if g := testutil.ToFloat64(m.RedundantFlows); g != 2 {
		t.Fatalf("flows gauge %v", g)
	}
	pt.end(fa)
	if _, _, err := pt.join(a); !errors.Is(err, errFlowEnded) {
		t.Fatalf("copy after the end: %v", err)
	}
	// Tombstones expire and are bounded.
	pt.sweep(time.Now().Add(tombstoneTTL + time.Second))
	if len(pt.tombs) != 0 {
		t.Fatalf("%d tombstones after their TTL", len(pt.tombs))
	}
	for range maxTombstones + 10 {
		h := &wire.Header{Kind: wire.KindLinkFrames, Cluster: "c", Service: "s", Trace: wire.NewTraceID()}
		f, _, _ := pt.join(h)
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
	if _, err := tun.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(tun, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo %q %v", buf, err)
	}
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

// A copy whose connection stalls does not hold the stream back: once it is
// fanoutLagging behind while the other copy keeps up, it is dropped and
// counted, and writes go on.
func TestFanoutDropsLaggingCopy(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry(), nil)
	f := newFanout(m)
	_, stuck := io.Pipe() // nobody reads: every write blocks
	f.join(0, stuck, nil)
	live := &countingWriter{}
	f.join(1, live, nil)
	chunk := make([]byte, 64<<10)
	done := make(chan error, 1)
	go func() {
		for range (fanoutLagging / len(chunk)) * 2 {
			if _, err := f.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stalled copy blocked the writer")
	}
	if n := testutil.ToFloat64(m.RedundantCopies.WithLabelValues("lost_lagging")); n != 1 {
		t.Fatalf("lost_lagging = %v", n)
	}
	f.end()
	waittest.Until(t, 2*time.Second, "the live stream closed", func() bool { return live.closed.Load() })
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

// A copy waiting for a record that another copy then delivers is no longer
// ahead: when that other copy ends right after, the merged stream goes on
// with the waiting copy instead of failing with a gap.
func TestMergerWaiterSatisfiedBeforeCopyEnds(t *testing.T) {
	for range 50 {
		g := newMerger(NewMetrics(prometheus.NewRegistry(), nil))
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
		g := newMerger(NewMetrics(prometheus.NewRegistry(), nil))
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
