package gateway

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/config"
)

// Config configures a gateway. Zero values take the defaults noted on each
// field (Default returns them filled in).
type Config struct {
	// ID names this gateway in sessions (buswire.Session.Gateway).
	// Default: "gw-<hostname>-<pid>".
	ID string `yaml:"id"`
	// Listen is the Link TCP address. Empty disables the Link listener (the
	// session API still works for other transports). Default 127.0.0.1:7710.
	Listen string `yaml:"listen"`
	// Keys are the server static keys clients name by id in the handshake.
	// Several may be live at once (rotation). Required when Listen is set.
	Keys []KeyConfig `yaml:"keys"`
	// TrustedProxies are CIDRs whose connections may start with a PROXY
	// protocol v2 (or v1) header carrying the real client address (the core
	// egress of the relay network, a load balancer). From other addresses a
	// PROXY header is not parsed: the connection fails the handshake.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// PlainListen is the pre-terminated Link listener (LINK.md section 7):
	// frames without the Noise handshake and sealing, from edges that
	// terminated the client's handshake themselves and reach the gateway
	// through the encrypted tunnel and the core egress. Only connections from
	// TrustedProxies are served, and each must start with a PROXY header.
	// Empty (the default) disables it.
	PlainListen string `yaml:"plain_listen"`

	// MaxConnections caps open Link connections. Default 100000.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP caps open Link connections per client IP
	// (after PROXY). Default 1000; 0 in YAML keeps the default, -1 disables.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// MaxFrameSize bounds frames in both directions. Default 1 MiB.
	MaxFrameSize int `yaml:"max_frame_size"`
	// CompressThreshold: bodies above it are compressed. Default 1024; -1 disables.
	CompressThreshold int `yaml:"compress_threshold"`
	// HandshakeTimeout bounds the Noise handshake. Default 10s.
	HandshakeTimeout config.Duration `yaml:"handshake_timeout"`
	// MaxHandshakes is how many Link handshakes are computed at once; the
	// others wait for a slot in the order their hellos came (admission.go).
	// 0: twice GOMAXPROCS.
	MaxHandshakes int `yaml:"max_handshakes"`
	// HandshakeWait: a connection still waiting for its handshake slot
	// this long after it was accepted is closed without a handshake (its
	// client, whose connect timeout is 10 s in the SDKs, would give up
	// before the login is answered). Default 5s; at most handshake_timeout.
	HandshakeWait config.Duration `yaml:"handshake_wait"`
	// HelloGrace: while the gateway is at max_connections, a connection
	// whose client hello has not come this long after its accept gives
	// its place (and its file) to a new connection: it is closed and the
	// new one admitted, instead of the new one refused while the old one
	// holds its place until handshake_timeout. Default 1s; at most
	// handshake_timeout.
	HelloGrace config.Duration `yaml:"hello_grace"`
	// LoginTimeout bounds the wait for the login frame and its answer. Default 10s.
	LoginTimeout config.Duration `yaml:"login_timeout"`
	// Heartbeat is the interval announced to clients in the login answer.
	// Default 30s.
	Heartbeat config.Duration `yaml:"heartbeat"`
	// IdleTimeout closes a connection that sent nothing for this long.
	// Default 2.5 × Heartbeat.
	IdleTimeout config.Duration `yaml:"idle_timeout"`
	// RequestTimeout bounds a request to the app services. Default 10s. A
	// send batch still not stored after it ends its session (the client
	// resends on its next one; ORDER.md).
	RequestTimeout config.Duration `yaml:"request_timeout"`
	// SendAttemptTimeout is how long a session's send batch waits for its
	// answer before it is sent again (to whichever service node the queue
	// group picks: a killed or hung node's batch moves on), or eight times
	// the recent answer time when that is longer (an overloaded cluster is
	// not sent copies); from the fourth attempt on each waits twice as
	// long. Default 500ms.
	SendAttemptTimeout config.Duration `yaml:"send_attempt_timeout"`
	// MaxSendBatch caps the sends of one session that go to the services
	// as one batch (the sends that arrived while its previous batch was
	// out); request_burst caps it too. Default 64, at most 256.
	MaxSendBatch int `yaml:"max_send_batch"`
	// RequestRate and RequestBurst limit requests per session (token bucket).
	// Defaults 200/s and 400.
	RequestRate  float64 `yaml:"request_rate"`
	RequestBurst int     `yaml:"request_burst"`
	// MaxInflight caps unanswered requests per session, and separately its
	// unanswered sends (a client past it ends its session). Default 256.
	MaxInflight int `yaml:"max_inflight"`
	// SendQueue caps frames waiting to be written to one connection; a
	// client that falls further behind is dropped as a slow consumer.
	// Default 1024.
	SendQueue int `yaml:"send_queue"`
	// WriteTimeout bounds one write to a connection. Default 10s.
	WriteTimeout config.Duration `yaml:"write_timeout"`
	// DrainTime spreads the "server draining" kicks of Shutdown over this
	// long, so that clients do not reconnect all at once. Default 10s.
	DrainTime config.Duration `yaml:"drain_time"`
	// OperatorDrainTime spreads the kicks of an operator's drain (ctl
	// drain, ctl site drain: the LBS tells the gateway) over this long,
	// each session at a random moment, so that its clients move to other
	// gateways without a reconnect storm. Default 60s.
	OperatorDrainTime config.Duration `yaml:"operator_drain_time"`
	// DisableIdlePoller keeps a reader goroutine on every connection. By
	// default (on Linux) an idle connection is parked on an epoll set and
	// holds no goroutine, which saves its stack (about 4 KiB).
	DisableIdlePoller bool `yaml:"disable_idle_poller"`
	// PushBuffer is the number of bus pushes buffered between NATS and the
	// dispatcher. Default 65536.
	PushBuffer int `yaml:"push_buffer"`
	// MaxSuperGroups caps the super-groups one session follows for pushes
	// (beyond it the client learns of messages by sync). Default 2000.
	MaxSuperGroups int `yaml:"max_super_groups"`

	// RoomBatchInterval is how long room messages are gathered before they
	// go out as one room.messages frame per connection. Default 100ms.
	RoomBatchInterval config.Duration `yaml:"room_batch_interval"`
	// RoomGapWait is how long room messages are held back when a seq is
	// missing before them (several service nodes publish a room's
	// messages, so one may arrive late); after it they go with the gap.
	// Default 500ms.
	RoomGapWait config.Duration `yaml:"room_gap_wait"`
	// RoomMaxQueued: a Link connection with this many frames still waiting
	// to be written skips new room batches (bounded lag instead of an
	// ever longer queue). Default 4.
	RoomMaxQueued int `yaml:"room_max_queued"`
	// RoomWriters is the number of goroutines that write room batches to
	// the members' connections (about one per CPU: the walk is CPU work,
	// writes never wait). Default: GOMAXPROCS.
	RoomWriters int `yaml:"room_writers"`
	// MaxRoomsPerSession caps the chatrooms one session is in. Default 10.
	MaxRoomsPerSession int `yaml:"max_rooms_per_session"`
	// Advertise are the entry addresses announced to the services for
	// chatroom placement ("link://host:port", "weblink://host:port" …).
	// Default: the Link listener's address (and WebLink's, added by the
	// core node).
	Advertise []string `yaml:"advertise"`
	// AnnounceInterval is how often the gateway announces itself (id,
	// addresses, sessions, draining) on the bus. Default 2s.
	AnnounceInterval config.Duration `yaml:"announce_interval"`
}

// KeyConfig is one server static key.
type KeyConfig struct {
	ID string `yaml:"id"`
	// PrivateKey is the base64 X25519 private key (literal, file: or env:).
	PrivateKey config.Secret `yaml:"private_key"`
}

// Default returns the default configuration (without keys).
func Default() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "gw"
	}
	return Config{
		ID:                  fmt.Sprintf("gw-%s-%d", host, os.Getpid()),
		Listen:              "127.0.0.1:7710",
		MaxConnections:      100000,
		MaxConnectionsPerIP: 1000,
		MaxFrameSize:        link.DefaultMaxFrameSize,
		CompressThreshold:   link.DefaultCompressThreshold,
		HandshakeTimeout:    config.Duration(10 * time.Second),
		HandshakeWait:       config.Duration(5 * time.Second),
		HelloGrace:          config.Duration(time.Second),
		LoginTimeout:        config.Duration(10 * time.Second),
		Heartbeat:           config.Duration(30 * time.Second),
		RequestTimeout:      config.Duration(10 * time.Second),
		SendAttemptTimeout:  config.Duration(500 * time.Millisecond),
		MaxSendBatch:        64,
		RequestRate:         200,
		RequestBurst:        400,
		MaxInflight:         256,
		SendQueue:           1024,
		WriteTimeout:        config.Duration(10 * time.Second),
		DrainTime:           config.Duration(10 * time.Second),
		OperatorDrainTime:   config.Duration(time.Minute),
		PushBuffer:          65536,
		MaxSuperGroups:      2000,
		RoomBatchInterval:   config.Duration(100 * time.Millisecond),
		RoomGapWait:         config.Duration(500 * time.Millisecond),
		MaxRoomsPerSession:  10,
		RoomMaxQueued:       4,
		AnnounceInterval:    config.Duration(2 * time.Second),
	}
}

// withDefaults fills zero fields from Default.
func (c Config) withDefaults() Config {
	d := Default()
	if c.ID == "" {
		c.ID = d.ID
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = d.MaxConnections
	}
	if c.MaxConnectionsPerIP == 0 {
		c.MaxConnectionsPerIP = d.MaxConnectionsPerIP
	}
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = d.MaxFrameSize
	}
	if c.CompressThreshold == 0 {
		c.CompressThreshold = d.CompressThreshold
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = 2 * runtime.GOMAXPROCS(0)
	}
	if c.HelloGrace == 0 {
		c.HelloGrace = d.HelloGrace
	}
	if c.HandshakeWait == 0 {
		c.HandshakeWait = d.HandshakeWait
	}
	if c.LoginTimeout == 0 {
		c.LoginTimeout = d.LoginTimeout
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = d.Heartbeat
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = config.Duration(c.Heartbeat.D() * 5 / 2)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.RequestRate == 0 {
		c.RequestRate = d.RequestRate
	}
	if c.RequestBurst == 0 {
		c.RequestBurst = d.RequestBurst
	}
	if c.SendAttemptTimeout == 0 {
		c.SendAttemptTimeout = d.SendAttemptTimeout
	}
	if c.MaxSendBatch == 0 {
		c.MaxSendBatch = d.MaxSendBatch
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = d.MaxInflight
	}
	if c.SendQueue == 0 {
		c.SendQueue = d.SendQueue
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.DrainTime == 0 {
		c.DrainTime = d.DrainTime
	}
	if c.OperatorDrainTime == 0 {
		c.OperatorDrainTime = d.OperatorDrainTime
	}
	if c.PushBuffer == 0 {
		c.PushBuffer = d.PushBuffer
	}
	if c.MaxSuperGroups == 0 {
		c.MaxSuperGroups = d.MaxSuperGroups
	}
	if c.RoomBatchInterval == 0 {
		c.RoomBatchInterval = d.RoomBatchInterval
	}
	if c.MaxRoomsPerSession == 0 {
		c.MaxRoomsPerSession = d.MaxRoomsPerSession
	}
	if c.RoomGapWait == 0 {
		c.RoomGapWait = d.RoomGapWait
	}
	if c.RoomMaxQueued == 0 {
		c.RoomMaxQueued = d.RoomMaxQueued
	}
	if c.RoomWriters == 0 {
		c.RoomWriters = runtime.GOMAXPROCS(0)
	}
	if c.AnnounceInterval == 0 {
		c.AnnounceInterval = d.AnnounceInterval
	}
	return c
}

// Validate reports every problem of the configuration at once.
func (c *Config) Validate() error {
	v := c.withDefaults()
	var errs config.Errors
	if v.Listen != "" && len(v.Keys) == 0 {
		errs.Addf("keys: at least one server key is required when listen is set")
	}
	seen := map[string]bool{}
	for i, k := range v.Keys {
		if err := link.ValidKeyID(k.ID); err != nil {
			errs.Addf("keys[%d].id: %v", i, err)
		}
		if seen[k.ID] {
			errs.Addf("keys[%d].id: duplicate %q", i, k.ID)
		}
		seen[k.ID] = true
		if _, err := link.DecodeKey(k.PrivateKey.Reveal()); err != nil {
			errs.Addf("keys[%d].private_key: %v", i, err)
		}
	}
	for i, p := range v.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			errs.Addf("trusted_proxies[%d]: %v", i, err)
		}
	}
	if v.PlainListen != "" && len(v.TrustedProxies) == 0 {
		errs.Addf("plain_listen: needs trusted_proxies (the egress addresses allowed to use it)")
	}
	if v.MaxConnections < 0 {
		errs.Addf("max_connections: must not be negative")
	}
	if v.MaxConnectionsPerIP < -1 {
		errs.Addf("max_connections_per_ip: must be -1 (unlimited) or positive")
	}
	if v.MaxFrameSize < 1024 {
		errs.Addf("max_frame_size: %d is below 1024", v.MaxFrameSize)
	}
	if v.MaxHandshakes < 1 {
		errs.Addf("max_handshakes: at least 1 (0: twice GOMAXPROCS)")
	}
	if v.HelloGrace < 0 || v.HelloGrace > v.HandshakeTimeout {
		errs.Addf("hello_grace: %s not in 0..handshake_timeout (%s)", v.HelloGrace.D(), v.HandshakeTimeout.D())
	}
	if v.HandshakeWait < 0 || v.HandshakeWait > v.HandshakeTimeout {
		errs.Addf("handshake_wait: %s not in 0..handshake_timeout (%s)", v.HandshakeWait.D(), v.HandshakeTimeout.D())
	}
	if v.IdleTimeout.D() <= v.Heartbeat.D() {
		errs.Addf("idle_timeout (%s) must exceed heartbeat (%s)", v.IdleTimeout.D(), v.Heartbeat.D())
	}
	if v.Heartbeat.D() < time.Second {
		errs.Addf("heartbeat: %s is below 1s", v.Heartbeat.D())
	}
	if v.RequestRate < 0 || v.RequestBurst < 1 {
		errs.Addf("request_rate must be positive and request_burst at least 1")
	}
	if v.SendAttemptTimeout.D() < 10*time.Millisecond || v.SendAttemptTimeout > v.RequestTimeout {
		errs.Addf("send_attempt_timeout: %s not in 10ms..request_timeout", v.SendAttemptTimeout.D())
	}
	if v.MaxSendBatch < 1 || v.MaxSendBatch > buswire.MaxSendBatch {
		errs.Addf("max_send_batch: %d not in 1..%d", v.MaxSendBatch, buswire.MaxSendBatch)
	}
	if v.MaxInflight < 1 || v.SendQueue < 8 {
		errs.Addf("max_inflight must be at least 1 and send_queue at least 8")
	}
	if v.RoomBatchInterval.D() < time.Millisecond || v.RoomBatchInterval.D() > time.Second {
		errs.Addf("room_batch_interval: %s not in 1ms..1s", v.RoomBatchInterval.D())
	}
	if v.RoomGapWait < 0 || v.RoomGapWait.D() > 10*time.Second {
		errs.Addf("room_gap_wait: %s not in 0..10s", v.RoomGapWait.D())
	}
	if v.RoomMaxQueued < 1 || v.RoomMaxQueued > v.SendQueue {
		errs.Addf("room_max_queued: must be in 1..send_queue (%d)", v.SendQueue)
	}
	if v.MaxRoomsPerSession < 1 {
		errs.Addf("max_rooms_per_session: at least 1")
	}
	if v.RoomWriters < 0 || v.RoomWriters > 256 {
		errs.Addf("room_writers: %d not in 0..256 (0: GOMAXPROCS)", v.RoomWriters)
	}
	if v.AnnounceInterval.D() < 100*time.Millisecond {
		errs.Addf("announce_interval: at least 100ms")
	}
	if v.MaxSuperGroups < 1 {
		errs.Addf("max_super_groups: at least 1")
	}
	return errs.Err()
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

func subjectSafe(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
