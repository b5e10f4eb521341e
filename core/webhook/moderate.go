package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ModerationRequest is the POST body of a moderation call: the message
// about to be sent.
type ModerationRequest struct {
	AppKey      string          `json:"appkey"`
	From        string          `json:"from"`
	ConvType    int             `json:"conv_type"`
	To          string          `json:"to"`
	ClientMsgID string          `json:"client_msg_id,omitempty"`
	Type        string          `json:"type"`
	Body        json.RawMessage `json:"body"`
}

// Decision is the moderation answer (also the hook's JSON response body).
type Decision struct {
	Action Action `json:"action"`
	// Body replaces the message body when Action is replace.
	Body   json.RawMessage `json:"body,omitempty"`
	Reason string          `json:"reason,omitempty"`
	// Default is true when the hook did not answer in time or correctly
	// and the app's configured default was applied.
	Default bool `json:"-"`
}

const maxModerationAnswer = 64 << 10

func jsonValid(s string) bool { return s != "" && json.Valid([]byte(s)) }

func (a *AppConfig) defaultDecision() Decision {
	d := Decision{Action: a.ModerationDefault, Default: true}
	if d.Action == Replace {
		d.Body = json.RawMessage(a.ModerationReplaceBody)
	}
	return d
}

// Moderate asks the app's moderation hook about msg, signed like the
// events, within the app's moderation timeout. It returns allow at once
// when the app has no hook. When the hook fails (timeout, transport error,
// non-2xx, malformed answer) it returns the app's configured default
// decision together with the error that caused it: the Decision is always
// the one to apply.
func (w *Webhooks) Moderate(ctx context.Context, appkey string, msg ModerationRequest) (Decision, error) {
	app := w.apps[appkey]
	if app == nil || app.ModerationURL == "" {
		return Decision{Action: Allow}, nil
	}
	msg.AppKey = appkey
	start := time.Now()
	d, err := w.moderate(ctx, app, &msg)
	w.metrics.modLatency.Observe(time.Since(start).Seconds())
	source := "hook"
	if err != nil {
		d, source = app.defaultDecision(), "default"
		w.log.Warn("moderation hook failed, default applied", "appkey", appkey, "default", d.Action, "err", err)
	}
	w.metrics.moderation.WithLabelValues(string(d.Action), source).Inc()
	return d, err
}

func (w *Webhooks) moderate(ctx context.Context, app *AppConfig, msg *ModerationRequest) (Decision, error) {
	body, err := json.Marshal(msg)
	if err != nil {
		return Decision{}, fmt.Errorf("webhook: moderation: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, app.ModerationTimeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, app.ModerationURL, bytes.NewReader(body))
	if err != nil {
		return Decision{}, fmt.Errorf("webhook: moderation: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "longlink-webhook/1")
	req.Header.Set(SignatureHeader, Sign(app.Secret.Reveal(), w.now(), body))
	resp, err := w.client.Do(req)
	if err != nil {
		return Decision{}, fmt.Errorf("webhook: moderation: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Decision{}, fmt.Errorf("webhook: moderation: status %d", resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxModerationAnswer+1))
	if err != nil {
		return Decision{}, fmt.Errorf("webhook: moderation: %w", err)
	}
	if len(raw) > maxModerationAnswer {
		return Decision{}, errors.New("webhook: moderation: answer too large")
	}
	var d Decision
	if err := json.Unmarshal(raw, &d); err != nil {
		return Decision{}, fmt.Errorf("webhook: moderation answer: %w", err)
	}
	switch d.Action {
	case Allow, Deny:
		d.Body = nil
	case Replace:
		if len(d.Body) == 0 || !json.Valid(d.Body) {
			return Decision{}, errors.New("webhook: moderation answer: replace without a body")
		}
	default:
		return Decision{}, fmt.Errorf("webhook: moderation answer: action %q", d.Action)
	}
	return d, nil
}
