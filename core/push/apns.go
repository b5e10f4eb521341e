package push

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// apnsProvider sends to APNs over HTTP/2 with token-based authentication:
// an ES256 JWT (kid = key id, iss = team id, iat) signed with the .p8 key,
// reused for AuthRefresh (APNs refuses tokens older than an hour and
// throttles minting more often than every 20 minutes).
type apnsProvider struct {
	cfg     *APNsConfig
	key     *ecdsa.PrivateKey
	client  *http.Client
	refresh time.Duration
	now     func() time.Time
	m       *metrics

	mu  sync.Mutex
	jwt cachedToken
}

func parseECKey(pemText string) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode([]byte(pemText))
	if blk == nil {
		return nil, errors.New("not a PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		ek, err2 := x509.ParseECPrivateKey(blk.Bytes)
		if err2 != nil {
			return nil, errors.New("not a PKCS#8 or SEC 1 EC key")
		}
		k = ek
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("not a P-256 EC key (an APNs .p8 key)")
	}
	return ek, nil
}

func newAPNs(cfg *APNsConfig, client *http.Client, refresh time.Duration, now func() time.Time, m *metrics) (*apnsProvider, error) {
	k, err := parseECKey(cfg.Key.Reveal())
	if err != nil {
		return nil, err
	}
	return &apnsProvider{cfg: cfg, key: k, client: client, refresh: refresh, now: now, m: m}, nil
}

// bearer returns the cached provider token, or mints one.
func (a *apnsProvider) bearer(force bool) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if !force && a.jwt.valid(now) {
		return a.jwt.value, nil
	}
	in, err := jwtSigningInput(map[string]string{"alg": "ES256", "kid": a.cfg.KeyID},
		map[string]any{"iss": a.cfg.TeamID, "iat": now.Unix()})
	if err != nil {
		return "", err
	}
	h := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, a.key, h[:])
	if err != nil {
		a.m.authTokens.WithLabelValues("apns", "error").Inc()
		return "", err
	}
	// JWS ES256: r and s as two 32-byte big-endian numbers, not ASN.1.
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	a.jwt = cachedToken{value: in + "." + b64.EncodeToString(sig), expires: now.Add(a.refresh)}
	a.m.authTokens.WithLabelValues("apns", "ok").Inc()
	return a.jwt.value, nil
}

// apnsPayload builds the JSON payload: aps (alert, badge, sound) and the
// app's data under "ll".
func apnsPayload(n *Notification) ([]byte, error) {
	aps := map[string]any{"alert": map[string]string{"title": n.Title, "body": n.Body}}
	if n.Badge != nil {
		aps["badge"] = *n.Badge
	}
	if n.Silent {
		aps["interruption-level"] = "passive"
	} else if n.Sound != "" {
		aps["sound"] = n.Sound
	}
	return json.Marshal(map[string]any{"aps": aps, "ll": n.Data})
}

func (a *apnsProvider) send(ctx context.Context, n *Notification) result {
	body, err := apnsPayload(n)
	if err != nil {
		return result{outcome: failed, err: err}
	}
	res := a.post(ctx, n, body, false)
	if res.outcome == retry && errors.Is(res.err, errProviderToken) {
		// Our JWT was refused (expired, or the key rotated): mint a fresh
		// one and try at once.
		res = a.post(ctx, n, body, true)
	}
	return res
}

var errProviderToken = errors.New("provider token refused")

func (a *apnsProvider) post(ctx context.Context, n *Notification, body []byte, fresh bool) result {
	tok, err := a.bearer(fresh)
	if err != nil {
		return result{outcome: retry, err: err}
	}
	host := a.cfg.Endpoint
	if n.Sandbox {
		host = a.cfg.SandboxEndpoint
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, host+"/3/device/"+url.PathEscape(n.Token), bytes.NewReader(body))
	if err != nil {
		return result{outcome: failed, err: err}
	}
	prio := "10"
	if n.Silent {
		prio = "5"
	}
	req.Header.Set("authorization", "bearer "+tok)
	req.Header.Set("apns-topic", a.cfg.Topic)
	req.Header.Set("apns-push-type", "alert")
	req.Header.Set("apns-priority", prio)
	req.Header.Set("apns-expiration", strconv.FormatInt(a.now().Add(a.cfg.Expiration.D()).Unix(), 10))
	req.Header.Set("content-type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return transportResult(err)
	}
	return classifyAPNs(resp.StatusCode, readBody(resp))
}

// classifyAPNs maps an APNs answer (status and {"reason": …}) to an outcome.
func classifyAPNs(status int, body []byte) result {
	if status == http.StatusOK {
		return result{outcome: delivered}
	}
	var e struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(body, &e)
	err := statusErr(status, e.Reason)
	switch {
	case status == http.StatusGone, e.Reason == "Unregistered", e.Reason == "BadDeviceToken", e.Reason == "DeviceTokenNotForTopic":
		return result{outcome: unregistered, err: err}
	case status == http.StatusForbidden && (e.Reason == "ExpiredProviderToken" || e.Reason == "InvalidProviderToken"):
		return result{outcome: retry, err: errors.Join(errProviderToken, err)}
	case status == http.StatusTooManyRequests, status >= 500:
		return result{outcome: retry, err: err}
	}
	return result{outcome: failed, err: err}
}
