package service

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// SystemAccount is the sender of system notifications sent through the
// server API. It cannot be a user account ('@' is not allowed in accounts),
// so nobody can log in as it.
const SystemAccount = "@system"

// ValidName reports whether s is a subject-safe name: 1-64 characters of
// A-Z a-z 0-9 _ -. Appkeys, accounts, group ids and cluster names use it, so
// they can be NATS subject tokens and parts of conversation ids.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
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

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// newID returns a time-ordered unique id: 48 bits of milliseconds and 72
// random bits, base32 (24 characters).
func newID(now time.Time) string {
	var b [15]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return idEncoding.EncodeToString(b[:])
}

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
