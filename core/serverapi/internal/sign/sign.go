// Package sign is the server API's request signature: header parsing
// and checksums. It has no I/O, so it is fuzzed alone. (Replay protection
// is cluster-wide state, in serverapi/replay.go.)
package sign

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

// Request signing. Every request carries four headers:
//
//	X-Longlink-AppKey     the app's appkey
//	X-Longlink-Timestamp  unix seconds when the request was made
//	X-Longlink-Nonce      1-64 characters of A-Z a-z 0-9 _ -, never reused
//	X-Longlink-Checksum   lowercase hex HMAC-SHA256(app secret, S)
//
// where S = method "\n" request-target "\n" timestamp "\n" nonce "\n"
// lowercase hex SHA-256(body), and request-target is the path and query
// exactly as sent on the request line (e.g. /v1/users/alice?x=1).
// Requests whose timestamp is further than the window from the server's
// clock, or whose (appkey, nonce) was seen within the window, are rejected.

// Header names.
const (
	HeaderAppKey    = "X-Longlink-AppKey"
	HeaderTimestamp = "X-Longlink-Timestamp"
	HeaderNonce     = "X-Longlink-Nonce"
	HeaderChecksum  = "X-Longlink-Checksum"
)

// Headers are the parsed signing headers.
type Headers struct {
	AppKey    string
	Timestamp int64
	rawTS     string // as sent: the checksum covers the header's exact text
	Nonce     string
	checksum  []byte
}

// ValidToken reports whether s is 1-maxLen of A-Z a-z 0-9 _ -.
func ValidToken(s string, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Parse checks the headers' syntax; it never looks at secrets.
func Parse(h http.Header) (Headers, *imapi.Error) {
	var a Headers
	a.AppKey = h.Get(HeaderAppKey)
	if !ValidToken(a.AppKey, 64) {
		return a, imapi.Errorf(imapi.ErrUnauthorized, "missing or malformed %s", HeaderAppKey)
	}
	ts := h.Get(HeaderTimestamp)
	if len(ts) == 0 || len(ts) > 12 {
		return a, imapi.Errorf(imapi.ErrUnauthorized, "missing or malformed %s", HeaderTimestamp)
	}
	v, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || v <= 0 {
		return a, imapi.Errorf(imapi.ErrUnauthorized, "missing or malformed %s", HeaderTimestamp)
	}
	a.Timestamp, a.rawTS = v, ts
	a.Nonce = h.Get(HeaderNonce)
	if !ValidToken(a.Nonce, 64) {
		return a, imapi.Errorf(imapi.ErrUnauthorized, "missing or malformed %s", HeaderNonce)
	}
	cs := h.Get(HeaderChecksum)
	if len(cs) != 2*sha256.Size {
		return a, imapi.Errorf(imapi.ErrUnauthorized, "missing or malformed %s", HeaderChecksum)
	}
	a.checksum, err = hex.DecodeString(cs)
	if err != nil {
		return a, imapi.Errorf(imapi.ErrUnauthorized, "missing or malformed %s", HeaderChecksum)
	}
	return a, nil
}

// Checksum computes the signature of a request; app servers (and tests) use
// it to sign.
func Checksum(secret, method, target, timestamp, nonce string, body []byte) string {
	bh := sha256.Sum256(body)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(method + "\n" + target + "\n" + timestamp + "\n" + nonce + "\n"))
	m.Write([]byte(hex.EncodeToString(bh[:])))
	return hex.EncodeToString(m.Sum(nil))
}

// Sign sets the four signing headers on req for body.
func Sign(req *http.Request, appkey, secret, nonce string, now time.Time, body []byte) {
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set(HeaderAppKey, appkey)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderNonce, nonce)
	req.Header.Set(HeaderChecksum, Checksum(secret, req.Method, req.URL.RequestURI(), ts, nonce, body))
}

// Verify reports whether the request carries the checksum made with secret.
func Verify(secret, method, target string, a Headers, body []byte) bool {
	want, _ := hex.DecodeString(Checksum(secret, method, target, a.rawTS, a.Nonce, body))
	return hmac.Equal(want, a.checksum)
}
