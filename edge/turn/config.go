package turn

import (
	"net"
	"net/netip"
	"time"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

// Config is the TURN server's configuration. The zero value of a field means
// the default documented on it; Default returns a config with every default
// filled in.
type Config struct {
	// Realm is the long-term credential realm sent to clients. Default "longlink".
	Realm string `yaml:"realm"`

	// UDP, TCP and TLS are the client-facing listen addresses (host:port).
	// Defaults: 127.0.0.1:3478 (UDP and TCP) and 127.0.0.1:5349 (TLS), per
	// docs/ports.md; production configs bind a public address. An empty list
	// turns that transport off. IPv6 addresses ("[::]:3478") serve IPv6 clients.
	UDP []string `yaml:"udp"`
	TCP []string `yaml:"tcp"`
	TLS []string `yaml:"tls"`

	// UDPSockets is how many SO_REUSEPORT sockets serve each UDP address, each
	// read by its own goroutine; the kernel spreads clients over them by
	// 4-tuple hash. 0 means GOMAXPROCS.
	UDPSockets int `yaml:"udp_sockets"`

	// TLSCertFile and TLSKeyFile are the PEM certificate and key of the TLS
	// listeners. When both are empty (and Deps.TLSConfig is nil) the server
	// makes a self-signed certificate at start (fine for development and for
	// clients that do not verify, not for browsers).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`

	// Relay says where relayed transport addresses live.
	Relay RelayConfig `yaml:"relay"`

	// Secrets are the live shared secrets of the REST credential scheme; the
	// first one is current. At least one is required. The LBS replaces the
	// set at runtime through Server.SetSecrets.
	Secrets []turncred.Secret `yaml:"secrets"`

	// Quotas limit allocations held at once.
	Quotas QuotaConfig `yaml:"quotas"`

	// Limits cap relayed bandwidth.
	Limits LimitConfig `yaml:"limits"`

	// Peers is the peer address policy.
	Peers PeerConfig `yaml:"peers"`

	// MaxTCPConnections caps the client TCP and TLS connections open at once
	// on each TCP or TLS listener (control and RFC 6062 data connections).
	// Default 10000.
	MaxTCPConnections int `yaml:"max_tcp_connections"`

	// MaxTCPConnectionsPerIP caps the client TCP and TLS connections open at
	// once from one client address, over all TCP and TLS listeners together;
	// IPv6 clients are counted per /64, which one host can hold whole.
	// Default 100.
	MaxTCPConnectionsPerIP int `yaml:"max_tcp_connections_per_ip"`

	// TCPAuthTimeout is how long a new client TCP/TLS connection has to
	// finish its TLS handshake and send its first authenticated request
	// (an Allocate, or an RFC 6062 ConnectionBind); a connection that has
	// not is closed. Default 10s.
	TCPAuthTimeout config.Duration `yaml:"tcp_auth_timeout"`

	// TCPIdleTimeout closes a client TCP/TLS control connection that sends
	// nothing for this long (clients refresh allocations well within it).
	// Default 15m.
	TCPIdleTimeout config.Duration `yaml:"tcp_idle_timeout"`
}

// RelayConfig places relayed transport addresses.
type RelayConfig struct {
	// IPv4 is the relay address peers see for IPv4 allocations (the public
	// address; 127.0.0.1 in development and tests). Empty: no IPv4 relays.
	IPv4 string `yaml:"ipv4"`
	// IPv6 is the relay address peers see for IPv6 allocations. Empty: no
	// IPv6 relays (IPv6 allocations are refused with 508).
	IPv6 string `yaml:"ipv6"`
	// BindIPv4 and BindIPv6 are the local addresses relay sockets bind to,
	// when they differ from the advertised ones (behind 1:1 NAT, as on cloud
	// VMs). Default: the advertised address.
	BindIPv4 string `yaml:"bind_ipv4"`
	BindIPv6 string `yaml:"bind_ipv6"`
	// MinPort and MaxPort bound relay ports. 0 and 0: any port the kernel
	// picks from its ephemeral range.
	MinPort int `yaml:"min_port"`
	MaxPort int `yaml:"max_port"`
}

// QuotaConfig limits allocations held at once. 0 means unlimited.
type QuotaConfig struct {
	// PerUser is per appkey and account. Default 10.
	PerUser int `yaml:"per_user"`
	// PerApp is per appkey. Default 0 (unlimited).
	PerApp int `yaml:"per_app"`
	// Total is for the whole server. Default 0 (bounded by open files).
	Total int `yaml:"total"`
}

// LimitConfig caps relayed payload bandwidth, in kilobits per second, in
// each direction separately (client to peer, peer to client). Packets over
// the limit are dropped (UDP) or delayed (TCP relays). 0 means unlimited.
type LimitConfig struct {
	// AllocationKbps applies to each allocation. Default 0.
	AllocationKbps int `yaml:"allocation_kbps"`
	// UserKbps applies to all allocations of one appkey and account
	// together. Default 0.
	UserKbps int `yaml:"user_kbps"`
}

// PeerConfig decides which peer addresses clients may reach through a relay.
type PeerConfig struct {
	// Allow opens CIDRs inside the ranges denied by default (private,
	// loopback, link-local, multicast, CGNAT, …). Cloud metadata addresses
	// (169.254.169.254, fd00:ec2::254, …) are opened only by an entry that
	// is that single address (/32 or /128).
	Allow []string `yaml:"allow"`
	// Deny closes extra CIDRs (the operator's own infrastructure). Deny
	// wins over Allow.
	Deny []string `yaml:"deny"`
}

// Default returns the documented defaults. Secrets are left empty: a secret
// must come from the config file, the environment or the LBS.
func Default() Config {
	return Config{
		Realm:                  "longlink",
		UDP:                    []string{"127.0.0.1:3478"},
		TCP:                    []string{"127.0.0.1:3478"},
		TLS:                    []string{"127.0.0.1:5349"},
		Relay:                  RelayConfig{IPv4: "127.0.0.1"},
		Quotas:                 QuotaConfig{PerUser: 10},
		MaxTCPConnections:      10000,
		MaxTCPConnectionsPerIP: 100,
		TCPAuthTimeout:         config.Duration(10 * time.Second),
		TCPIdleTimeout:         config.Duration(15 * time.Minute),
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs config.Errors
	if c.Realm == "" {
		errs.Addf("realm: must be set")
	}
	if len(c.UDP)+len(c.TCP)+len(c.TLS) == 0 {
		errs.Addf("udp, tcp, tls: at least one listener is needed")
	}
	for name, list := range map[string][]string{"udp": c.UDP, "tcp": c.TCP, "tls": c.TLS} {
		for i, a := range list {
			if _, err := netip.ParseAddrPort(a); err != nil {
				errs.Addf("%s[%d]: %q is not ip:port: %v", name, i, a, err)
			}
		}
	}
	if c.UDPSockets < 0 || c.UDPSockets > 256 {
		errs.Addf("udp_sockets: %d is not in 0..256", c.UDPSockets)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs.Addf("tls_cert_file, tls_key_file: set both or neither")
	}
	checkIP := func(key, v string, want4 bool) {
		if v == "" {
			return
		}
		ip := net.ParseIP(v)
		switch {
		case ip == nil:
			errs.Addf("relay.%s: %q is not an IP address", key, v)
		case want4 && ip.To4() == nil:
			errs.Addf("relay.%s: %q is not IPv4", key, v)
		case !want4 && ip.To4() != nil:
			errs.Addf("relay.%s: %q is not IPv6", key, v)
		case ip.IsUnspecified() && (key == "ipv4" || key == "ipv6"):
			errs.Addf("relay.%s: the advertised address cannot be unspecified", key)
		}
	}
	checkIP("ipv4", c.Relay.IPv4, true)
	checkIP("ipv6", c.Relay.IPv6, false)
	checkIP("bind_ipv4", c.Relay.BindIPv4, true)
	checkIP("bind_ipv6", c.Relay.BindIPv6, false)
	if c.Relay.IPv4 == "" && c.Relay.IPv6 == "" {
		errs.Addf("relay: set ipv4 or ipv6 (the address peers see)")
	}
	if c.Relay.BindIPv4 != "" && c.Relay.IPv4 == "" {
		errs.Addf("relay.bind_ipv4: set relay.ipv4 too")
	}
	if c.Relay.BindIPv6 != "" && c.Relay.IPv6 == "" {
		errs.Addf("relay.bind_ipv6: set relay.ipv6 too")
	}
	if (c.Relay.MinPort == 0) != (c.Relay.MaxPort == 0) {
		errs.Addf("relay.min_port, relay.max_port: set both or neither")
	} else if c.Relay.MinPort != 0 && (c.Relay.MinPort < 1024 || c.Relay.MaxPort > 65535 || c.Relay.MinPort > c.Relay.MaxPort) {
		errs.Addf("relay.min_port, relay.max_port: want 1024 <= min <= max <= 65535, got %d..%d", c.Relay.MinPort, c.Relay.MaxPort)
	}
	if err := turncred.ValidateSecrets(c.Secrets); err != nil {
		errs.Addf("secrets: %w", err)
	}
	if c.Quotas.PerUser < 0 || c.Quotas.PerApp < 0 || c.Quotas.Total < 0 {
		errs.Addf("quotas: must not be negative")
	}
	if c.Limits.AllocationKbps < 0 || c.Limits.UserKbps < 0 {
		errs.Addf("limits: must not be negative")
	}
	for i, s := range c.Peers.Allow {
		if _, err := netip.ParsePrefix(s); err != nil {
			errs.Addf("peers.allow[%d]: %v", i, err)
		}
	}
	for i, s := range c.Peers.Deny {
		if _, err := netip.ParsePrefix(s); err != nil {
			errs.Addf("peers.deny[%d]: %v", i, err)
		}
	}
	if c.MaxTCPConnections < 1 {
		errs.Addf("max_tcp_connections: must be at least 1")
	}
	if c.MaxTCPConnectionsPerIP < 1 || c.MaxTCPConnectionsPerIP > c.MaxTCPConnections {
		errs.Addf("max_tcp_connections_per_ip: must be 1..max_tcp_connections")
	}
	if c.TCPAuthTimeout.D() < 100*time.Millisecond || c.TCPAuthTimeout.D() > time.Minute {
		errs.Addf("tcp_auth_timeout: must be 100ms..1m (a client authenticates within a few round trips)")
	}
	if c.TCPIdleTimeout.D() < time.Minute {
		errs.Addf("tcp_idle_timeout: must be at least 1m (clients refresh every few minutes)")
	}
	return errs.Err()
}
