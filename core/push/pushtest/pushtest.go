// Package pushtest runs local stand-ins for the push providers (APNs, FCM
// with its OAuth2 token endpoint, an app's push webhook) that check every
// request the way the real services would: transport, headers, the JWT
// signatures with the test keys, and the JSON shape. Tests point
// core/push's endpoints at them. No daemon imports it.
package pushtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/webhook"
)

// Received is one notification a stand-in accepted (or refused with an
// answer chosen by the test).
type Received struct {
	Provider string
	Token    string
	Title    string
	Body     string
	Badge    *int64
	Silent   bool
	Data     map[string]string
	Status   int // what the stand-in answered
}

// Answer chooses the status of the n-th request (1-based) for a token;
// 0 means 200.
type Answer func(token string, n int) int

// recorder is what every stand-in shares.
type recorder struct {
	t      testing.TB
	mu     sync.Mutex
	counts map[string]int
	answer Answer
	C      chan Received
}

func newRecorder(t testing.TB) recorder {
	return recorder{t: t, counts: map[string]int{}, C: make(chan Received, 256)}
}

// SetAnswer sets the answers; nil answers 200 to everything.
func (r *recorder) SetAnswer(a Answer) {
	r.mu.Lock()
	r.answer = a
	r.mu.Unlock()
}

func (r *recorder) status(token string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[token]++
	if r.answer == nil {
		return http.StatusOK
	}
	if s := r.answer(token, r.counts[token]); s != 0 {
		return s
	}
	return http.StatusOK
}

// Requests is how many requests reached the stand-in for token.
func (r *recorder) Requests(token string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[token]
}

func (r *recorder) fail(w http.ResponseWriter, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.t.Errorf("push provider stand-in: %s", msg)
	http.Error(w, msg, http.StatusBadRequest)
}

var b64 = base64.RawURLEncoding

// splitJWT decodes a compact JWS's header and claims and returns the
// signing input and the signature.
func splitJWT(tok string) (hdr, claims map[string]any, input string, sig []byte, err error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, nil, "", nil, fmt.Errorf("JWT with %d parts", len(parts))
	}
	hb, err1 := b64.DecodeString(parts[0])
	cb, err2 := b64.DecodeString(parts[1])
	sig, err3 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, nil, "", nil, fmt.Errorf("JWT not base64url")
	}
	if json.Unmarshal(hb, &hdr) != nil || json.Unmarshal(cb, &claims) != nil {
		return nil, nil, "", nil, fmt.Errorf("JWT header or claims not JSON")
	}
	return hdr, claims, parts[0] + "." + parts[1], sig, nil
}

// APNs is an HTTP/2 TLS stand-in for api.push.apple.com.
type APNs struct {
	recorder
	Srv    *httptest.Server
	Key    *ecdsa.PrivateKey
	KeyPEM string
	TeamID string
	KeyID  string
	Topic  string
	// JWTs counts the distinct provider tokens seen.
	jwts map[string]bool
}

// NewAPNs starts the stand-in with a fresh P-256 key (the .p8 key).
func NewAPNs(t testing.TB) *APNs {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	a := &APNs{recorder: newRecorder(t), Key: k, TeamID: "TEAM123456", KeyID: "KEY1234567", Topic: "com.example.chat",
		KeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), jwts: map[string]bool{}}
	a.Srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	a.Srv.EnableHTTP2 = true
	a.Srv.StartTLS()
	t.Cleanup(a.Srv.Close)
	return a
}

// Client trusts the stand-ins' certificate and speaks HTTP/2.
func (a *APNs) Client() *http.Client { return a.Srv.Client() }

// ProviderTokens is how many distinct JWTs were used.
func (a *APNs) ProviderTokens() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.jwts)
}

func (a *APNs) serve(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		a.fail(w, "APNs needs HTTP/2, got %s", r.Proto)
		return
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if r.Method != http.MethodPost || !ok || token == "" {
		a.fail(w, "%s %s: want POST /3/device/<token>", r.Method, r.URL.Path)
		return
	}
	if err := a.checkJWT(r.Header.Get("authorization")); err != nil {
		a.fail(w, "authorization: %v", err)
		return
	}
	if got := r.Header.Get("apns-topic"); got != a.Topic {
		a.fail(w, "apns-topic %q", got)
		return
	}
	if got := r.Header.Get("apns-push-type"); got != "alert" {
		a.fail(w, "apns-push-type %q", got)
		return
	}
	prio := r.Header.Get("apns-priority")
	if prio != "10" && prio != "5" {
		a.fail(w, "apns-priority %q", prio)
		return
	}
	if exp, err := strconv.ParseInt(r.Header.Get("apns-expiration"), 10, 64); err != nil || exp <= time.Now().Unix() {
		a.fail(w, "apns-expiration %q", r.Header.Get("apns-expiration"))
		return
	}
	var p struct {
		APS struct {
			Alert struct {
				Title string `json:"title"`
				Body  string `json:"body"`
			} `json:"alert"`
			Badge        *int64 `json:"badge"`
			Sound        string `json:"sound"`
			Interruption string `json:"interruption-level"`
		} `json:"aps"`
		LL map[string]string `json:"ll"`
	}
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &p); err != nil || p.APS.Alert.Body == "" {
		a.fail(w, "payload %s", body)
		return
	}
	silent := prio == "5"
	if silent != (p.APS.Sound == "") {
		a.fail(w, "priority %s with sound %q", prio, p.APS.Sound)
		return
	}
	st := a.status(token)
	a.C <- Received{Provider: "apns", Token: token, Title: p.APS.Alert.Title, Body: p.APS.Alert.Body, Badge: p.APS.Badge,
		Silent: silent, Data: p.LL, Status: st}
	w.Header().Set("apns-id", "00000000-0000-0000-0000-000000000001")
	if st == http.StatusOK {
		return
	}
	reason := map[int]string{http.StatusGone: "Unregistered", http.StatusTooManyRequests: "TooManyRequests",
		http.StatusServiceUnavailable: "ServiceUnavailable", http.StatusBadRequest: "BadTopic"}[st]
	w.WriteHeader(st)
	_ = json.NewEncoder(w).Encode(map[string]any{"reason": reason, "timestamp": time.Now().UnixMilli()})
}

func (a *APNs) checkJWT(h string) error {
	tok, ok := strings.CutPrefix(h, "bearer ")
	if !ok {
		return fmt.Errorf("not a bearer token")
	}
	hdr, claims, in, sig, err := splitJWT(tok)
	if err != nil {
		return err
	}
	if hdr["alg"] != "ES256" || hdr["kid"] != a.KeyID {
		return fmt.Errorf("header %v", hdr)
	}
	iat, _ := claims["iat"].(float64)
	if claims["iss"] != a.TeamID || time.Since(time.Unix(int64(iat), 0)) > time.Hour || time.Until(time.Unix(int64(iat), 0)) > time.Minute {
		return fmt.Errorf("claims %v", claims)
	}
	if len(sig) != 64 {
		return fmt.Errorf("ES256 signature of %d bytes", len(sig))
	}
	d := sha256.Sum256([]byte(in))
	if !ecdsa.Verify(&a.Key.PublicKey, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return fmt.Errorf("ES256 signature does not verify")
	}
	a.mu.Lock()
	a.jwts[tok] = true
	a.mu.Unlock()
	return nil
}

// FCM is a stand-in for fcm.googleapis.com and Google's OAuth2 token
// endpoint (/token on the same server).
type FCM struct {
	recorder
	Srv         *httptest.Server
	Key         *rsa.PrivateKey
	Project     string
	ClientEmail string
	issued      map[string]bool
	Grants      int
}

// NewFCM starts the stand-in (TLS, HTTP/2) with a fresh RSA key.
func NewFCM(t testing.TB) *FCM {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &FCM{recorder: newRecorder(t), Key: k, Project: "longlink-test", ClientEmail: "push@longlink-test.iam.gserviceaccount.com",
		issued: map[string]bool{}}
	f.Srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.Srv.EnableHTTP2 = true
	f.Srv.StartTLS()
	t.Cleanup(f.Srv.Close)
	return f
}

// TokenURI is the stand-in's OAuth2 token endpoint.
func (f *FCM) TokenURI() string { return f.Srv.URL + "/token" }

// Credentials is a service account JSON for the stand-in.
func (f *FCM) Credentials() string {
	der, _ := x509.MarshalPKCS8PrivateKey(f.Key)
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": f.Project, "private_key_id": "kid-1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": f.ClientEmail, "token_uri": f.TokenURI(),
	})
	return string(b)
}

func (f *FCM) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		f.grant(w, r)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/projects/"+f.Project+"/messages:send" {
		f.fail(w, "%s %s", r.Method, r.URL.Path)
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	ok := f.issued[tok]
	f.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":401,"status":"UNAUTHENTICATED","message":"bad access token"}}`))
		f.t.Errorf("fcm stand-in: a send with an access token it never issued")
		return
	}
	var m struct {
		Message struct {
			Token        string            `json:"token"`
			Notification map[string]string `json:"notification"`
			Data         map[string]string `json:"data"`
			Android      struct {
				Priority     string `json:"priority"`
				Notification struct {
					Sound string `json:"sound"`
					Count *int64 `json:"notification_count"`
				} `json:"notification"`
			} `json:"android"`
			APNs struct {
				Headers map[string]string `json:"headers"`
				Payload struct {
					APS struct {
						Badge *int64 `json:"badge"`
					} `json:"aps"`
				} `json:"payload"`
			} `json:"apns"`
		} `json:"message"`
	}
	body, _ := io.ReadAll(r.Body)
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(&m); err != nil || m.Message.Token == "" || m.Message.Notification["body"] == "" {
		f.fail(w, "message %s", body)
		return
	}
	mm := m.Message
	silent := mm.Android.Priority == "normal"
	if (mm.Android.Priority != "high" && !silent) || (silent != (mm.APNs.Headers["apns-priority"] == "5")) {
		f.fail(w, "priorities android %q apns %q", mm.Android.Priority, mm.APNs.Headers["apns-priority"])
		return
	}
	if (mm.Android.Notification.Count == nil) != (mm.APNs.Payload.APS.Badge == nil) {
		f.fail(w, "badge in one override only: %s", body)
		return
	}
	st := f.status(mm.Token)
	f.C <- Received{Provider: "fcm", Token: mm.Token, Title: mm.Notification["title"], Body: mm.Notification["body"],
		Badge: mm.Android.Notification.Count, Silent: silent, Data: mm.Data, Status: st}
	if st == http.StatusOK {
		_ = json.NewEncoder(w).Encode(map[string]string{"name": "projects/" + f.Project + "/messages/1"})
		return
	}
	e := fcmErrors[st] // status, errorCode
	w.WriteHeader(st)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": st, "status": e[0], "message": "stand-in",
		"details": []map[string]string{{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": e[1]}}}})
}

// fcmErrors are FCM's error status and errorCode for a few HTTP statuses.
var fcmErrors = map[int][2]string{
	http.StatusNotFound:           {"NOT_FOUND", "UNREGISTERED"},
	http.StatusTooManyRequests:    {"RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"},
	http.StatusServiceUnavailable: {"UNAVAILABLE", "UNAVAILABLE"},
	http.StatusBadRequest:         {"INVALID_ARGUMENT", "INVALID_ARGUMENT"},
}

// grant checks a JWT-bearer grant (RFC 7523) signed with the service
// account's key and issues an access token.
func (f *FCM) grant(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		f.fail(w, "token request: %v", err)
		return
	}
	if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		f.fail(w, "grant_type %q", r.PostForm.Get("grant_type"))
		return
	}
	hdr, claims, in, sig, err := splitJWT(r.PostForm.Get("assertion"))
	if err != nil {
		f.fail(w, "assertion: %v", err)
		return
	}
	d := sha256.Sum256([]byte(in))
	if hdr["alg"] != "RS256" || rsa.VerifyPKCS1v15(&f.Key.PublicKey, crypto.SHA256, d[:], sig) != nil {
		f.fail(w, "assertion signature (header %v)", hdr)
		return
	}
	iat, _ := claims["iat"].(float64)
	exp, _ := claims["exp"].(float64)
	if claims["iss"] != f.ClientEmail || claims["aud"] != f.TokenURI() || claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging" ||
		exp-iat > 3600 || exp <= float64(time.Now().Unix()) {
		f.fail(w, "assertion claims %v", claims)
		return
	}
	f.mu.Lock()
	f.Grants++
	tok := fmt.Sprintf("ya29.stand-in-%d", f.Grants)
	f.issued[tok] = true
	f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "expires_in": 3599, "token_type": "Bearer"})
}

// Hook is an app's push webhook: it verifies the signature with Secret.
type Hook struct {
	recorder
	Srv    *httptest.Server
	Secret string
}

// NewHook starts the stand-in.
func NewHook(t testing.TB, secret string) *Hook {
	h := &Hook{recorder: newRecorder(t), Secret: secret}
	h.Srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Srv.Close)
	return h
}

func (h *Hook) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := webhook.Verify(h.Secret, r.Header.Get(webhook.SignatureHeader), body); err != nil {
		h.fail(w, "signature: %v", err)
		return
	}
	var p struct {
		Kind   string            `json:"kind"`
		ID     string            `json:"id"`
		Token  string            `json:"token"`
		Title  string            `json:"title"`
		Body   string            `json:"body"`
		Badge  *int64            `json:"badge"`
		Silent bool              `json:"silent"`
		Data   map[string]string `json:"data"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Kind != "push" || p.Token == "" || p.ID == "" ||
		r.Header.Get(webhook.EventIDHeader) != p.ID {
		h.fail(w, "payload %s", body)
		return
	}
	st := h.status(p.Token)
	h.C <- Received{Provider: "webhook", Token: p.Token, Title: p.Title, Body: p.Body, Badge: p.Badge, Silent: p.Silent, Data: p.Data, Status: st}
	w.WriteHeader(st)
}
