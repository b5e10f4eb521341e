// Package logintoken is the signed login token format: a token that the core
// issues and an edge can check without asking the core, so that an edge can
// answer a client's login itself (core/link/LINK.md section 7).
//
// A signed token is
//
//	v1.<key id>.<base64url payload>.<base64url Ed25519 signature>
//
// where the signature covers the text before its last dot, and the payload is
//
//	expiry (8, unix seconds, big endian) | nonce (16) |
//	len (1) appkey | len (1) account
//
// The nonce makes every token distinct, so the core can store and revoke each
// one by its hash as it does opaque tokens. The core stays authoritative: a
// valid signature only says that the core issued the token and until when,
// not that it is still valid (revoked tokens, disabled users).
package logintoken

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// prefix marks a signed token; anything else is an opaque token.
const prefix = "v1."

const (
	nonceLen = 16
	// maxNameLen is the longest appkey or account (imapi.ValidName).
	maxNameLen = 64
	// maxKeyIDLen bounds a key id.
	maxKeyIDLen = 32
	// MaxLen is the longest signed token: a 32-character key id, the
	// longest payload and the signature.
	MaxLen = len(prefix) + maxKeyIDLen + 1 + (8+nonceLen+2+2*maxNameLen+2)/3*4 + 1 + (ed25519.SignatureSize+2)/3*4
)

var b64 = base64.RawURLEncoding.Strict()

// Errors of Verify. ErrUnknownKey and ErrExpired are worth telling apart in
// metrics; everything else is ErrInvalid.
var (
	ErrInvalid    = errors.New("logintoken: invalid token")
	ErrUnknownKey = errors.New("logintoken: unknown key id")
	ErrExpired    = errors.New("logintoken: token expired")
)

// Claims are what a signed token says.
type Claims struct {
	AppKey  string
	Account string
	Expiry  time.Time // whole seconds
}

// IsSigned reports whether tok has the signed format's prefix (it may still
// be invalid). Opaque tokens are hex and never start with it.
func IsSigned(tok string) bool { return strings.HasPrefix(tok, prefix) }

// ValidKeyID checks a token key id: 1..32 characters of [A-Za-z0-9_-] (no
// dot: the dot separates the token's parts).
func ValidKeyID(id string) error {
	if len(id) == 0 || len(id) > maxKeyIDLen {
		return fmt.Errorf("logintoken: key id %q: length must be 1..%d", id, maxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("logintoken: key id %q: invalid character %q", id, c)
		}
	}
	return nil
}

// parsed is a token split into its parts, signature not yet checked.
type parsed struct {
	keyID  string
	signed string // the text the signature covers
	sig    []byte
	claims Claims
}

// parse decodes a signed token. It checks the shape only.
func parse(tok string) (parsed, error) {
	var p parsed
	if len(tok) > MaxLen || !IsSigned(tok) {
		return p, ErrInvalid
	}
	rest := tok[len(prefix):]
	kid, rest, ok := strings.Cut(rest, ".")
	if !ok || ValidKeyID(kid) != nil {
		return p, ErrInvalid
	}
	payload, sigText, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sigText, ".") {
		return p, ErrInvalid
	}
	sig, err := b64.DecodeString(sigText)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return p, ErrInvalid
	}
	body, err := b64.DecodeString(payload)
	if err != nil {
		return p, ErrInvalid
	}
	c, err := decodePayload(body)
	if err != nil {
		return p, err
	}
	p.keyID, p.sig, p.claims = kid, sig, c
	p.signed = tok[:len(tok)-len(sigText)-1]
	return p, nil
}

func decodePayload(b []byte) (Claims, error) {
	var c Claims
	if len(b) < 8+nonceLen+2 {
		return c, ErrInvalid
	}
	exp := binary.BigEndian.Uint64(b)
	if exp > 1<<40 { // far beyond any real expiry; keeps time.Unix sane
		return c, ErrInvalid
	}
	b = b[8+nonceLen:]
	name := func() (string, bool) {
		if len(b) < 1 || int(b[0]) > maxNameLen || len(b) < 1+int(b[0]) || b[0] == 0 {
			return "", false
		}
		s := string(b[1 : 1+b[0]])
		b = b[1+len(s):]
		return s, true
	}
	appkey, ok1 := name()
	account, ok2 := name()
	if !ok1 || !ok2 || len(b) != 0 {
		return c, ErrInvalid
	}
	return Claims{AppKey: appkey, Account: account, Expiry: time.Unix(int64(exp), 0)}, nil
}

// Signer issues signed tokens with one private key (the core's current token
// key).
type Signer struct {
	id   string
	priv ed25519.PrivateKey
}

// NewSigner makes a signer from a key id and a 32-byte Ed25519 seed.
func NewSigner(id string, seed []byte) (*Signer, error) {
	if err := ValidKeyID(id); err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("logintoken: private key: %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	return &Signer{id: id, priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// KeyID is the id tokens name.
func (s *Signer) KeyID() string { return s.id }

// PublicKey is what edges need to verify this signer's tokens.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// Issue returns a new token for appkey and account, valid until expiry.
// Names must be 1..64 bytes (imapi.ValidName checks more).
func (s *Signer) Issue(appkey, account string, expiry time.Time) (string, error) {
	if len(appkey) == 0 || len(appkey) > maxNameLen || len(account) == 0 || len(account) > maxNameLen {
		return "", fmt.Errorf("logintoken: appkey and account must be 1..%d bytes", maxNameLen)
	}
	body := make([]byte, 8+nonceLen, 8+nonceLen+2+len(appkey)+len(account))
	binary.BigEndian.PutUint64(body, uint64(max(expiry.Unix(), 0)))
	if _, err := rand.Read(body[8 : 8+nonceLen]); err != nil {
		return "", err
	}
	body = append(body, byte(len(appkey)))
	body = append(body, appkey...)
	body = append(body, byte(len(account)))
	body = append(body, account...)
	signed := prefix + s.id + "." + b64.EncodeToString(body)
	return signed + "." + b64.EncodeToString(ed25519.Sign(s.priv, []byte(signed))), nil
}

// Verifier checks signed tokens against a ring of public keys by id; several
// keys live side by side while the core's signing key rotates.
type Verifier struct {
	keys map[string]ed25519.PublicKey
}

// NewVerifier returns an empty ring.
func NewVerifier() *Verifier { return &Verifier{keys: map[string]ed25519.PublicKey{}} }

// Add puts a public key in the ring.
func (v *Verifier) Add(id string, pub []byte) error {
	if err := ValidKeyID(id); err != nil {
		return err
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("logintoken: public key: %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if _, dup := v.keys[id]; dup {
		return fmt.Errorf("logintoken: key id %q listed twice", id)
	}
	v.keys[id] = ed25519.PublicKey(append([]byte(nil), pub...))
	return nil
}

// Len is the number of keys in the ring.
func (v *Verifier) Len() int { return len(v.keys) }

// Verify checks tok's format, key and signature, and that it has not expired
// at now. It returns the token's claims.
func (v *Verifier) Verify(tok string, now time.Time) (Claims, error) {
	p, err := parse(tok)
	if err != nil {
		return Claims{}, err
	}
	pub, ok := v.keys[p.keyID]
	if !ok {
		return Claims{}, ErrUnknownKey
	}
	if !ed25519.Verify(pub, []byte(p.signed), p.sig) {
		return Claims{}, ErrInvalid
	}
	if !now.Before(p.claims.Expiry) {
		return Claims{}, ErrExpired
	}
	return p.claims, nil
}

// GenerateKey returns a fresh Ed25519 key pair as its seed and public key.
func GenerateKey() (seed, pub []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	return priv.Seed(), pub, nil
}

// EncodeKey writes a key (seed or public key) as standard base64, like Link
// keys.
func EncodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// DecodeKey parses a base64 key of 32 bytes (a seed or a public key).
func DecodeKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("logintoken: decode key: %w", err)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("logintoken: decode key: %d bytes, want 32", len(b))
	}
	return b, nil
}
