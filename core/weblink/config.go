package weblink

import (
	"net/netip"
	"strings"
	"time"

	"github.com/longlink/longlink/pkg/config"
)

// Config of a WebLink server. Zero values take the defaults noted on each field.
type Config struct {
	// Listen is the HTTP address. Default 127.0.0.1:7711 (docs/ports.md).
	Listen string `yaml:"listen"`
	// Path is where Engine.IO/Socket.IO requests go. Default "/socket.io/".
	Path string `yaml:"path"`
	// PingInterval and PingTimeout are announced in the handshake; a client
	// that answers no ping within PingTimeout is closed. Defaults 25s and 20s
	// (the reference server's).
	PingInterval config.Duration `yaml:"ping_interval"`
	PingTimeout  config.Duration `yaml:"ping_timeout"`
	// UpgradeTimeout bounds a polling-to-WebSocket upgrade. Default 10s.
	UpgradeTimeout config.Duration `yaml:"upgrade_timeout"`
	// ConnectTimeout closes a session that has not logged in. Default 45s.
	ConnectTimeout config.Duration `yaml:"connect_timeout"`
	// WriteTimeout drops a client that does not read. Default 10s.
	WriteTimeout config.Duration `yaml:"write_timeout"`
	// LoginTimeout bounds the login request to the services. Default 10s.
	LoginTimeout config.Duration `yaml:"login_timeout"`
	// MaxPayload is the reference's maxHttpBufferSize: the largest polling
	// request body and WebSocket message. Default 1000000 bytes.
	MaxPayload int `yaml:"max_payload"`
	// MaxOutbound is how many bytes may wait for one client before it is
	// dropped as a slow consumer. Default 4 MiB.
	MaxOutbound int `yaml:"max_outbound"`
	// MaxSessions caps open Engine.IO sessions. Default 100000; -1 unlimited.
	MaxSessions int `yaml:"max_sessions"`
	// MaxSessionsPerIP caps the sessions of one client address (after PROXY
	// headers and X-Forwarded-For from trusted proxies). Default 1000; -1
	// unlimited.
	MaxSessionsPerIP int `yaml:"max_sessions_per_ip"`
	// AllowedOrigins lists the browser origins (scheme://host[:port]) that may
	// connect besides the server's own; "*" allows any. Checked on polling
	// requests and WebSocket upgrades.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// TrustedProxies are CIDRs whose connections may start with a PROXY v1/v2
	// header (the edge's core egress) and whose X-Forwarded-For is believed
	// (nginx). From any other address neither is looked at.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// TLSCert and TLSKey, when both set, make WebLink terminate TLS itself.
	// Without them it speaks plain HTTP (TLS by nginx or the edge).
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// DemoPage serves the demo chat page at "/". Default true.
	DemoPage *bool `yaml:"demo_page"`
	// DrainTime spreads the closing of sessions at shutdown. Default 5s.
	DrainTime config.Duration `yaml:"drain_time"`
}

// Default returns the default configuration.
func Default() Config {
	demo := true
	return Config{
		Listen:           "127.0.0.1:7711",
		Path:             "/socket.io/",
		PingInterval:     config.Duration(25 * time.Second),
		PingTimeout:      config.Duration(20 * time.Second),
		UpgradeTimeout:   config.Duration(10 * time.Second),
		ConnectTimeout:   config.Duration(45 * time.Second),
		WriteTimeout:     config.Duration(10 * time.Second),
		LoginTimeout:     config.Duration(10 * time.Second),
		MaxPayload:       1_000_000,
		MaxOutbound:      4 << 20,
		MaxSessions:      100_000,
		MaxSessionsPerIP: 1000,
		DemoPage:         &demo,
		DrainTime:        config.Duration(5 * time.Second),
	}
}

// withDefaults fills zero values from Default.
func (c Config) withDefaults() Config {
	d := Default()
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	if c.Path == "" {
		c.Path = d.Path
	}
	dur := func(v *config.Duration, def config.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	dur(&c.PingInterval, d.PingInterval)
	dur(&c.PingTimeout, d.PingTimeout)
	dur(&c.UpgradeTimeout, d.UpgradeTimeout)
	dur(&c.ConnectTimeout, d.ConnectTimeout)
	dur(&c.WriteTimeout, d.WriteTimeout)
	dur(&c.LoginTimeout, d.LoginTimeout)
	dur(&c.DrainTime, d.DrainTime)
	if c.MaxPayload == 0 {
		c.MaxPayload = d.MaxPayload
	}
	if c.MaxOutbound == 0 {
		c.MaxOutbound = d.MaxOutbound
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = d.MaxSessions
	}
	if c.MaxSessionsPerIP == 0 {
		c.MaxSessionsPerIP = d.MaxSessionsPerIP
	}
	if c.DemoPage == nil {
		c.DemoPage = d.DemoPage
	}
	return c
}

// Validate reports every problem of the configuration.
func (c *Config) Validate() error {
	var errs config.Errors
	if c.Path != "" && !strings.HasPrefix(c.Path, "/") {
		errs.Addf("path: %q must start with /", c.Path)
	}
	for _, d := range []struct {
		name string
		v    config.Duration
	}{
		{"ping_interval", c.PingInterval}, {"ping_timeout", c.PingTimeout}, {"upgrade_timeout", c.UpgradeTimeout},
		{"connect_timeout", c.ConnectTimeout}, {"write_timeout", c.WriteTimeout}, {"login_timeout", c.LoginTimeout},
		{"drain_time", c.DrainTime},
	} {
		if d.v < 0 {
			errs.Addf("%s: must not be negative", d.name)
		}
	}
	if c.PingInterval != 0 && c.PingInterval.D() < 100*time.Millisecond {
		errs.Addf("ping_interval: %s is too short (at least 100ms)", c.PingInterval.D())
	}
	if c.MaxPayload < 0 {
		errs.Addf("max_payload: must not be negative")
	}
	if c.MaxOutbound < 0 {
		errs.Addf("max_outbound: must not be negative")
	}
	if c.MaxOutbound > 0 && c.MaxPayload > 0 && c.MaxOutbound < c.MaxPayload {
		errs.Addf("max_outbound: %d is smaller than max_payload %d", c.MaxOutbound, c.MaxPayload)
	}
	if c.MaxSessions < -1 {
		errs.Addf("max_sessions: want -1 (unlimited) or more")
	}
	if c.MaxSessionsPerIP < -1 {
		errs.Addf("max_sessions_per_ip: want -1 (unlimited) or more")
	}
	for i, o := range c.AllowedOrigins {
		if o != "*" && !strings.Contains(o, "://") {
			errs.Addf("allowed_origins[%d]: %q is not scheme://host[:port] or *", i, o)
		}
	}
	for i, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			errs.Addf("trusted_proxies[%d]: %v", i, err)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs.Addf("tls_cert, tls_key: set both or neither")
	}
	return errs.Err()
}
