// Package turncred issues and checks REST-style, time-limited TURN
// credentials (draft-uberti-behave-turn-rest, as coturn's use-auth-secret
// expects):
//
//	username = "<expiry unix seconds>:<appkey>:<account>"
//	password = base64(HMAC-SHA1(secret, username))
//
// so that any standard TURN client (browsers, turnutils_uclient, pion) can use
// them with the long-term credential mechanism. Several secrets can be live at
// once: new credentials are signed with the first (current) secret, and a
// credential signed with any live secret is accepted until it expires, so an
// operator rotates a secret by adding the new one in front, waiting for the
// longest credential lifetime, then removing the old one.
package turncred

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what the TURN REST scheme and coturn use.
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/pkg/config"
)

// MaxUsernameLen is the longest username accepted; STUN's USERNAME
// attribute is limited to 513 bytes (RFC 8489 section 14.3).
const MaxUsernameLen = 512

// Sentinel errors; callers branch on them to count refusals by reason.
var (
	ErrMalformed   = errors.New("turncred: malformed username")
	ErrExpired     = errors.New("turncred: credential expired")
	ErrBadPassword = errors.New("turncred: password does not match any live secret")
	ErrNoSecret    = errors.New("turncred: no secret configured")
)

// Secret is one shared secret with an id that operators and the LBS use to
// name it during rotation. The value never appears in logs.
type Secret struct {
	ID    string        `yaml:"id"`
	Value config.Secret `yaml:"secret"`
}

// Username is a parsed credential username.
type Username struct {
	Expiry  time.Time
	AppKey  string
	Account string
}

// String formats the username as "expiry:appkey:account".
func (u Username) String() string {
	return strconv.FormatInt(u.Expiry.Unix(), 10) + ":" + u.AppKey + ":" + u.Account
}

// User is the quota and rate-limit identity of the username: "appkey:account".
// It stays the same when a client renews its credential, so a Refresh with a
// new credential still matches the allocation.
func (u Username) User() string { return u.AppKey + ":" + u.Account }

// ParseUsername parses "expiry:appkey:account". The appkey may not contain a
// colon; the account is everything after the second colon. It does not check
// the expiry against the clock.
func ParseUsername(s string) (Username, error) {
	if len(s) == 0 || len(s) > MaxUsernameLen {
		return Username{}, fmt.Errorf("%w: length %d", ErrMalformed, len(s))
	}
	exp, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Username{}, fmt.Errorf("%w: no expiry", ErrMalformed)
	}
	appkey, account, ok := strings.Cut(rest, ":")
	if !ok || appkey == "" || account == "" {
		return Username{}, fmt.Errorf("%w: want expiry:appkey:account", ErrMalformed)
	}
	if len(exp) > 12 || exp == "" {
		return Username{}, fmt.Errorf("%w: expiry", ErrMalformed)
	}
	for i := 0; i < len(exp); i++ {
		if exp[i] < '0' || exp[i] > '9' {
			return Username{}, fmt.Errorf("%w: expiry is not unix seconds", ErrMalformed)
		}
	}
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return Username{}, fmt.Errorf("%w: expiry: %v", ErrMalformed, err)
	}
	for _, part := range []string{appkey, account} {
		for i := 0; i < len(part); i++ {
			if c := part[i]; c < 0x21 || c == 0x7f {
				return Username{}, fmt.Errorf("%w: control or space character", ErrMalformed)
			}
		}
	}
	return Username{Expiry: time.Unix(sec, 0), AppKey: appkey, Account: account}, nil
}

// Password is base64(HMAC-SHA1(secret, username)).
func Password(secret, username string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Credential is what a client receives.
type Credential struct {
	Username string
	Password string
	Expires  time.Time
	SecretID string // which secret signed it (never the secret itself)
}

// Candidate is the password a username would have under one live secret.
type Candidate struct {
	SecretID string
	Password string
}

type secret struct {
	id    string
	value string
}

// Keyring holds the live secrets. It is safe for concurrent use; Set swaps the
// whole set atomically (the LBS pushes new sets at runtime).
type Keyring struct {
	secrets atomic.Pointer[[]secret]
}

// NewKeyring returns a keyring holding secrets; the first one signs.
func NewKeyring(secrets []Secret) (*Keyring, error) {
	k := &Keyring{}
	if err := k.Set(secrets); err != nil {
		return nil, err
	}
	return k, nil
}

// Set replaces the live secrets. The first one signs new credentials.
func (k *Keyring) Set(secrets []Secret) error {
	if err := ValidateSecrets(secrets); err != nil {
		return err
	}
	s := make([]secret, len(secrets))
	for i, sec := range secrets {
		s[i] = secret{id: sec.ID, value: sec.Value.Reveal()}
	}
	k.secrets.Store(&s)
	return nil
}

// IDs lists the ids of the live secrets, signing one first.
func (k *Keyring) IDs() []string {
	s := *k.secrets.Load()
	ids := make([]string, len(s))
	for i := range s {
		ids[i] = s[i].id
	}
	return ids
}

// ValidateSecrets checks a secret list: at least one, ids set and unique,
// values set.
func ValidateSecrets(secrets []Secret) error {
	var errs config.Errors
	if len(secrets) == 0 {
		errs = append(errs, ErrNoSecret)
	}
	seen := map[string]bool{}
	for i, s := range secrets {
		if s.ID == "" {
			errs.Addf("secrets[%d].id: must be set", i)
		} else if seen[s.ID] {
			errs.Addf("secrets[%d].id: %q repeated", i, s.ID)
		}
		seen[s.ID] = true
		if !s.Value.IsSet() {
			errs.Addf("secrets[%d].secret: must be set", i)
		} else if len(s.Value.Reveal()) < 16 {
			errs.Addf("secrets[%d].secret: shorter than 16 bytes", i)
		}
	}
	return errs.Err()
}

// Issue signs a credential for appkey/account valid until now+ttl with the
// current secret.
func (k *Keyring) Issue(appkey, account string, ttl time.Duration, now time.Time) (Credential, error) {
	s := *k.secrets.Load()
	if len(s) == 0 {
		return Credential{}, ErrNoSecret
	}
	u := Username{Expiry: now.Add(ttl).Truncate(time.Second), AppKey: appkey, Account: account}
	name := u.String()
	if _, err := ParseUsername(name); err != nil {
		return Credential{}, err
	}
	return Credential{Username: name, Password: Password(s[0].value, name), Expires: u.Expiry, SecretID: s[0].id}, nil
}

// Check parses username and checks its expiry against now, without looking
// at the password. It is the first half of Verify, for TURN servers that
// check the password through the message integrity instead.
func Check(username string, now time.Time) (Username, error) {
	u, err := ParseUsername(username)
	if err != nil {
		return Username{}, err
	}
	if !now.Before(u.Expiry) {
		return u, fmt.Errorf("%w at %s", ErrExpired, u.Expiry.UTC().Format(time.RFC3339))
	}
	return u, nil
}

// Candidates returns the password username would have under each live
// secret, signing one first. A TURN server tries each against the request's
// MESSAGE-INTEGRITY.
func (k *Keyring) Candidates(username string) []Candidate {
	s := *k.secrets.Load()
	out := make([]Candidate, len(s))
	for i := range s {
		out[i] = Candidate{SecretID: s[i].id, Password: Password(s[i].value, username)}
	}
	return out
}

// Verify checks a username/password pair: well formed, not expired, and
// signed by a live secret. It returns the parsed username and the id of the
// secret that signed it.
func (k *Keyring) Verify(username, password string, now time.Time) (Username, string, error) {
	u, err := Check(username, now)
	if err != nil {
		return u, "", err
	}
	for _, c := range k.Candidates(username) {
		if subtle.ConstantTimeCompare([]byte(c.Password), []byte(password)) == 1 {
			return u, c.SecretID, nil
		}
	}
	return u, "", ErrBadPassword
}
