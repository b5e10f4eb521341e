package relay

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/metricstest"
	"github.com/longlink/longlink/relay/transport"
)

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, &transport.SealStats{})
	// Touch the vectors so that they are gathered.
	m.Streams.WithLabelValues("link", "ok").Inc()
	m.ActiveStreams.WithLabelValues("link").Inc()
	m.Bytes.WithLabelValues("up").Inc()
	m.Datagrams.WithLabelValues("up").Inc()
	m.DatagramsDropped.WithLabelValues("x").Inc()
	m.PathRTT.WithLabelValues("p").Set(1)
	m.PathJitter.WithLabelValues("p").Set(1)
	m.PathLoss.WithLabelValues("p").Set(1)
	m.PathUp.WithLabelValues("p").Set(1)
	m.PathSelected.WithLabelValues("c", "p", "primary").Set(1)
	m.PathSwitches.WithLabelValues("c", "down").Inc()
	m.PathStreams.WithLabelValues("p").Inc()
	m.PeerDials.WithLabelValues("p", "ok").Inc()
	m.EgressDials.WithLabelValues("s", "ok").Inc()
	m.RedundantCopies.WithLabelValues("opened").Inc()
	m.RedundantFirst.WithLabelValues("0").Inc()
	m.RedundantTombstones.WithLabelValues("added").Inc()
	m.DisjointCopies.WithLabelValues("stream", "opened").Inc()
	m.DisjointSent.WithLabelValues("udp").Inc()
	m.DisjointDuplicates.WithLabelValues("udp").Inc()
	m.DisjointWins.WithLabelValues("stream", "disjoint").Inc()
	metricstest.Check(t, reg, "longlink_relay_")
}
