package webhook

import (
	"net/url"
	"slices"
	"time"

	"github.com/longlink/longlink/pkg/config"
)

// Kind is an event kind.
type Kind string

// Event kinds an app can subscribe to.
const (
	KindMessage Kind = "message" // a copy of every stored message (data sync)
	KindLogin   Kind = "login"
	KindLogout  Kind = "logout"
	// KindKick is a session closed by the server: another device took
	// over, an operator disabled the user, a gateway drained or dropped a
	// slow consumer (the reason says which).
	KindKick Kind = "kick"
)

// Kinds lists every event kind.
var Kinds = []Kind{KindMessage, KindLogin, KindLogout, KindKick}

// Action is a moderation answer.
type Action string

// Moderation actions.
const (
	Allow   Action = "allow"
	Deny    Action = "deny"
	Replace Action = "replace"
)

// AppConfig is one app's webhook setup.
type AppConfig struct {
	AppKey string `yaml:"appkey"`
	// URL receives the events (POST, JSON, signed). "" sends none.
	URL string `yaml:"url"`
	// Secret signs the events and moderation requests.
	Secret config.Secret `yaml:"secret"`
	// Events the app wants; empty means all kinds.
	Events []Kind `yaml:"events"`
	// ModerationURL, when set, is asked before every send.
	ModerationURL string `yaml:"moderation_url"`
	// ModerationTimeout bounds one moderation call. Default 1s.
	ModerationTimeout config.Duration `yaml:"moderation_timeout"`
	// ModerationDefault applies when the hook times out or fails:
	// allow (default), deny or replace (with ModerationReplaceBody).
	ModerationDefault Action `yaml:"moderation_default"`
	// ModerationReplaceBody is the body (a JSON value) of the replace default.
	ModerationReplaceBody string `yaml:"moderation_replace_body"`
}

// Wants reports whether the app subscribed to kind.
func (a *AppConfig) Wants(k Kind) bool {
	return a.URL != "" && (len(a.Events) == 0 || slices.Contains(a.Events, k))
}

// Config tunes the webhook component.
type Config struct {
	Apps []AppConfig `yaml:"apps"`
	// Stream and DeadStream are the JetStream streams of pending events
	// (subjects <subject>.<appkey>) and dead letters. Defaults LL_WEBHOOK,
	// LL_WEBHOOK_DEAD.
	Stream     string `yaml:"stream"`
	DeadStream string `yaml:"dead_stream"`
	// Subject and DeadSubject are the subject prefixes. Defaults ll.webhook,
	// ll.webhook_dead.
	Subject     string `yaml:"subject"`
	DeadSubject string `yaml:"dead_subject"`
	// Consumer is the durable consumer name. Default webhook.
	Consumer string `yaml:"consumer"`
	// MemoryStorage keeps the streams in memory (tests); default file.
	MemoryStorage bool `yaml:"memory_storage"`
	// MaxAttempts is how many times an event is tried before it becomes a
	// dead letter. Default 6.
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff is the wait after failed attempt n (index n-1); the last
	// value repeats. Default 1s 5s 30s 2m 10m.
	Backoff []config.Duration `yaml:"backoff"`
	// Workers is the number of concurrent deliveries. Default 8.
	Workers int `yaml:"workers"`
	// DeliveryTimeout bounds one POST. Default 10s.
	DeliveryTimeout config.Duration `yaml:"delivery_timeout"`
	// MaxAge is how long pending events and dead letters are kept.
	// Defaults 72h and 168h.
	MaxAge     config.Duration `yaml:"max_age"`
	DeadMaxAge config.Duration `yaml:"dead_max_age"`
	// MaxEventBytes caps one encoded event. Default 64 KiB.
	MaxEventBytes int `yaml:"max_event_bytes"`
}

// Default returns the defaults.
func Default() Config {
	return Config{
		Stream: "LL_WEBHOOK", DeadStream: "LL_WEBHOOK_DEAD",
		Subject: "ll.webhook", DeadSubject: "ll.webhook_dead",
		Consumer:    "webhook",
		MaxAttempts: 6,
		Backoff: []config.Duration{
			config.Duration(time.Second), config.Duration(5 * time.Second), config.Duration(30 * time.Second),
			config.Duration(2 * time.Minute), config.Duration(10 * time.Minute),
		},
		Workers:         8,
		DeliveryTimeout: config.Duration(10 * time.Second),
		MaxAge:          config.Duration(72 * time.Hour),
		DeadMaxAge:      config.Duration(168 * time.Hour),
		MaxEventBytes:   64 << 10,
	}
}

func (c *Config) applyDefaults() {
	d := Default()
	if c.Stream == "" {
		c.Stream = d.Stream
	}
	if c.DeadStream == "" {
		c.DeadStream = d.DeadStream
	}
	if c.Subject == "" {
		c.Subject = d.Subject
	}
	if c.DeadSubject == "" {
		c.DeadSubject = d.DeadSubject
	}
	if c.Consumer == "" {
		c.Consumer = d.Consumer
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if len(c.Backoff) == 0 {
		c.Backoff = d.Backoff
	}
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	if c.DeliveryTimeout == 0 {
		c.DeliveryTimeout = d.DeliveryTimeout
	}
	if c.MaxAge == 0 {
		c.MaxAge = d.MaxAge
	}
	if c.DeadMaxAge == 0 {
		c.DeadMaxAge = d.DeadMaxAge
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = d.MaxEventBytes
	}
	for i := range c.Apps {
		a := &c.Apps[i]
		if a.ModerationTimeout == 0 {
			a.ModerationTimeout = config.Duration(time.Second)
		}
		if a.ModerationDefault == "" {
			a.ModerationDefault = Allow
		}
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	// Zero values mean "the default", so they are filled in first: a config
	// that leaves a key out is valid, and --check-config prints the result.
	c.applyDefaults()
	var errs config.Errors
	if c.Stream == c.DeadStream {
		errs.Addf("webhook.dead_stream: must differ from stream")
	}
	if c.Subject == c.DeadSubject {
		errs.Addf("webhook.dead_subject: must differ from subject")
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 100 {
		errs.Addf("webhook.max_attempts: %d not in 1..100", c.MaxAttempts)
	}
	for i, b := range c.Backoff {
		if b <= 0 {
			errs.Addf("webhook.backoff[%d]: must be positive", i)
		}
	}
	if c.Workers < 1 || c.Workers > 1024 {
		errs.Addf("webhook.workers: %d not in 1..1024", c.Workers)
	}
	if c.DeliveryTimeout <= 0 || c.MaxAge <= 0 || c.DeadMaxAge <= 0 {
		errs.Addf("webhook.delivery_timeout, max_age, dead_max_age: must be positive")
	}
	if c.MaxEventBytes < 1024 {
		errs.Addf("webhook.max_event_bytes: at least 1024")
	}
	seen := map[string]bool{}
	for i, a := range c.Apps {
		p := "webhook.apps[" + a.AppKey + "]"
		if a.AppKey == "" {
			errs.Addf("webhook.apps[%d].appkey: required", i)
		}
		if seen[a.AppKey] {
			errs.Addf("%s: listed twice", p)
		}
		seen[a.AppKey] = true
		for _, u := range []string{a.URL, a.ModerationURL} {
			if u == "" {
				continue
			}
			if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
				errs.Addf("%s: %q is not an http(s) URL", p, u)
			}
		}
		if (a.URL != "" || a.ModerationURL != "") && len(a.Secret.Reveal()) < 16 {
			errs.Addf("%s.secret: at least 16 bytes when a URL is set", p)
		}
		for _, k := range a.Events {
			if !slices.Contains(Kinds, k) {
				errs.Addf("%s.events: unknown kind %q", p, k)
			}
		}
		switch a.ModerationDefault {
		case Allow, Deny:
		case Replace:
			if !jsonValid(a.ModerationReplaceBody) {
				errs.Addf("%s.moderation_replace_body: a JSON value is required with the replace default", p)
			}
		default:
			errs.Addf("%s.moderation_default: %q, want allow, deny or replace", p, a.ModerationDefault)
		}
		if a.ModerationTimeout <= 0 || a.ModerationTimeout.D() > 30*time.Second {
			errs.Addf("%s.moderation_timeout: not in (0, 30s]", p)
		}
	}
	return errs.Err()
}
