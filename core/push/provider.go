package push

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Notification is one notification for one device, as queued on the send
// subject and handed to its provider.
type Notification struct {
	ID       string `json:"id"` // <msg_id>.<account>.<device>: dedupes the queue and the app's webhook
	AppKey   string `json:"appkey"`
	Account  string `json:"account"`
	DeviceID string `json:"device_id"`
	Provider string `json:"provider"`
	Token    string `json:"token"`
	Sandbox  bool   `json:"sandbox,omitempty"`
	Title    string `json:"title"`
	Body     string `json:"body"`
	// Badge is the app icon's number; nil leaves it unchanged.
	Badge *int64 `json:"badge,omitempty"`
	// Sound is the sound to play; empty with Silent.
	Sound string `json:"sound,omitempty"`
	// Silent is a notification inside a do-not-disturb window (dnd:
	// silent): no sound, low priority.
	Silent bool `json:"silent,omitempty"`
	// Data is handed to the app: conv_id, conv_type, msg_id, from.
	Data map[string]string `json:"data"`
	// Time is when the message was sent, unix milliseconds.
	Time int64 `json:"time"`
}

// outcome classifies a provider's answer.
type outcome int

const (
	delivered    outcome = iota
	retry                // 429, 5xx, no answer: try again after the backoff
	unregistered         // the token is dead: delete it
	failed               // permanent: counted and dropped
)

func (o outcome) String() string {
	switch o {
	case delivered:
		return "ok"
	case retry:
		return "retry"
	case unregistered:
		return "unregistered"
	}
	return "failed"
}

type result struct {
	outcome outcome
	err     error
}

// provider delivers notifications to one push service for one app.
type provider interface {
	send(ctx context.Context, n *Notification) result
}

// readBody reads at most 64 KiB of an answer and closes it.
func readBody(resp *http.Response) []byte {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return b
}

// transportResult is the outcome of a request that got no answer.
func transportResult(err error) result {
	return result{outcome: retry, err: err}
}

var b64 = base64.RawURLEncoding

// jwtSigningInput is base64url(header) "." base64url(claims).
func jwtSigningInput(header, claims any) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(h) + "." + b64.EncodeToString(c), nil
}

// cachedToken is a bearer credential reused until it is due for refresh.
type cachedToken struct {
	value   string
	expires time.Time
}

func (c *cachedToken) valid(now time.Time) bool { return c.value != "" && now.Before(c.expires) }

func statusErr(status int, reason string) error {
	if reason == "" {
		return fmt.Errorf("status %d", status)
	}
	return fmt.Errorf("status %d: %s", status, reason)
}
