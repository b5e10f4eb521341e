package relay

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/pkg/pki"
	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

// TestStrangerCannotOpenTunnel: a node without the cluster's credentials
// (a certificate from another CA for QUIC, another key for KCP) never gets a
// path up to a real egress and cannot open a tunnel through it.
func TestStrangerCannotOpenTunnel(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	ca, _ := pki.NewCA("cluster")
	other, _ := pki.NewCA("intruder")
	cert, _ := ca.Issue("egress", "127.0.0.1")
	ecfg := DefaultEgress()
	ecfg.Listen = map[string]string{"quic": "127.0.0.1:0", "kcp": "127.0.0.1:0"}
	ecfg.Cluster = "demo"
	tcpAddr, _ := proxyEcho(t)
	ecfg.Services = map[string]Service{"link": {Kind: "link", Address: tcpAddr}}
	reg := prometheus.NewRegistry()
	eg, err := NewEgress(ecfg, Deps{Registerer: reg, TLS: pki.MutualTLS(cert, ca.Pool()), ClusterKey: []byte("the-real-cluster-key-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := eg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer eg.Shutdown(ctx)

	icert, _ := other.Issue("intruder", "127.0.0.1")
	// The intruder trusts the real CA (so it would accept the egress) but
	// presents a certificate of its own CA.
	q, err := transport.NewQUIC(transport.QUICConfig{TLS: pki.MutualTLS(icert, ca.Pool())})
	if err != nil {
		t.Fatal(err)
	}
	k, err := transport.NewKCP(transport.KCPConfig{ClusterKey: []byte("a-guessed-cluster-key-012345"), HandshakeTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rc := fastRouting(Route{Cluster: "demo", NextHops: []Hop{
		{Name: "quic", Transport: "quic", Address: eg.Addr("quic").String()},
		{Name: "kcp", Transport: "kcp", Address: eg.Addr("kcp").String()},
	}})
	r := NewRouter(rc, map[string]transport.Transport{"quic": q, "kcp": k}, NewMetrics(prometheus.NewRegistry(), nil), discardLog())
	r.Start()
	defer r.Shutdown()
	time.Sleep(2 * time.Second)
	for _, p := range r.Paths() {
		if p.Up {
			t.Fatalf("intruder's path %s is up", p.Name)
		}
	}
	octx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := r.OpenStream(octx, wire.Header{Kind: wire.KindLink, Cluster: "demo", Service: "link"}); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("intruder opened a tunnel: %v", err)
	}
	if got := testutil.ToFloat64(eg.m.Streams.WithLabelValues("link", "terminated")); got != 0 {
		t.Fatalf("egress terminated %v streams for the intruder", got)
	}
	if eg.stats.Rejected.Load() == 0 {
		t.Fatal("the egress counted no rejected KCP packets from the intruder")
	}
}
