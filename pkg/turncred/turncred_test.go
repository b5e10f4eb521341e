package turncred

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/pkg/config"
)

func secrets(pairs ...string) []Secret {
	var out []Secret
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, Secret{ID: pairs[i], Value: config.NewSecret(pairs[i+1])})
	}
	return out
}

func TestPasswordMatchesCoturnScheme(t *testing.T) {
	// coturn's use-auth-secret: base64(hmac-sha1(secret, username)).
	const secret, user = "0123456789abcdef-secret", "1700000000:app1:alice"
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(user))
	want := base64.StdEncoding.EncodeToString(m.Sum(nil))
	if got := Password(secret, user); got != want {
		t.Fatalf("Password = %q, want %q", got, want)
	}
}

func TestParseUsername(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr bool
		account string
	}{
		{name: "plain", in: "1700000000:app:alice", account: "alice"},
		{name: "account with colon", in: "1700000000:app:a:b", account: "a:b"},
		{name: "no expiry", in: "app:alice", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "negative expiry", in: "-5:app:alice", wantErr: true},
		{name: "empty appkey", in: "1700000000::alice", wantErr: true},
		{name: "empty account", in: "1700000000:app:", wantErr: true},
		{name: "space", in: "1700000000:app:al ice", wantErr: true},
		{name: "huge expiry", in: "99999999999999999999:app:alice", wantErr: true},
		{name: "too long", in: "1700000000:app:" + strings.Repeat("a", 600), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseUsername(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.Account != tt.account || u.AppKey != "app" || u.Expiry.Unix() != 1700000000 {
				t.Fatalf("got %+v", u)
			}
			if u.String() != tt.in {
				t.Fatalf("String() = %q, want %q", u.String(), tt.in)
			}
		})
	}
}

func TestIssueVerifyRotation(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	old, err := NewKeyring(secrets("k1", "first-secret-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	cred, err := old.Issue("app", "alice", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if cred.Username != "1800003600:app:alice" || cred.SecretID != "k1" {
		t.Fatalf("cred = %+v", cred)
	}
	// Rotation: k2 in front, k1 still live.
	ring, err := NewKeyring(secrets("k2", "second-secret-0123456789", "k1", "first-secret-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	if _, id, err := ring.Verify(cred.Username, cred.Password, now); err != nil || id != "k1" {
		t.Fatalf("old credential after rotation: id %q err %v", id, err)
	}
	fresh, _ := ring.Issue("app", "bob", time.Hour, now)
	if fresh.SecretID != "k2" {
		t.Fatalf("new credential signed by %q", fresh.SecretID)
	}
	// k1 removed: old credential refused.
	if err := ring.Set(secrets("k2", "second-secret-0123456789")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ring.Verify(cred.Username, cred.Password, now); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("removed secret still accepted: %v", err)
	}
	// Expiry.
	if _, _, err := ring.Verify(fresh.Username, fresh.Password, now.Add(time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired credential: %v", err)
	}
	// Forged: right shape, wrong password; or a tampered username.
	if _, _, err := ring.Verify(fresh.Username, "AAAA", now); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("forged password: %v", err)
	}
	tampered := strings.Replace(fresh.Username, "bob", "eve", 1)
	if _, _, err := ring.Verify(tampered, fresh.Password, now); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("tampered username: %v", err)
	}
}

func TestValidateSecrets(t *testing.T) {
	err := ValidateSecrets(secrets("a", "short", "a", "long-enough-secret-123", "", "another-long-secret-12"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"shorter than 16", "repeated", "id: must be set"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if !errors.Is(ValidateSecrets(nil), ErrNoSecret) {
		t.Fatal("empty list accepted")
	}
	if err := ValidateSecrets(secrets("a", "long-enough-secret-123")); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(err.Error(), "long-enough-secret-123") {
		t.Fatal("secret value in error")
	}
}

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"1700000000:app:alice", "0:a:b", "1:a:b:c", ":::", "1700000000:app", "", "99999999999:x:y\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUsername(s)
		if err != nil {
			return
		}
		// A parsed username is printable again and parses to the same value.
		again, err := ParseUsername(u.String())
		if err != nil {
			t.Fatalf("reparse %q (from %q): %v", u.String(), s, err)
		}
		if again != u {
			t.Fatalf("round trip %+v != %+v", again, u)
		}
		if strings.Contains(u.AppKey, ":") || u.AppKey == "" || u.Account == "" {
			t.Fatalf("bad parse of %q: %+v", s, u)
		}
	})
}
