package service

import (
	"fmt"
	"os"
	"time"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/logintoken"
	"github.com/longlink/longlink/core/route"
	"github.com/longlink/longlink/core/service/group"
	"github.com/longlink/longlink/core/service/room"
	"github.com/longlink/longlink/pkg/config"
)

// AppConfig is an app seeded into the store at start.
type AppConfig struct {
	AppKey string `yaml:"appkey"`
	// Secret signs the app servers' calls to the server HTTP API.
	Secret config.Secret `yaml:"secret"`
	// Devices is the multi-device policy: kick_same_type (default),
	// allow_all or single.
	Devices string `yaml:"devices"`
	// Heartbeat is the interval announced to clients at login. Default 30s.
	Heartbeat config.Duration `yaml:"heartbeat"`
	// Blacklist is how a blacklist blocks 1:1 messages: inbound (default;
	// the blocker receives nothing from the blocked account but may still
	// write to it) or both (neither side can message the other).
	Blacklist string `yaml:"blacklist"`
}

// TokenKeyConfig is the core's login-token signing key. To rotate, give
// edges the new public key beside the old one first, then switch this key;
// tokens signed by the old key still log in (the edge forwards them once its
// key is gone).
type TokenKeyConfig struct {
	// ID names the key in tokens: 1..32 of A-Z a-z 0-9 _ -.
	ID string `yaml:"id"`
	// PrivateKey is the base64 Ed25519 seed (literal, file: or env:), as
	// `longlink keygen -token` prints it.
	PrivateKey config.Secret `yaml:"private_key"`
}

// Signer builds the key's signer (for tools that issue tokens outside the
// service, such as `longlink dev`'s demo users).
func (k *TokenKeyConfig) Signer() (*logintoken.Signer, error) {
	seed, err := logintoken.DecodeKey(k.PrivateKey.Reveal())
	if err != nil {
		return nil, err
	}
	return logintoken.NewSigner(k.ID, seed)
}

// Config tunes the app services.
type Config struct {
	// Cluster is the subject prefix served (buswire.DefaultCluster unless this
	// node serves a dedicated cluster).
	Cluster string `yaml:"cluster"`
	// ID names the node in its announcements and metrics. Default
	// "svc-<hostname>-<pid>".
	ID string `yaml:"id"`
	// Version labels the node for grayscale routing (1-32 of A-Z a-z 0-9
	// . -): grayscale rules in the LBS policy send chosen users to the
	// nodes of a version. Default: the binary's version (core sets it);
	// "" serves the cluster's stable subjects only.
	Version string `yaml:"version"`
	// Canary nodes take only the requests a grayscale rule sends to their
	// version, none of the cluster's other traffic.
	Canary bool `yaml:"canary"`
	// Site is the node's site label, set by the core from its node-level
	// `site:` key (one key for every part of the node, not a service one).
	Site string `yaml:"-"`
	// AnnounceInterval is how often the node tells the gateways it is live
	// (id, cluster, version). Default 2s.
	AnnounceInterval config.Duration `yaml:"announce_interval"`
	// Apps are created or updated in the store at start.
	Apps []AppConfig `yaml:"apps"`
	// RecallWindow is how long after sending the sender may recall. Default 2m.
	RecallWindow config.Duration `yaml:"recall_window"`
	// MaxRequestBytes caps a request body from the bus. Default 64 KiB.
	MaxRequestBytes int `yaml:"max_request_bytes"`
	// MaxMessageBytes caps a message's body. Default 16 KiB.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxGroupMembers caps a group's size. Default 500.
	MaxGroupMembers int `yaml:"max_group_members"`
	// MaxMentions caps the mentions of one message. Default 50.
	MaxMentions int `yaml:"max_mentions"`
	// PageLimit caps sync and history pages; DefaultPage is used when a
	// request gives no limit. Defaults 200 and 50.
	PageLimit   int `yaml:"page_limit"`
	DefaultPage int `yaml:"default_page"`
	// ConvListLimit caps the conversation list. Default 500.
	ConvListLimit int `yaml:"conv_list_limit"`
	// TokenTTL is the lifetime of issued tokens. Default 720h (30 days).
	TokenTTL config.Duration `yaml:"token_ttl"`
	// TokenKey, when set, makes issued tokens signed (core/logintoken), so
	// that edges holding its public key answer logins themselves (LINK.md
	// section 7). Tokens are still stored hashed and checked here, and
	// opaque tokens issued before keep working. Default: opaque tokens.
	TokenKey *TokenKeyConfig `yaml:"token_key"`
	// MaxInFlight bounds concurrently handled requests on this node; more
	// wait in the bus client's buffer. Default 4096.
	MaxInFlight int `yaml:"max_in_flight"`
	// RequestTimeout bounds one request's store work. Default 5s.
	RequestTimeout config.Duration `yaml:"request_timeout"`
	// StallTimeout: when requests are in flight on this node but none has
	// finished for this long (its store hangs, its handlers get no CPU),
	// the node leaves its queue groups, so that gateways' retries go to
	// the other nodes, and joins them again once a request finishes.
	// Default 3s; negative never leaves.
	StallTimeout config.Duration `yaml:"stall_timeout"`
	// LoginQueueWait: logins are served in arrival order by LoginWorkers
	// at once; a login whose expected wait in that queue (its length over
	// the measured login rate) is longer than this is answered 503 at once
	// with a retry-after hint, spaced at the measured rate, instead of
	// waiting past its client's connect timeout (the dispatcher's
	// admission.go). Default 2s; negative: no login admission.
	LoginQueueWait config.Duration `yaml:"login_queue_wait"`
	// LoginWorkers is how many logins are served at once. Default 32.
	LoginWorkers int `yaml:"login_workers"`
	// MaxRequestAge: a send batch its gateway sent longer ago than this
	// (the node was paused or stalled with it queued) is dropped
	// unanswered: the gateway has resent it or ended its session, and
	// storing it now could put it after messages sent later. At least the
	// gateways' request_timeout. Default 10s; negative keeps every one.
	MaxRequestAge config.Duration `yaml:"max_request_age"`
	// Rooms tunes chatrooms.
	Rooms room.Config `yaml:"rooms"`
	// MaxFriends, MaxBlacklist and MaxMutes cap an account's friends,
	// blocked accounts and muted conversations. Defaults 3000, 1000, 1000.
	MaxFriends   int `yaml:"max_friends"`
	MaxBlacklist int `yaml:"max_blacklist"`
	MaxMutes     int `yaml:"max_mutes"`
	// Super tunes super-groups (core/service/group).
	Super group.SuperConfig `yaml:"super"`
}

// Default returns the single-node defaults.
func Default() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "svc"
	}
	return Config{
		Cluster:          buswire.DefaultCluster,
		ID:               fmt.Sprintf("svc-%s-%d", host, os.Getpid()),
		AnnounceInterval: config.Duration(2 * time.Second),
		RecallWindow:     config.Duration(2 * time.Minute),
		MaxRequestBytes:  64 << 10,
		MaxMessageBytes:  16 << 10,
		MaxGroupMembers:  500,
		MaxMentions:      50,
		PageLimit:        200,
		DefaultPage:      50,
		ConvListLimit:    500,
		TokenTTL:         config.Duration(720 * time.Hour),
		MaxInFlight:      4096,
		RequestTimeout:   config.Duration(5 * time.Second),
		StallTimeout:     config.Duration(3 * time.Second),
		LoginQueueWait:   config.Duration(2 * time.Second),
		LoginWorkers:     32,
		MaxRequestAge:    config.Duration(10 * time.Second),
		Rooms:            room.Default(),
		MaxFriends:       3000,
		MaxBlacklist:     1000,
		MaxMutes:         1000,
	}
}

func (c *Config) applyDefaults() {
	d := Default()
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	if c.Cluster == "" {
		c.Cluster = d.Cluster
	}
	if c.ID == "" {
		c.ID = d.ID
	}
	if c.AnnounceInterval == 0 {
		c.AnnounceInterval = d.AnnounceInterval
	}
	if c.RecallWindow == 0 {
		c.RecallWindow = d.RecallWindow
	}
	set(&c.MaxRequestBytes, d.MaxRequestBytes)
	set(&c.MaxMessageBytes, d.MaxMessageBytes)
	set(&c.MaxGroupMembers, d.MaxGroupMembers)
	set(&c.MaxMentions, d.MaxMentions)
	set(&c.PageLimit, d.PageLimit)
	set(&c.DefaultPage, d.DefaultPage)
	set(&c.ConvListLimit, d.ConvListLimit)
	set(&c.MaxInFlight, d.MaxInFlight)
	set(&c.MaxFriends, d.MaxFriends)
	set(&c.MaxBlacklist, d.MaxBlacklist)
	set(&c.MaxMutes, d.MaxMutes)
	if c.TokenTTL == 0 {
		c.TokenTTL = d.TokenTTL
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = d.StallTimeout
	}
	if c.MaxRequestAge == 0 {
		c.MaxRequestAge = d.MaxRequestAge
	}
	if c.LoginQueueWait == 0 {
		c.LoginQueueWait = d.LoginQueueWait
	}
	set(&c.LoginWorkers, d.LoginWorkers)
	c.Rooms.ApplyDefaults()
	c.Super.ApplyDefaults()
	for i := range c.Apps {
		if c.Apps[i].Devices == "" {
			c.Apps[i].Devices = imapi.DevicesKickSameType
		}
		if c.Apps[i].Heartbeat == 0 {
			c.Apps[i].Heartbeat = config.Duration(30 * time.Second)
		}
		if c.Apps[i].Blacklist == "" {
			c.Apps[i].Blacklist = "inbound"
		}
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	// Zero values mean "the default", so they are filled in first: a config
	// that leaves a key out is valid, and --check-config prints the result.
	c.applyDefaults()
	var errs config.Errors
	if !imapi.ValidName(c.Cluster) {
		errs.Addf("service.cluster: %q: want 1-64 of A-Z a-z 0-9 _ -", c.Cluster)
	}
	if c.ID == "" || len(c.ID) > 128 {
		errs.Addf("service.id: want 1-128 characters")
	}
	if err := c.Node().Validate(); err != nil {
		errs.Addf("%w", err)
	}
	if d := c.AnnounceInterval.D(); d < 100*time.Millisecond || d > 20*time.Second {
		errs.Addf("service.announce_interval: %s not in 100ms..20s", d)
	}
	seen := map[string]bool{}
	for i, a := range c.Apps {
		if !imapi.ValidName(a.AppKey) {
			errs.Addf("service.apps[%d].appkey: %q: want 1-64 of A-Z a-z 0-9 _ -", i, a.AppKey)
		}
		if seen[a.AppKey] {
			errs.Addf("service.apps[%d].appkey: %q listed twice", i, a.AppKey)
		}
		seen[a.AppKey] = true
		if len(a.Secret.Reveal()) < 16 {
			errs.Addf("service.apps[%d].secret: at least 16 characters required", i)
		}
		switch a.Devices {
		case imapi.DevicesKickSameType, imapi.DevicesAllowAll, imapi.DevicesSingle:
		default:
			errs.Addf("service.apps[%d].devices: %q is not kick_same_type, allow_all or single", i, a.Devices)
		}
		if a.Heartbeat.D() < time.Second || a.Heartbeat.D() > 10*time.Minute {
			errs.Addf("service.apps[%d].heartbeat: %v not in 1s..10m", i, a.Heartbeat.D())
		}
		if a.Blacklist != "inbound" && a.Blacklist != "both" {
			errs.Addf("service.apps[%d].blacklist: %q is not inbound or both", i, a.Blacklist)
		}
	}
	if c.RecallWindow < 0 {
		errs.Addf("service.recall_window: must not be negative")
	}
	if c.MaxRequestBytes < 1024 {
		errs.Addf("service.max_request_bytes: at least 1024")
	}
	if c.MaxMessageBytes < 1 || c.MaxMessageBytes > c.MaxRequestBytes {
		errs.Addf("service.max_message_bytes: must be in 1..max_request_bytes (%d)", c.MaxRequestBytes)
	}
	if c.MaxGroupMembers < 2 {
		errs.Addf("service.max_group_members: at least 2")
	}
	if c.MaxMentions < 0 {
		errs.Addf("service.max_mentions: must not be negative")
	}
	if c.PageLimit < 1 || c.DefaultPage < 1 || c.DefaultPage > c.PageLimit {
		errs.Addf("service.default_page: must be in 1..page_limit (%d)", c.PageLimit)
	}
	if c.ConvListLimit < 1 {
		errs.Addf("service.conv_list_limit: at least 1")
	}
	if c.TokenTTL.D() < time.Minute {
		errs.Addf("service.token_ttl: at least 1m")
	}
	if c.TokenKey != nil {
		if _, err := c.TokenKey.Signer(); err != nil {
			errs.Addf("service.token_key: %w", err)
		}
	}
	if c.MaxInFlight < 1 {
		errs.Addf("service.max_in_flight: at least 1")
	}
	if c.MaxFriends < 1 || c.MaxBlacklist < 1 || c.MaxMutes < 1 {
		errs.Addf("service.max_friends, max_blacklist, max_mutes: at least 1")
	}
	if c.RequestTimeout.D() <= 0 {
		errs.Addf("service.request_timeout: must be positive")
	}
	if c.StallTimeout > 0 && c.StallTimeout.D() < 100*time.Millisecond {
		errs.Addf("service.stall_timeout: at least 100ms (negative: off)")
	}
	if c.LoginQueueWait > 0 && c.LoginQueueWait.D() < 100*time.Millisecond {
		errs.Addf("service.login_queue_wait: at least 100ms (negative: off)")
	}
	if c.LoginWorkers < 1 {
		errs.Addf("service.login_workers: at least 1")
	}
	c.Rooms.Validate(&errs)
	c.Super.Validate(&errs)
	return errs.Err()
}

// Blacklist modes of an app (AppConfig.Blacklist).
const (
	BlacklistInbound = "inbound" // the blocker receives nothing from the blocked account
	BlacklistBoth    = "both"    // neither side can message the other
)

// Node is the node's place in the request routing (core/route).
func (c *Config) Node() route.Node {
	return route.Node{Cluster: c.Cluster, Site: c.Site, Version: c.Version, Canary: c.Canary}
}
