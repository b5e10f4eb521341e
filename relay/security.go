package relay

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"sort"

	"github.com/longlink/longlink/pkg/logging"
	"github.com/longlink/longlink/pkg/pki"
	"github.com/longlink/longlink/relay/transport"
	"github.com/prometheus/client_golang/prometheus"
)

// Deps are what a relay node, an egress or an edge's router gets from its
// process.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// TLS, when set, is used for QUIC instead of Security's files (longlink
	// dev passes a pki.MutualTLS config issued by its own CA).
	TLS *tls.Config
	// ClusterKey, when set, is used for KCP instead of Security.ClusterKey.
	ClusterKey []byte
	// Transports, when set, replaces the transports built from config; unit
	// tests pass transport.Mem here.
	Transports map[string]transport.Transport
}

func (d *Deps) defaults() {
	d.Logger = logging.OrDiscard(d.Logger)
	if d.Registerer == nil {
		d.Registerer = prometheus.NewRegistry()
	}
}

// BuildTransports returns the transports named in need, built from the
// credentials in sec (or deps overrides). Edges and relays share it.
func BuildTransports(need []string, sec SecurityConfig, tc TransportConfig, deps Deps, stats *transport.SealStats) (map[string]transport.Transport, error) {
	out := map[string]transport.Transport{}
	sort.Strings(need)
	for _, name := range need {
		if _, done := out[name]; done {
			continue
		}
		if t, ok := deps.Transports[name]; ok {
			out[name] = t
			continue
		}
		switch name {
		case "quic":
			tlsCfg := deps.TLS
			if tlsCfg == nil {
				if sec.CertFile == "" || sec.KeyFile == "" || sec.CAFile == "" {
					return nil, fmt.Errorf("quic transport: security.ca_file, cert_file and key_file are required")
				}
				cert, err := tls.LoadX509KeyPair(sec.CertFile, sec.KeyFile)
				if err != nil {
					return nil, fmt.Errorf("quic transport: %w", err)
				}
				pool, err := pki.LoadPool(sec.CAFile)
				if err != nil {
					return nil, fmt.Errorf("quic transport: %w", err)
				}
				tlsCfg = pki.MutualTLS(cert, pool)
			}
			q, err := transport.NewQUIC(transport.QUICConfig{
				TLS: tlsCfg, KeepAlive: tc.QUIC.KeepAlive.D(), IdleTimeout: tc.QUIC.IdleTimeout.D(),
				MaxStreams: tc.QUIC.MaxStreams, SocketBuffer: tc.QUIC.SocketBuffer, Logger: deps.Logger,
			})
			if err != nil {
				return nil, err
			}
			out[name] = q
		case "kcp":
			key := deps.ClusterKey
			if key == nil {
				if !sec.ClusterKey.IsSet() {
					return nil, fmt.Errorf("kcp transport: security.cluster_key is required")
				}
				key = []byte(sec.ClusterKey.Reveal())
			}
			k, err := transport.NewKCP(transport.KCPConfig{
				ClusterKey: key, Profile: tc.KCP.Profile, DataShards: tc.KCP.DataShards, ParityShards: tc.KCP.ParityShards,
				KeepAlive: tc.KCP.KeepAlive.D(), SocketBuffer: tc.KCP.SocketBuffer, Logger: deps.Logger, Stats: stats,
			})
			if err != nil {
				return nil, err
			}
			out[name] = k
		default:
			return nil, fmt.Errorf("transport %q is not available", name)
		}
	}
	return out, nil
}

func routeTransports(r RoutingConfig) []string {
	var need []string
	for _, rt := range r.Routes {
		for _, h := range rt.NextHops {
			need = append(need, h.Transport)
		}
		for _, h := range rt.directs() {
			need = append(need, h.Transport)
		}
	}
	return need
}
