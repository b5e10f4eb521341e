package relay

import (
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/longlink/longlink/relay/transport"
)

// Metric names follow longlink_relay_<thing>[_total|_seconds|_ratio] and
// pass promlint.
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
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`^longlink_relay_[a-z_]+$`)
	for _, mf := range mfs {
		if !name.MatchString(mf.GetName()) {
			t.Errorf("metric %s does not follow longlink_relay_*", mf.GetName())
		}
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
