package room

import (
	"time"

	"github.com/longlink/longlink/pkg/config"
)

// Config tunes chatrooms (service.rooms).
type Config struct {
	// TokenTTL is the default and maximum lifetime of a room entry token.
	// Default 5m.
	TokenTTL config.Duration `yaml:"token_ttl"`
	// HistorySize is how many recent messages a room keeps unless its
	// creator says otherwise; MaxHistorySize caps what a creator may ask.
	// Defaults 50 and 500.
	HistorySize    int `yaml:"history_size"`
	MaxHistorySize int `yaml:"max_history_size"`
	// EnterHistory is how many recent messages an enter returns when the
	// client does not say. Default 20.
	EnterHistory int `yaml:"enter_history"`
	// MsgRate is the default limit of messages per second into one room,
	// MemberRate per member of a room. Defaults 200 and 5. They hold for
	// the whole cluster (core/ratelimit: a budget per 1s window shared by
	// every service node).
	MsgRate    float64 `yaml:"msg_rate"`
	MemberRate float64 `yaml:"member_rate"`
	// GatewayTimeout: a gateway that has not announced itself for this long
	// is no longer offered as a room entry point. Default 10s.
	GatewayTimeout config.Duration `yaml:"gateway_timeout"`
	// MaxEntryPoints caps the gateways "get addresses" returns. Default 3.
	MaxEntryPoints int `yaml:"max_entry_points"`
}

// Default returns the room defaults.
func Default() Config {
	return Config{
		TokenTTL: config.Duration(5 * time.Minute), HistorySize: 50, MaxHistorySize: 500, EnterHistory: 20,
		MsgRate: 200, MemberRate: 5, GatewayTimeout: config.Duration(10 * time.Second), MaxEntryPoints: 3,
	}
}

// ApplyDefaults fills in the zero values.
func (c *Config) ApplyDefaults() {
	d := Default()
	if c.TokenTTL == 0 {
		c.TokenTTL = d.TokenTTL
	}
	if c.HistorySize == 0 {
		c.HistorySize = d.HistorySize
	}
	if c.MaxHistorySize == 0 {
		c.MaxHistorySize = d.MaxHistorySize
	}
	if c.EnterHistory == 0 {
		c.EnterHistory = d.EnterHistory
	}
	if c.MsgRate == 0 {
		c.MsgRate = d.MsgRate
	}
	if c.MemberRate == 0 {
		c.MemberRate = d.MemberRate
	}
	if c.GatewayTimeout == 0 {
		c.GatewayTimeout = d.GatewayTimeout
	}
	if c.MaxEntryPoints == 0 {
		c.MaxEntryPoints = d.MaxEntryPoints
	}
}

// Validate adds the problems of c (defaults applied) to errs.
func (c *Config) Validate(errs *config.Errors) {
	if c.TokenTTL.D() < time.Second {
		errs.Addf("service.rooms.token_ttl: at least 1s")
	}
	if c.MaxHistorySize < 1 || c.HistorySize < 1 || c.HistorySize > c.MaxHistorySize {
		errs.Addf("service.rooms.history_size: must be in 1..max_history_size (%d)", c.MaxHistorySize)
	}
	if c.EnterHistory < 0 {
		errs.Addf("service.rooms.enter_history: must not be negative")
	}
	if c.MsgRate <= 0 || c.MemberRate <= 0 {
		errs.Addf("service.rooms: msg_rate and member_rate must be positive")
	}
	if c.GatewayTimeout.D() < time.Second {
		errs.Addf("service.rooms.gateway_timeout: at least 1s")
	}
	if c.MaxEntryPoints < 1 {
		errs.Addf("service.rooms.max_entry_points: at least 1")
	}
}
