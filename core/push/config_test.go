package push

import (
	"strings"
	"testing"

	"github.com/longlink/longlink/pkg/config"
)

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		want       []string // substrings of the error; none: valid
	}{
		{"defaults", `{}`, nil},
		{"a webhook app", `
apps:
  - appkey: acme
    preview: sender
    dnd: silent
    badge: none
    webhook: {url: "https://push.example/hook", secret: "0123456789abcdef"}`, nil},
		{"every problem at once", `
presence: {lease: 100ms}
max_attempts: 0
workers: 5000
auth_refresh: 60m
event_log_max_age: 1m
apps:
  - appkey: acme
    preview: everything
    dnd: loud
    badge: total
    webhook: {url: "ftp://x", secret: short}
    apns: {team_id: T, topic: com.acme, key: "not a key"}
    fcm: {credentials: "{}"}
  - appkey: acme`, []string{
			"presence.lease", "push.workers", "push.auth_refresh", "push.event_log_max_age", "preview", "dnd", "badge",
			"webhook.url", "webhook.secret", "apns: team_id, key_id and topic", "apns.key", "fcm.credentials", "listed twice",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			err := config.Decode("push.yaml", []byte(c.yaml), &cfg)
			if err == nil {
				err = cfg.Validate()
			}
			if len(c.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
