package logintoken

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func newSigner(t testing.TB, id string) *Signer {
	t.Helper()
	seed, _, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(id, seed)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIssueVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s1, s2 := newSigner(t, "t1"), newSigner(t, "t2")
	v := NewVerifier()
	if err := v.Add("t1", s1.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if err := v.Add("t2", s2.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if err := v.Add("t1", s1.PublicKey()); err == nil {
		t.Fatal("a key id listed twice was accepted")
	}
	long := strings.Repeat("a", 64)
	tok, err := s1.Issue(long, long, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) > MaxLen || !IsSigned(tok) {
		t.Fatalf("token of %d bytes (max %d): %q", len(tok), MaxLen, tok)
	}
	other, _ := s1.Issue(long, long, now.Add(time.Hour))
	if other == tok {
		t.Fatal("two tokens for the same claims are equal: the nonce is missing")
	}
	tok2, _ := s2.Issue("demo", "alice", now.Add(time.Minute))
	unknown, _ := newSigner(t, "t3").Issue("demo", "alice", now.Add(time.Hour))
	forged := func(tok string) string { // same key id, another key
		parts := strings.Split(tok, ".")
		f, _ := newSigner(t, "t1").Issue("demo", "mallory", now.Add(time.Hour))
		fp := strings.Split(f, ".")
		return strings.Join([]string{parts[0], parts[1], fp[2], parts[3]}, ".")
	}

	cases := []struct {
		name string
		tok  string
		at   time.Time
		want Claims
		err  error
	}{
		{"rotated keys: first", tok, now, Claims{long, long, now.Add(time.Hour)}, nil},
		{"rotated keys: second", tok2, now, Claims{"demo", "alice", now.Add(time.Minute)}, nil},
		{"expired", tok2, now.Add(time.Minute), Claims{}, ErrExpired},
		{"unknown key", unknown, now, Claims{}, ErrUnknownKey},
		{"payload swapped", forged(tok), now, Claims{}, ErrInvalid},
		{"signature cut", tok[:len(tok)-2], now, Claims{}, ErrInvalid},
		{"opaque", strings.Repeat("ab", 32), now, Claims{}, ErrInvalid},
		{"empty", "", now, Claims{}, ErrInvalid},
		{"extra part", tok + ".x", now, Claims{}, ErrInvalid},
		{"too long", "v1.t1." + strings.Repeat("A", MaxLen), now, Claims{}, ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := v.Verify(c.tok, c.at)
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if got.AppKey != c.want.AppKey || got.Account != c.want.Account || !got.Expiry.Equal(c.want.Expiry) {
				t.Fatalf("claims %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	seed, pub, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner("k", seed)
	if err != nil {
		t.Fatal(err)
	}
	if EncodeKey(s.PublicKey()) != EncodeKey(pub) {
		t.Fatal("the signer's public key differs from the generated one")
	}
	back, err := DecodeKey(EncodeKey(seed))
	if err != nil || string(back) != string(seed) {
		t.Fatalf("decode: %v", err)
	}
	if _, err := DecodeKey("c2hvcnQ="); err == nil {
		t.Fatal("a short key was accepted")
	}
	for _, id := range []string{"", "a.b", strings.Repeat("k", 33), "k/1"} {
		if _, err := NewSigner(id, seed); err == nil {
			t.Errorf("key id %q accepted", id)
		}
	}
	if _, err := s.Issue("", "alice", time.Now()); err == nil {
		t.Fatal("an empty appkey was accepted")
	}
}

// FuzzVerify feeds arbitrary text to the parser, which an edge runs on
// bytes from the network: it must never panic, and whatever it accepts must
// carry names of the allowed lengths and re-verify.
func FuzzVerify(f *testing.F) {
	s := newSigner(f, "t1")
	v := NewVerifier()
	_ = v.Add("t1", s.PublicKey())
	now := time.Unix(1_800_000_000, 0)
	tok, _ := s.Issue("demo", "alice", now.Add(time.Hour))
	f.Add(tok)
	f.Add("v1.t1.AAAA.AAAA")
	f.Add("v1..." + strings.Repeat("A", 86))
	f.Add(strings.Repeat("0f", 32))
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok, now)
		if p, perr := parse(tok); perr == nil {
			if len(p.claims.AppKey) == 0 || len(p.claims.AppKey) > maxNameLen || len(p.claims.Account) == 0 || len(p.claims.Account) > maxNameLen {
				t.Fatalf("parsed names out of bounds: %+v", p.claims)
			}
		}
		if err != nil {
			return
		}
		if c.AppKey != "demo" || c.Account != "alice" {
			// Only the seed token is signed by t1 here.
			t.Fatalf("a forged token verified: %q → %+v", tok, c)
		}
	})
}
