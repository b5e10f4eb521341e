package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"sync/atomic"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

// TestKCPFECRepairsLoss sends a stream through a proxy that drops 3% of the
// packets in each direction, once with FEC (10 data + 3 parity shards, the
// default) and once without. Both deliver every byte; with FEC the
// receivers rebuild a good share of the lost packets from parity instead of
// waiting for their retransmission, and without it they rebuild none.
// (The figures of what that buys, goodput and latency on an emulated lossy
// backbone, are in BENCHMARKS.md, "Forward error correction".)
func TestKCPFECRepairsLoss(t *testing.T) {
	for _, tc := range []struct {
		name         string
		data, parity int
	}{{"fec", 10, 3}, {"plain", 0, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			dropped, recovered, parity := echoThroughLoss(t, tc.data, tc.parity, 0.03)
			t.Logf("%s: proxy dropped %d packets; receivers rebuilt %d from %d parity shards", tc.name, dropped, recovered, parity)
			if dropped < 20 {
				t.Fatalf("the proxy dropped only %d packets: the test did not exercise loss", dropped)
			}
			switch {
			case tc.parity == 0 && (recovered != 0 || parity != 0):
				t.Errorf("without FEC: %d packets rebuilt, %d parity shards received", recovered, parity)
			case tc.parity > 0 && recovered*4 < uint64(dropped):
				// Bulk traffic fills every group; at 3% loss almost no
				// group loses more than its 3 parity shards can rebuild,
				// but ACKs and the stream's last group may go unprotected.
				t.Errorf("with FEC: %d of %d lost packets rebuilt, want at least a quarter", recovered, dropped)
			}
		})
	}
}

// echoThroughLoss echoes 1 MiB over one KCP stream through a lossy proxy
// (20 ms one way, loss in each direction), checks it arrived intact and
// returns how many packets the proxy dropped and kcp-go's FEC counters over
// the run (process-wide: the test does not run in parallel with others).
func echoThroughLoss(t *testing.T, data, parity int, loss float64) (dropped int, recovered, parityShards uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	srv, err := NewKCP(KCPConfig{ClusterKey: clusterKey, DataShards: data, ParityShards: parity})
	if err != nil {
		t.Fatal(err)
	}
	cli, _ := NewKCP(KCPConfig{ClusterKey: clusterKey, DataShards: data, ParityShards: parity})
	ln, _ := listenEcho(t, ctx, srv)
	proxy := newRandomLossProxy(t, ln.Addr(), 20*time.Millisecond, 0, loss)
	c, err := cli.Dial(ctx, proxy.front.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	beforeRec := atomic.LoadUint64(&kcp.DefaultSnmp.FECRecovered)
	beforePar := atomic.LoadUint64(&kcp.DefaultSnmp.FECParityShards)

	const size = 1 << 20
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i*7 + i>>9)
	}
	want := sha256.Sum256(payload)
	werr := make(chan error, 1)
	go func() { _, err := s.Write(payload); werr <- err }()
	h := sha256.New()
	if _, err := io.CopyN(h, s, size); err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("echo corrupted")
	}
	proxy.mu.Lock()
	dropped = proxy.dropped[0] + proxy.dropped[1]
	proxy.mu.Unlock()
	return dropped, atomic.LoadUint64(&kcp.DefaultSnmp.FECRecovered) - beforeRec,
		atomic.LoadUint64(&kcp.DefaultSnmp.FECParityShards) - beforePar
}
