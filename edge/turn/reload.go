package turn

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"

	"github.com/longlink/longlink/pkg/config"
)

// Reloadable lists the config keys Reload applies to a running server:
// the shared secrets, the peer policy, the quotas (at once), the bandwidth
// limits (to allocations made after the reload: a user's shared bucket to
// users with no allocation then), the TCP timeouts (to connections
// accepted after it) and the TLS certificate files (re-read on every
// reload, so a renewed certificate under the same name is picked up, for
// the handshakes that follow). Everything else (listeners, realm, relay
// addresses and ports, connection caps) applies only at start.
var Reloadable = []string{"secrets", "peers", "quotas", "limits", "tcp_auth_timeout", "tcp_idle_timeout", "tls_cert_file", "tls_key_file"}

// Reload validates next and applies its reloadable keys (Reloadable); when
// next changes any other key it refuses, naming each, and changes nothing.
// It returns the keys that changed and were applied.
func (s *Server) Reload(next Config) ([]string, error) {
	if err := next.Validate(); err != nil {
		return nil, fmt.Errorf("turn: reload: %w", err)
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cur := *s.live.Load()
	applied, err := config.ReloadPlan(cur, next, Reloadable)
	if err != nil {
		s.m.reloads.WithLabelValues("refused").Inc()
		return nil, fmt.Errorf("turn: reload: %w", err)
	}
	// everything that can fail first, so a refused reload changes nothing
	peers, err := newPeerPolicy(next.Peers)
	if err != nil {
		return nil, fmt.Errorf("turn: reload: peers: %w", err)
	}
	var cert *tls.Certificate
	if s.deps.TLSConfig == nil && s.cert.Load() != nil { // TLS listeners with their own certificate
		switch {
		case next.TLSCertFile != "":
			c, err := tls.LoadX509KeyPair(next.TLSCertFile, next.TLSKeyFile)
			if err != nil {
				s.m.reloads.WithLabelValues("refused").Inc()
				return nil, fmt.Errorf("turn: reload: tls_cert_file: %w", err)
			}
			cert = &c
		case cur.TLSCertFile != "":
			s.m.reloads.WithLabelValues("refused").Inc()
			return nil, fmt.Errorf("turn: reload: tls_cert_file: removed, and a self-signed certificate applies only at start")
		}
	}
	if slices.Contains(applied, "secrets") {
		if err := s.SetSecrets(next.Secrets); err != nil {
			return nil, fmt.Errorf("turn: reload: %w", err)
		}
	}
	s.peers.Store(peers)
	s.quotas.set(next.Quotas, next.Limits)
	if cert != nil {
		s.cert.Store(cert)
	}
	s.live.Store(&next) // only reloadable keys differ from cur
	s.m.reloads.WithLabelValues("ok").Inc()
	s.log.Info("config reloaded", "applied", strings.Join(applied, ","), "certificate_reread", cert != nil)
	return applied, nil
}
