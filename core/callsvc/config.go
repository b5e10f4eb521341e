package callsvc

import (
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

// Config configures the call service.
type Config struct {
	// Cluster is the bus subject prefix of the app service cluster it
	// answers for. Default buswire.DefaultCluster.
	Cluster string `yaml:"cluster"`
	// Secrets are the TURN shared secrets, the same set the TURN servers
	// hold; the first signs. Required. (The LBS will push them.)
	Secrets []turncred.Secret `yaml:"secrets"`
	// CredentialTTL is the lifetime of issued credentials when the client
	// asks for none. Default 12h.
	CredentialTTL config.Duration `yaml:"credential_ttl"`
	// MaxCredentialTTL caps what a client may ask for. Default 24h.
	MaxCredentialTTL config.Duration `yaml:"max_credential_ttl"`
	// Servers are the TURN sites, in fallback order. Required.
	Servers []ServerConfig `yaml:"servers"`
	// MaxServers is how many sites an answer lists. Default 3.
	MaxServers int `yaml:"max_servers"`
	// MaxPayloadBytes caps a signal's payload (SDP, candidate). Default 16384.
	MaxPayloadBytes int `yaml:"max_payload_bytes"`
	// SignalsPerSecond and SignalBurst limit signals per account on each
	// service node (ICE trickles a few dozen candidates per call). Defaults
	// 20 and 100.
	SignalsPerSecond float64 `yaml:"signals_per_second"`
	SignalBurst      int     `yaml:"signal_burst"`
}

// ServerConfig is one TURN site.
type ServerConfig struct {
	// Site names the site (shown to clients, used in metrics).
	Site string `yaml:"site"`
	// URLs are its TURN URIs (RFC 7065), e.g.
	// "turn:203.0.113.5:3478?transport=udp".
	URLs []string `yaml:"urls"`
	// ClientCIDRs are the client networks this site is nearest to; clients
	// inside them get it first (longest prefix wins). Until the LBS feeds
	// locations, this is how "nearest" is configured.
	ClientCIDRs []string `yaml:"client_cidrs"`
}

// Default returns the defaults; Secrets and Servers must still be set.
func Default() Config {
	return Config{
		Cluster:          buswire.DefaultCluster,
		CredentialTTL:    config.Duration(12 * time.Hour),
		MaxCredentialTTL: config.Duration(24 * time.Hour),
		MaxServers:       3,
		MaxPayloadBytes:  16384,
		SignalsPerSecond: 20,
		SignalBurst:      100,
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs config.Errors
	if c.Cluster == "" || strings.ContainsAny(c.Cluster, ".*> ") {
		errs.Addf("cluster: %q is not a subject token", c.Cluster)
	}
	if err := turncred.ValidateSecrets(c.Secrets); err != nil {
		errs.Addf("secrets: %w", err)
	}
	if c.CredentialTTL.D() < time.Minute {
		errs.Addf("credential_ttl: at least 1m")
	}
	if c.MaxCredentialTTL.D() < c.CredentialTTL.D() {
		errs.Addf("max_credential_ttl: below credential_ttl")
	}
	if len(c.Servers) == 0 {
		errs.Addf("servers: at least one TURN site is needed")
	}
	for i, s := range c.Servers {
		if len(s.URLs) == 0 {
			errs.Addf("servers[%d].urls: at least one", i)
		}
		for j, u := range s.URLs {
			if p, err := url.Parse(u); err != nil || (p.Scheme != "turn" && p.Scheme != "turns") || p.Opaque == "" {
				errs.Addf("servers[%d].urls[%d]: %q is not a turn: or turns: URI", i, j, u)
			}
		}
		for j, cidr := range s.ClientCIDRs {
			if _, err := netip.ParsePrefix(cidr); err != nil {
				errs.Addf("servers[%d].client_cidrs[%d]: %v", i, j, err)
			}
		}
	}
	if c.MaxServers < 1 {
		errs.Addf("max_servers: at least 1")
	}
	if c.MaxPayloadBytes < 256 || c.MaxPayloadBytes > 1<<20 {
		errs.Addf("max_payload_bytes: want 256..1048576")
	}
	if c.SignalsPerSecond <= 0 || c.SignalBurst < 1 {
		errs.Addf("signals_per_second, signal_burst: must be positive")
	}
	return errs.Err()
}
