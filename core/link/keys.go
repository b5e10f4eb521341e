package link

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"

	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"
)

// KeyPair is a server static key with its id.
type KeyPair struct {
	ID      string
	Private []byte // 32 bytes
	Public  []byte // 32 bytes
}

// GenerateKey makes a new X25519 key pair.
func GenerateKey(id string) (KeyPair, error) {
	if err := ValidKeyID(id); err != nil {
		return KeyPair{}, err
	}
	k, err := noise.DH25519.GenerateKeypair(rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("link: generate key: %w", err)
	}
	return KeyPair{ID: id, Private: k.Private, Public: k.Public}, nil
}

// KeyPairFromPrivate rebuilds a key pair from its private key.
func KeyPairFromPrivate(id string, private []byte) (KeyPair, error) {
	if err := ValidKeyID(id); err != nil {
		return KeyPair{}, err
	}
	if len(private) != 32 {
		return KeyPair{}, fmt.Errorf("link: key %q: private key has %d bytes, want 32", id, len(private))
	}
	pub, err := curve25519.X25519(private, curve25519.Basepoint)
	if err != nil {
		return KeyPair{}, fmt.Errorf("link: key %q: %w", id, err)
	}
	return KeyPair{ID: id, Private: append([]byte(nil), private...), Public: pub}, nil
}

// EncodeKey writes a key as standard base64.
func EncodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// DecodeKey parses a base64 key of 32 bytes.
func DecodeKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("link: decode key: %w", err)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("link: decode key: %d bytes, want 32", len(b))
	}
	return b, nil
}

// ValidKeyID checks a key id: 1..64 characters of [A-Za-z0-9._-].
func ValidKeyID(id string) error {
	if len(id) == 0 || len(id) > 64 {
		return fmt.Errorf("link: key id %q: length must be 1..64", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("link: key id %q: invalid character %q", id, c)
		}
	}
	return nil
}

// KeyRing holds the server's live static keys by id. It is safe for
// concurrent use; keys can be added and removed while serving (rotation).
type KeyRing struct {
	mu   sync.RWMutex
	keys map[string]ringKey
}

// ringKey is a static key with its private half parsed once (x25519DH).
type ringKey struct {
	dh     noise.DHKey
	parsed *ecdh.PrivateKey
}

// NewKeyRing returns a ring holding keys.
func NewKeyRing(keys ...KeyPair) *KeyRing {
	r := &KeyRing{keys: make(map[string]ringKey, len(keys))}
	for _, k := range keys {
		r.Add(k)
	}
	return r
}

// Add adds or replaces a key.
func (r *KeyRing) Add(k KeyPair) {
	rk := ringKey{dh: noise.DHKey{Private: k.Private, Public: k.Public}}
	// A key that does not parse is kept unparsed: its handshakes parse it
	// each time, and fail as they did.
	rk.parsed, _ = ecdh.X25519().NewPrivateKey(k.Private)
	r.mu.Lock()
	r.keys[k.ID] = rk
	r.mu.Unlock()
}

// Remove retires a key: new handshakes naming it fail; established
// connections are not affected.
func (r *KeyRing) Remove(id string) {
	r.mu.Lock()
	delete(r.keys, id)
	r.mu.Unlock()
}

// IDs lists the live key ids.
func (r *KeyRing) IDs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := make([]string, 0, len(r.keys))
	for id := range r.keys {
		ids = append(ids, id)
	}
	return ids
}

func (r *KeyRing) get(id string) (ringKey, bool) {
	r.mu.RLock()
	k, ok := r.keys[id]
	r.mu.RUnlock()
	return k, ok
}
