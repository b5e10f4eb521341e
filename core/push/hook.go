package push

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/longlink/longlink/core/webhook"
)

// hookProvider POSTs each notification to the app's own push endpoint,
// signed exactly like core/webhook's events (X-Longlink-Signature over the
// body with the push webhook's secret). 2xx is delivered, 410 means the
// token is dead, 429 and 5xx are retried, other answers are permanent.
type hookProvider struct {
	cfg    *WebhookConfig
	client *http.Client
	now    func() time.Time
}

// HookPayload is the body of a push webhook POST.
type HookPayload struct {
	Kind string `json:"kind"` // "push"
	Notification
}

func (h *hookProvider) send(ctx context.Context, n *Notification) result {
	body, err := json.Marshal(HookPayload{Kind: "push", Notification: *n})
	if err != nil {
		return result{outcome: failed, err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return result{outcome: failed, err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "longlink-push/1")
	req.Header.Set(webhook.SignatureHeader, webhook.Sign(h.cfg.Secret.Reveal(), h.now(), body))
	req.Header.Set(webhook.EventIDHeader, n.ID)
	resp, err := h.client.Do(req)
	if err != nil {
		return transportResult(err)
	}
	_ = readBody(resp)
	return classifyHook(resp.StatusCode)
}

func classifyHook(status int) result {
	switch {
	case status >= 200 && status <= 299:
		return result{outcome: delivered}
	case status == http.StatusGone:
		return result{outcome: unregistered, err: statusErr(status, "")}
	case status == http.StatusTooManyRequests, status >= 500:
		return result{outcome: retry, err: statusErr(status, "")}
	}
	return result{outcome: failed, err: statusErr(status, "")}
}
