package turn

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/pkg/metricstest"
)

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// Vectors appear only once they have a child.
	m.credentialsAccepted.WithLabelValues("x").Inc()
	m.reloads.WithLabelValues("ok").Inc()
	mfs := metricstest.Check(t, reg, "longlink_turn_")
	metricstest.InREADME(t, mfs, "README.md")
	if len(mfs) < 15 {
		t.Fatalf("only %d metrics gathered", len(mfs))
	}
}

// A datagram for pion that finds its reader's hand-off queue full is
// dropped and counted, on relay sockets and listeners alike.
func TestHandOffQueueFullCounted(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{m: m}
	from := netip.MustParseAddrPort("192.0.2.1:5000")
	relay := &relayPacketConn{s: s, slow: make(chan *slowDatagram, 1)}
	ln := &authPacketConn{s: s, slow: make(chan *slowDatagram, 1)}
	for range 3 {
		relay.toPion([]byte("peer"), from)
		ln.toPion([]byte("stun"), from)
	}
	if got := testutil.ToFloat64(m.droppedQueueFull); got != 4 {
		t.Fatalf("queue_full drops = %v, want 4 (2 of 3 on each socket)", got)
	}
	if got := testutil.ToFloat64(m.packetsToClient); got != 1 {
		t.Fatalf("packets to client = %v, want 1 (only the queued one)", got)
	}
}
