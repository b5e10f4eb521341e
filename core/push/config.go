package push

import (
	"net/url"
	"time"

	"github.com/longlink/longlink/pkg/config"
)

// Preview modes: what a notification shows of the message.
const (
	PreviewHidden = "hidden" // the app's title and hidden_body only (default)
	PreviewSender = "sender" // the sender as the title, hidden_body as the body
	PreviewFull   = "full"   // the sender and the start of a text message
)

// Do-not-disturb modes: what happens to a notification inside a user's
// do-not-disturb window.
const (
	DNDDrop   = "drop"   // no notification (default)
	DNDSilent = "silent" // delivered without sound, at low priority
)

// Badge modes.
const (
	BadgeUnread = "unread" // the account's unread total across conversations (default)
	BadgeNone   = "none"   // no badge
)

// AppConfig is one app's push setup: how notifications look and the
// providers its devices' tokens are sent to. A token of a provider the app
// has not configured is never used (counted as unconfigured).
type AppConfig struct {
	AppKey string `yaml:"appkey"`
	// Preview is hidden (default), sender or full.
	Preview string `yaml:"preview"`
	// Title is the notification title when the preview is hidden. Default
	// "New message".
	Title string `yaml:"title"`
	// HiddenBody is the body when the content is not shown. Default "You
	// have a new message".
	HiddenBody string `yaml:"hidden_body"`
	// PreviewChars caps the text shown with preview full. Default 100.
	PreviewChars int `yaml:"preview_chars"`
	// DND is drop (default) or silent.
	DND string `yaml:"dnd"`
	// Badge is unread (default) or none.
	Badge string `yaml:"badge"`
	// Sound names the notification sound. Default "default".
	Sound string `yaml:"sound"`

	Webhook *WebhookConfig `yaml:"webhook"`
	APNs    *APNsConfig    `yaml:"apns"`
	FCM     *FCMConfig     `yaml:"fcm"`
}

// WebhookConfig is the app's own push endpoint: a signed POST per device
// (the signature of core/webhook).
type WebhookConfig struct {
	URL    string        `yaml:"url"`
	Secret config.Secret `yaml:"secret"`
}

// APNsConfig is token-based (.p8 key) authentication with APNs.
type APNsConfig struct {
	// Endpoint and SandboxEndpoint are the production and development
	// hosts. Defaults https://api.push.apple.com and
	// https://api.sandbox.push.apple.com.
	Endpoint        string `yaml:"endpoint"`
	SandboxEndpoint string `yaml:"sandbox_endpoint"`
	TeamID          string `yaml:"team_id"`
	KeyID           string `yaml:"key_id"`
	// Key is the PEM of the .p8 signing key (ES256); file: or env: forms.
	Key config.Secret `yaml:"key"`
	// Topic is the app's bundle id (apns-topic).
	Topic string `yaml:"topic"`
	// Expiration is how long APNs keeps trying an offline device
	// (apns-expiration). Default 24h.
	Expiration config.Duration `yaml:"expiration"`
}

// FCMConfig is Firebase Cloud Messaging HTTP v1 with a service account.
type FCMConfig struct {
	// Endpoint is the FCM host. Default https://fcm.googleapis.com.
	Endpoint string `yaml:"endpoint"`
	// Credentials is the service account JSON (project_id, client_email,
	// private_key, token_uri); file: or env: forms.
	Credentials config.Secret `yaml:"credentials"`
	// TokenURI, when set, replaces the credentials' token_uri (tests).
	TokenURI string `yaml:"token_uri"`
	// ProjectID, when set, replaces the credentials' project_id.
	ProjectID string `yaml:"project_id"`
}

// Config tunes the push workers.
type Config struct {
	// Presence is the registry of online sessions (gateways write it, app
	// nodes read it).
	Presence PresenceConfig `yaml:"presence"`
	Apps     []AppConfig    `yaml:"apps"`
	// Stream holds push tasks (subject <subject>.task.<appkey>) and
	// per-device sends (<subject>.send.<appkey>). Defaults LL_PUSH, ll.push.
	Stream  string `yaml:"stream"`
	Subject string `yaml:"subject"`
	// MemoryStorage keeps the stream in memory (tests); default file.
	MemoryStorage bool `yaml:"memory_storage"`
	// Workers is the number of concurrent provider calls per node. Default 8.
	Workers int `yaml:"workers"`
	// MaxAttempts is how often a send is tried when the provider asks to
	// retry (429, 5xx, no answer). Default 5.
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff is the wait after failed attempt n (index n-1); the last
	// value repeats. Default 1s 5s 30s 2m.
	Backoff []config.Duration `yaml:"backoff"`
	// DeliveryTimeout bounds one provider call. Default 10s.
	DeliveryTimeout config.Duration `yaml:"delivery_timeout"`
	// MaxAge drops tasks not handled within it (a notification hours late
	// is noise). Default 1h.
	MaxAge config.Duration `yaml:"max_age"`
	// MaxDevices caps the devices notified per account. Default 20.
	MaxDevices int `yaml:"max_devices"`
	// AuthRefresh is how long an APNs provider token or an FCM access token
	// is reused. Default 50m (APNs refuses tokens older than an hour).
	AuthRefresh config.Duration `yaml:"auth_refresh"`
	// EventLogMaxAge is how long the session event log keeps entries;
	// older ones are deleted hourly. Default 2160h (90 days).
	EventLogMaxAge config.Duration `yaml:"event_log_max_age"`
}

// Default returns the defaults.
func Default() Config {
	return Config{
		Presence: DefaultPresence(),
		Stream:   "LL_PUSH", Subject: "ll.push", Workers: 8, MaxAttempts: 5,
		Backoff: []config.Duration{
			config.Duration(time.Second), config.Duration(5 * time.Second),
			config.Duration(30 * time.Second), config.Duration(2 * time.Minute),
		},
		DeliveryTimeout: config.Duration(10 * time.Second),
		MaxAge:          config.Duration(time.Hour),
		MaxDevices:      20,
		AuthRefresh:     config.Duration(50 * time.Minute),
		EventLogMaxAge:  config.Duration(90 * 24 * time.Hour),
	}
}

func (c *Config) applyDefaults() {
	d := Default()
	c.Presence.applyDefaults()
	if c.Stream == "" {
		c.Stream = d.Stream
	}
	if c.Subject == "" {
		c.Subject = d.Subject
	}
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if len(c.Backoff) == 0 {
		c.Backoff = d.Backoff
	}
	if c.DeliveryTimeout == 0 {
		c.DeliveryTimeout = d.DeliveryTimeout
	}
	if c.MaxAge == 0 {
		c.MaxAge = d.MaxAge
	}
	if c.MaxDevices == 0 {
		c.MaxDevices = d.MaxDevices
	}
	if c.AuthRefresh == 0 {
		c.AuthRefresh = d.AuthRefresh
	}
	if c.EventLogMaxAge == 0 {
		c.EventLogMaxAge = d.EventLogMaxAge
	}
	for i := range c.Apps {
		a := &c.Apps[i]
		if a.Preview == "" {
			a.Preview = PreviewHidden
		}
		if a.Title == "" {
			a.Title = "New message"
		}
		if a.HiddenBody == "" {
			a.HiddenBody = "You have a new message"
		}
		if a.PreviewChars == 0 {
			a.PreviewChars = 100
		}
		if a.DND == "" {
			a.DND = DNDDrop
		}
		if a.Badge == "" {
			a.Badge = BadgeUnread
		}
		if a.Sound == "" {
			a.Sound = "default"
		}
		if p := a.APNs; p != nil {
			if p.Endpoint == "" {
				p.Endpoint = "https://api.push.apple.com"
			}
			if p.SandboxEndpoint == "" {
				p.SandboxEndpoint = "https://api.sandbox.push.apple.com"
			}
			if p.Expiration == 0 {
				p.Expiration = config.Duration(24 * time.Hour)
			}
		}
		if p := a.FCM; p != nil && p.Endpoint == "" {
			p.Endpoint = "https://fcm.googleapis.com"
		}
	}
}

func httpURL(u string) bool {
	pu, err := url.Parse(u)
	return err == nil && (pu.Scheme == "http" || pu.Scheme == "https") && pu.Host != ""
}

// Validate reports every problem at once. Provider keys are parsed here,
// so a bad key fails the start, not the first notification.
func (c *Config) Validate() error {
	c.applyDefaults()
	var errs config.Errors
	if err := c.Presence.Validate(); err != nil {
		errs.Addf("push: %w", err)
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 50 {
		errs.Addf("push.max_attempts: %d not in 1..50", c.MaxAttempts)
	}
	for i, b := range c.Backoff {
		if b <= 0 {
			errs.Addf("push.backoff[%d]: must be positive", i)
		}
	}
	if c.Workers < 1 || c.Workers > 1024 {
		errs.Addf("push.workers: %d not in 1..1024", c.Workers)
	}
	if c.DeliveryTimeout <= 0 || c.MaxAge <= 0 {
		errs.Addf("push.delivery_timeout, max_age: must be positive")
	}
	if c.MaxDevices < 1 {
		errs.Addf("push.max_devices: at least 1")
	}
	if c.EventLogMaxAge.D() < time.Hour {
		errs.Addf("push.event_log_max_age: at least 1h")
	}
	if c.AuthRefresh.D() < time.Minute || c.AuthRefresh.D() >= time.Hour {
		errs.Addf("push.auth_refresh: %v not in [1m, 60m)", c.AuthRefresh.D())
	}
	seen := map[string]bool{}
	for i, a := range c.Apps {
		p := "push.apps[" + a.AppKey + "]"
		if a.AppKey == "" {
			errs.Addf("push.apps[%d].appkey: required", i)
		}
		if seen[a.AppKey] {
			errs.Addf("%s: listed twice", p)
		}
		seen[a.AppKey] = true
		switch a.Preview {
		case PreviewHidden, PreviewSender, PreviewFull:
		default:
			errs.Addf("%s.preview: %q, want hidden, sender or full", p, a.Preview)
		}
		if a.DND != DNDDrop && a.DND != DNDSilent {
			errs.Addf("%s.dnd: %q, want drop or silent", p, a.DND)
		}
		if a.Badge != BadgeUnread && a.Badge != BadgeNone {
			errs.Addf("%s.badge: %q, want unread or none", p, a.Badge)
		}
		if a.PreviewChars < 1 || a.PreviewChars > 1000 {
			errs.Addf("%s.preview_chars: not in 1..1000", p)
		}
		if w := a.Webhook; w != nil {
			if !httpURL(w.URL) {
				errs.Addf("%s.webhook.url: %q is not an http(s) URL", p, w.URL)
			}
			if len(w.Secret.Reveal()) < 16 {
				errs.Addf("%s.webhook.secret: at least 16 bytes", p)
			}
		}
		if k := a.APNs; k != nil {
			if !httpURL(k.Endpoint) || !httpURL(k.SandboxEndpoint) {
				errs.Addf("%s.apns.endpoint: not an http(s) URL", p)
			}
			if k.TeamID == "" || k.KeyID == "" || k.Topic == "" {
				errs.Addf("%s.apns: team_id, key_id and topic are required", p)
			}
			if _, err := parseECKey(k.Key.Reveal()); err != nil {
				errs.Addf("%s.apns.key: %v", p, err)
			}
			if k.Expiration < 0 {
				errs.Addf("%s.apns.expiration: must not be negative", p)
			}
		}
		if f := a.FCM; f != nil {
			if !httpURL(f.Endpoint) || (f.TokenURI != "" && !httpURL(f.TokenURI)) {
				errs.Addf("%s.fcm.endpoint, token_uri: not an http(s) URL", p)
			}
			if _, err := parseServiceAccount(f.Credentials.Reveal(), f); err != nil {
				errs.Addf("%s.fcm.credentials: %v", p, err)
			}
		}
	}
	return errs.Err()
}
