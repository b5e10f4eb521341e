package edge

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"time"

	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/logintoken"
	"github.com/longlink/longlink/edge/turn"
	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/lbs/nodeclient"
	"github.com/longlink/longlink/pkg/certfiles"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/relay"
	"github.com/longlink/longlink/relay/wire"
)

// Config is an edge node.
type Config struct {
	// Name identifies the edge in logs and metrics. Default "edge".
	Name string `yaml:"name"`
	// Cluster is the destination cluster of client flows. Default "default".
	Cluster string `yaml:"cluster"`
	// Site is the data centre the edge runs in (a lower-case DNS label, as
	// the LBS policy's sites): longlink_edge_info{site}, the LBS heartbeat
	// label "site" unless lbs.labels sets one, and routing.home_site when
	// that is unset (the core site whose egresses the edge prefers).
	// Default "".
	Site string `yaml:"site"`
	// Link is the client-facing TCP listener for the Link protocol. Default
	// 127.0.0.1:7720 → service "link". An empty listen address disables it.
	Link TCPListener `yaml:"link"`
	// WebLink is the client-facing HTTP/WebSocket listener (Socket.IO
	// passthrough; HTTPS/WSS with TLS set). Default 127.0.0.1:7721 →
	// service "weblink".
	WebLink TCPListener `yaml:"weblink"`
	// UDP lists UDP ports forwarded as datagrams (A/V media). Default none.
	UDP []UDPListener `yaml:"udp"`
	// Limits protect the edge and the core from one client or a flood.
	Limits Limits `yaml:"limits"`
	// Drain says how an edge leaves: stop accepting, tell the LBS, then close
	// sessions gradually over DrainPeriod (capped by the shutdown deadline).
	DrainPeriod config.Duration       `yaml:"drain_period"`
	Security    relay.SecurityConfig  `yaml:"security"`
	Transport   relay.TransportConfig `yaml:"transport"`
	// Routing lists next hops (relays, or the core egress directly) per cluster.
	Routing relay.RoutingConfig `yaml:"routing"`
	// TURN runs the TURN server (edge/turn) on this edge when enabled.
	TURN TURNSection `yaml:"turn"`
	// LBS, when set, registers the edge with the LBS (lbs/nodeclient):
	// heartbeats carry the session count, and a drain is reported before
	// sessions are shed. Default: not registered.
	LBS *nodeclient.Config `yaml:"lbs"`
}

// TCPListener is a client-facing TCP listener.
type TCPListener struct {
	// Listen is host:port; empty disables the listener.
	Listen string `yaml:"listen"`
	// Service is the service name at the destination cluster.
	Service string `yaml:"service"`
	// Terminate (Link listener only) makes the edge end the client's Link
	// handshake itself with the Link server keys and carry the frames to
	// the core as a link-frames stream. Default: off (the client's bytes
	// are passed through to the gateway).
	Terminate *LinkTermination `yaml:"terminate"`
	// QUIC (Link listener only) is a UDP ip:port where the edge also takes
	// Link over QUIC (core/link/linkquic): each QUIC connection's stream is
	// served as a Link TCP connection is, with the same service and
	// termination. Default: none.
	QUIC string `yaml:"quic"`
	// QUICDuplicateMax (with QUIC) is the largest datagram, in bytes, that
	// the edge sends twice to a Link over QUIC client once its handshake
	// is done, so that a message is late only when both copies are lost on
	// the access leg (core/link/linkquic Options.DuplicateMax). Default
	// 700; -1: off.
	QUICDuplicateMax int `yaml:"quic_duplicate_max"`
	// TLS (WebLink listener only) makes the edge end the browser's TLS
	// (HTTPS, WSS) with the app's certificates; the plaintext HTTP travels
	// on through the tunnel. Default: off (plain HTTP, or TLS passed
	// through to a gateway that holds the certificate).
	TLS *ListenerTLS `yaml:"tls"`
}

// ListenerTLS is TLS termination on a client-facing listener.
type ListenerTLS struct {
	// Certificates are chosen per connection by the name the client asks
	// for (SNI): the first whose DNS names match it (a wildcard covers one
	// label), else the first. At least one.
	Certificates []certfiles.Pair `yaml:"certificates"`
	// ReloadInterval is how often the files are read again: a renewed
	// certificate is served from then on; one that does not load is
	// ignored (logged, counted) and the working set stays. Default 1m.
	ReloadInterval config.Duration `yaml:"reload_interval"`
	// MinVersion is the oldest TLS version accepted: "1.2" (default) or
	// "1.3".
	MinVersion string `yaml:"min_version"`
}

func (t *ListenerTLS) minVersion() uint16 {
	if t.MinVersion == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// LinkTermination configures edge-terminated Link (LINK.md section 7).
type LinkTermination struct {
	// Service is the egress service of kind link-frames (a gateway's
	// plain_listen). Default "link-frames".
	Service string `yaml:"service"`
	// Keys are the Link server static keys, the same the gateways hold.
	Keys []LinkKey `yaml:"keys"`
	// HandshakeTimeout bounds the client's handshake and the wait for its
	// login frame. Default 10s.
	HandshakeTimeout config.Duration `yaml:"handshake_timeout"`
	// MaxFrameSize bounds frames both ways. Default 1 MiB (the gateway's).
	MaxFrameSize int `yaml:"max_frame_size"`
	// TokenKeys are the public keys of the core's login-token signing keys
	// (service token_key; several while it rotates). With them the edge
	// answers a login whose signed token verifies itself, without waiting
	// for the core (LINK.md section 7). Public keys only: an edge cannot
	// mint tokens. Default: none (every login is answered by the core).
	TokenKeys []TokenKey `yaml:"token_keys"`
}

// TokenKey is the public half of a core token signing key.
type TokenKey struct {
	// ID is the key id tokens name (service.token_key.id).
	ID string `yaml:"id"`
	// PublicKey is the base64 Ed25519 public key, as `longlink keygen
	// -token` prints it.
	PublicKey string `yaml:"public_key"`
}

// verifier builds the token key ring of t.
func (t *LinkTermination) verifier() (*logintoken.Verifier, error) {
	v := logintoken.NewVerifier()
	for i, k := range t.TokenKeys {
		pub, err := logintoken.DecodeKey(k.PublicKey)
		if err == nil {
			err = v.Add(k.ID, pub)
		}
		if err != nil {
			return nil, fmt.Errorf("token_keys[%d]: %w", i, err)
		}
	}
	return v, nil
}

// LinkKey is one Link server static key.
type LinkKey struct {
	ID string `yaml:"id"`
	// PrivateKey is the base64 X25519 private key (literal, file: or env:).
	PrivateKey config.Secret `yaml:"private_key"`
}

// ring builds the key ring of t.
func (t *LinkTermination) ring() (*link.KeyRing, error) {
	r := link.NewKeyRing()
	for i, k := range t.Keys {
		priv, err := link.DecodeKey(k.PrivateKey.Reveal())
		if err != nil {
			return nil, fmt.Errorf("keys[%d].private_key: %w", i, err)
		}
		kp, err := link.KeyPairFromPrivate(k.ID, priv)
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
		r.Add(kp)
	}
	return r, nil
}

// UDPListener is a forwarded UDP port.
type UDPListener struct {
	Listen  string `yaml:"listen"`
	Service string `yaml:"service"`
	// IdleTimeout ends a client's mapping after this long without packets
	// either way. Default 60s.
	IdleTimeout config.Duration `yaml:"idle_timeout"`
}

// Limits cap what clients can hold.
type Limits struct {
	// MaxSessions is the most sessions (TCP connections and UDP mappings) at
	// once. Default 100000.
	MaxSessions int `yaml:"max_sessions"`
	// MaxSessionsPerIP caps one client address. Default 200.
	MaxSessionsPerIP int `yaml:"max_sessions_per_ip"`
	// FirstByteTimeout closes a WebLink connection that sends no request line
	// within it. Default 10s.
	FirstByteTimeout config.Duration `yaml:"first_byte_timeout"`
}

// TURNSection embeds the TURN server's own config (edge/turn) plus a switch.
type TURNSection struct {
	// Enabled starts TURN with the edge. Default false.
	Enabled     bool `yaml:"enabled"`
	turn.Config `yaml:",inline"`
}

// Default returns the edge defaults (ports from docs/ports.md).
func Default() Config {
	return Config{
		Name:        "edge",
		Cluster:     "default",
		Link:        TCPListener{Listen: "127.0.0.1:7720", Service: "link"},
		WebLink:     TCPListener{Listen: "127.0.0.1:7721", Service: "weblink"},
		Limits:      Limits{MaxSessions: 100000, MaxSessionsPerIP: 200, FirstByteTimeout: config.Duration(10 * time.Second)},
		DrainPeriod: config.Duration(10 * time.Second),
		Transport:   relay.DefaultTransport(),
		Routing:     relay.DefaultRouting(),
		TURN:        TURNSection{Config: turn.Default()},
	}
}

// Validate checks the config and reports every problem.
func (c *Config) Validate() error {
	var errs config.Errors
	if c.Site != "" && !lbsapi.ValidSite(c.Site) {
		errs.Addf("site: %q: want a lower-case DNS label (a-z 0-9 -), as the LBS policy's sites", c.Site)
	}
	if c.Cluster == "" || len(c.Cluster) > wire.MaxNameLen {
		errs.Addf("cluster: must be 1..%d characters", wire.MaxNameLen)
	}
	checkListen := func(key, addr, svc string) {
		if addr == "" {
			return
		}
		if _, err := netip.ParseAddrPort(addr); err != nil {
			errs.Addf("%s.listen: %q is not ip:port", key, addr)
		}
		if svc == "" || len(svc) > wire.MaxNameLen {
			errs.Addf("%s.service: must be 1..%d characters", key, wire.MaxNameLen)
		}
	}
	checkListen("link", c.Link.Listen, c.Link.Service)
	if t := c.Link.Terminate; t != nil {
		if t.Service == "" {
			t.Service = "link-frames"
		}
		if len(t.Service) > wire.MaxNameLen {
			errs.Addf("link.terminate.service: must be 1..%d characters", wire.MaxNameLen)
		}
		if len(t.Keys) == 0 {
			errs.Addf("link.terminate.keys: at least one Link server key is required")
		}
		if _, err := t.ring(); err != nil {
			errs.Addf("link.terminate.%v", err)
		}
		if _, err := t.verifier(); err != nil {
			errs.Addf("link.terminate.%v", err)
		}
		if t.HandshakeTimeout == 0 {
			t.HandshakeTimeout = config.Duration(10 * time.Second)
		}
		if t.HandshakeTimeout.D() < 0 {
			errs.Addf("link.terminate.handshake_timeout: must be positive")
		}
		if t.MaxFrameSize == 0 {
			t.MaxFrameSize = link.DefaultMaxFrameSize
		}
		if t.MaxFrameSize < 1024 {
			errs.Addf("link.terminate.max_frame_size: %d is below 1024", t.MaxFrameSize)
		}
	}
	if c.Link.QUIC != "" {
		if _, err := netip.ParseAddrPort(c.Link.QUIC); err != nil {
			errs.Addf("link.quic: %q is not ip:port", c.Link.QUIC)
		}
		if c.Link.QUICDuplicateMax < -1 || c.Link.QUICDuplicateMax > 1500 {
			errs.Addf("link.quic_duplicate_max: %d is not -1 (off), 0 (default) or a size in bytes up to 1500", c.Link.QUICDuplicateMax)
		}
		if c.Link.Service == "" || len(c.Link.Service) > wire.MaxNameLen {
			errs.Addf("link.service: must be 1..%d characters", wire.MaxNameLen)
		}
	}
	if c.WebLink.QUIC != "" {
		errs.Addf("weblink.quic: only the Link listener takes QUIC")
	}
	if c.WebLink.Terminate != nil {
		errs.Addf("weblink.terminate: only the Link listener can terminate")
	}
	if c.Link.TLS != nil {
		errs.Addf("link.tls: only the WebLink listener terminates TLS (Link has its own encryption)")
	}
	if t := c.WebLink.TLS; t != nil {
		if t.ReloadInterval == 0 {
			t.ReloadInterval = config.Duration(time.Minute)
		}
		if t.ReloadInterval.D() < time.Second {
			errs.Addf("weblink.tls.reload_interval: must be at least 1s")
		}
		if t.MinVersion == "" {
			t.MinVersion = "1.2"
		}
		if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
			errs.Addf("weblink.tls.min_version: %q, want 1.2 or 1.3", t.MinVersion)
		}
		if len(t.Certificates) == 0 {
			errs.Addf("weblink.tls.certificates: at least one {cert_file, key_file}")
		} else if _, err := certfiles.Load(t.Certificates); err != nil {
			errs.Addf("weblink.tls.certificates: %v", err)
		}
	}
	checkListen("weblink", c.WebLink.Listen, c.WebLink.Service)
	for i := range c.UDP {
		u := &c.UDP[i]
		checkListen(fmt.Sprintf("udp[%d]", i), u.Listen, u.Service)
		if u.Listen == "" {
			errs.Addf("udp[%d].listen: must be set", i)
		}
		if u.IdleTimeout == 0 {
			u.IdleTimeout = config.Duration(60 * time.Second)
		}
		if u.IdleTimeout.D() < time.Second {
			errs.Addf("udp[%d].idle_timeout: must be at least 1s", i)
		}
	}
	if c.Link.Listen == "" && c.Link.QUIC == "" && c.WebLink.Listen == "" && len(c.UDP) == 0 && !c.TURN.Enabled {
		errs.Addf("link, weblink, udp, turn: the edge serves nothing")
	}
	if c.Limits.MaxSessions < 1 || c.Limits.MaxSessionsPerIP < 1 {
		errs.Addf("limits: max_sessions and max_sessions_per_ip must be positive")
	}
	if c.Limits.FirstByteTimeout.D() <= 0 {
		errs.Addf("limits.first_byte_timeout: must be positive")
	}
	if c.DrainPeriod.D() < 0 {
		errs.Addf("drain_period: must not be negative")
	}
	if len(c.Routing.Routes) == 0 && (c.Link.Listen != "" || c.Link.QUIC != "" || c.WebLink.Listen != "" || len(c.UDP) > 0) {
		errs.Addf("routing.routes: at least one route (to cluster %q) is required", c.Cluster)
	}
	if err := c.Routing.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Transport.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.LBS != nil {
		if err := c.LBS.Validate(); err != nil {
			errs.Addf("lbs: %w", err)
		}
	}
	if c.TURN.Enabled {
		if err := c.TURN.Config.Validate(); err != nil {
			errs.Addf("turn: %w", err)
		}
	}
	return errs.Err()
}
