package push

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// fcmScope is the OAuth2 scope of FCM sends.
const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// serviceAccount is the part of a Google service account key file we use.
type serviceAccount struct {
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`

	key *rsa.PrivateKey
}

func parseServiceAccount(text string, cfg *FCMConfig) (*serviceAccount, error) {
	var sa serviceAccount
	if err := json.Unmarshal([]byte(text), &sa); err != nil {
		return nil, fmt.Errorf("not a service account JSON: %v", err)
	}
	if cfg.TokenURI != "" {
		sa.TokenURI = cfg.TokenURI
	}
	if cfg.ProjectID != "" {
		sa.ProjectID = cfg.ProjectID
	}
	if sa.ProjectID == "" || sa.ClientEmail == "" || sa.TokenURI == "" {
		return nil, errors.New("project_id, client_email and token_uri are required")
	}
	blk, _ := pem.Decode([]byte(sa.PrivateKey))
	if blk == nil {
		return nil, errors.New("private_key: not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		rk, err2 := x509.ParsePKCS1PrivateKey(blk.Bytes)
		if err2 != nil {
			return nil, errors.New("private_key: not a PKCS#8 or PKCS#1 RSA key")
		}
		k = rk
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("private_key: not an RSA key")
	}
	sa.key = rk
	return &sa, nil
}

// fcmProvider sends through FCM HTTP v1 with an OAuth2 access token from
// the service account's JWT-bearer grant (RFC 7523, RS256), cached until
// shortly before it expires.
type fcmProvider struct {
	cfg     *FCMConfig
	sa      *serviceAccount
	client  *http.Client
	refresh time.Duration
	now     func() time.Time
	m       *metrics

	mu     sync.Mutex
	access cachedToken
}

func newFCM(cfg *FCMConfig, client *http.Client, refresh time.Duration, now func() time.Time, m *metrics) (*fcmProvider, error) {
	sa, err := parseServiceAccount(cfg.Credentials.Reveal(), cfg)
	if err != nil {
		return nil, err
	}
	return &fcmProvider{cfg: cfg, sa: sa, client: client, refresh: refresh, now: now, m: m}, nil
}

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	TokenType   string `json:"token_type"`
}

func parseTokenResponse(body []byte) (tokenResponse, error) {
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return tokenResponse{}, fmt.Errorf("token response: %w", err)
	}
	if tr.AccessToken == "" || len(tr.AccessToken) > 4096 {
		return tokenResponse{}, errors.New("token response: no usable access_token")
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return tokenResponse{}, fmt.Errorf("token response: token_type %q", tr.TokenType)
	}
	if tr.ExpiresIn <= 0 {
		tr.ExpiresIn = 3600
	}
	return tr, nil
}

// bearer returns the cached access token, or fetches a new one.
func (f *fcmProvider) bearer(ctx context.Context, force bool) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if !force && f.access.valid(now) {
		return f.access.value, nil
	}
	tok, ttl, err := f.fetch(ctx, now)
	if err != nil {
		f.m.authTokens.WithLabelValues("fcm", "error").Inc()
		return "", err
	}
	f.m.authTokens.WithLabelValues("fcm", "ok").Inc()
	f.access = cachedToken{value: tok, expires: now.Add(min(ttl-time.Minute, f.refresh))}
	return tok, nil
}

func (f *fcmProvider) fetch(ctx context.Context, now time.Time) (string, time.Duration, error) {
	hdr := map[string]string{"alg": "RS256", "typ": "JWT"}
	if f.sa.PrivateKeyID != "" {
		hdr["kid"] = f.sa.PrivateKeyID
	}
	in, err := jwtSigningInput(hdr, map[string]any{
		"iss": f.sa.ClientEmail, "scope": fcmScope, "aud": f.sa.TokenURI,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	if err != nil {
		return "", 0, err
	}
	h := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, f.sa.key, crypto.SHA256, h[:])
	if err != nil {
		return "", 0, err
	}
	form := url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
		"assertion":  {in + "." + b64.EncodeToString(sig)},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.sa.TokenURI, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := f.client.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("token endpoint: %w", err)
	}
	body := readBody(resp)
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("token endpoint: status %d", resp.StatusCode)
	}
	tr, err := parseTokenResponse(body)
	if err != nil {
		return "", 0, err
	}
	return tr.AccessToken, time.Duration(tr.ExpiresIn) * time.Second, nil
}

// fcmMessage builds the HTTP v1 request body: the token, the notification,
// the data, and Android and APNs overrides (priority, sound, badge).
func fcmMessage(n *Notification) ([]byte, error) {
	androidPrio, apnsPrio := "high", "10"
	androidNote := map[string]any{}
	aps := map[string]any{}
	if n.Silent {
		androidPrio, apnsPrio = "normal", "5"
		aps["interruption-level"] = "passive"
	} else if n.Sound != "" {
		androidNote["sound"] = n.Sound
		aps["sound"] = n.Sound
	}
	if n.Badge != nil {
		androidNote["notification_count"] = *n.Badge
		aps["badge"] = *n.Badge
	}
	msg := map[string]any{
		"token":        n.Token,
		"notification": map[string]string{"title": n.Title, "body": n.Body},
		"data":         n.Data,
		"android":      map[string]any{"priority": androidPrio, "notification": androidNote},
		"apns": map[string]any{
			"headers": map[string]string{"apns-priority": apnsPrio},
			"payload": map[string]any{"aps": aps},
		},
	}
	return json.Marshal(map[string]any{"message": msg})
}

func (f *fcmProvider) send(ctx context.Context, n *Notification) result {
	body, err := fcmMessage(n)
	if err != nil {
		return result{outcome: failed, err: err}
	}
	res := f.post(ctx, body, false)
	if res.outcome == retry && errors.Is(res.err, errProviderToken) {
		res = f.post(ctx, body, true)
	}
	return res
}

func (f *fcmProvider) post(ctx context.Context, body []byte, fresh bool) result {
	tok, err := f.bearer(ctx, fresh)
	if err != nil {
		return result{outcome: retry, err: err}
	}
	u := f.cfg.Endpoint + "/v1/projects/" + url.PathEscape(f.sa.ProjectID) + "/messages:send"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return result{outcome: failed, err: err}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return transportResult(err)
	}
	return classifyFCM(resp.StatusCode, readBody(resp))
}

// classifyFCM maps an FCM v1 answer to an outcome: UNREGISTERED (404) is a
// dead token; 401 means our access token; 429 and 5xx are retried.
func classifyFCM(status int, body []byte) result {
	if status == http.StatusOK {
		return result{outcome: delivered}
	}
	var e struct {
		Error struct {
			Status  string `json:"status"`
			Message string `json:"message"`
			Details []struct {
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	code := e.Error.Status
	for _, d := range e.Error.Details {
		if d.ErrorCode != "" {
			code = d.ErrorCode
		}
	}
	err := statusErr(status, code)
	switch {
	case code == "UNREGISTERED", status == http.StatusNotFound:
		return result{outcome: unregistered, err: err}
	case status == http.StatusUnauthorized:
		return result{outcome: retry, err: errors.Join(errProviderToken, err)}
	case status == http.StatusTooManyRequests, status >= 500, code == "QUOTA_EXCEEDED", code == "UNAVAILABLE", code == "INTERNAL":
		return result{outcome: retry, err: err}
	}
	return result{outcome: failed, err: fmt.Errorf("%w (%s)", err, strconv.Quote(truncate(e.Error.Message, 200)))}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
