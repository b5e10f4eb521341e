package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// NewToken returns a fresh random login token (256 bits, hex).
func NewToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// HashToken is what the store keeps instead of a token. Tokens are 256-bit
// random values, so a plain SHA-256 is enough (no password stretching).
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// maxTokenLen bounds a login token: opaque tokens are 64 characters, signed
// ones at most logintoken.MaxLen.
const maxTokenLen = 512

// newSessionID returns 128 random bits as 32 lowercase hex characters (the
// form an edge's session ids must have too: validSessionID).
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validSessionID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
