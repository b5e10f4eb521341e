package serverapi

import (
	"net/http"
	"time"

	"github.com/longlink/longlink/core/serverapi/internal/sign"
)

// Request signing (the scheme is specified in internal/sign and the README):
// four headers carry the appkey, a unix-seconds timestamp, a nonce and
// HMAC-SHA256(app secret, method "\n" request-target "\n" timestamp "\n"
// nonce "\n" hex SHA-256(body)).
const (
	HeaderAppKey    = sign.HeaderAppKey
	HeaderTimestamp = sign.HeaderTimestamp
	HeaderNonce     = sign.HeaderNonce
	HeaderChecksum  = sign.HeaderChecksum
)

// Checksum computes the signature of a request; app servers use it to sign.
func Checksum(secret, method, target, timestamp, nonce string, body []byte) string {
	return sign.Checksum(secret, method, target, timestamp, nonce, body)
}

// Sign sets the four signing headers on req for body.
func Sign(req *http.Request, appkey, secret, nonce string, now time.Time, body []byte) {
	sign.Sign(req, appkey, secret, nonce, now, body)
}
