package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/logintoken"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/pkg/config"
)

// TestSignedTokens: with a token key, issued tokens are signed for the
// account and its expiry, still checked and revocable by the store, and a
// login may carry the session id an edge chose.
func TestSignedTokens(t *testing.T) {
	seed, pub, err := logintoken.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "sqlite", func(c *service.Config) {
		c.TokenKey = &service.TokenKeyConfig{ID: "t1", PrivateKey: config.NewSecret(logintoken.EncodeKey(seed))}
		c.TokenTTL = config.Duration(time.Hour)
	})
	v := logintoken.NewVerifier()
	if err := v.Add("t1", pub); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok, exp, err := e.svc.Sessions().IssueToken(ctx, appKey, "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(tok, e.clock.now())
	if err != nil {
		t.Fatalf("issued token does not verify: %v", err)
	}
	if claims.AppKey != appKey || claims.Account != "alice" || !claims.Expiry.Equal(exp) {
		t.Fatalf("claims %+v, expiry %v", claims, exp)
	}
	if got := exp.Sub(e.clock.now()); got > time.Hour || got < time.Hour-time.Second {
		t.Fatalf("expiry in %v, want 1h", got)
	}

	anon := &client{e: e, notify: make(chan struct{}, 1)}
	sid := strings.Repeat("ab", 16)
	for _, tc := range []struct {
		name    string
		req     imapi.LoginReq
		want    imapi.Code
		wantSID string // "" any fresh id
	}{
		{"signed token", imapi.LoginReq{AppKey: appKey, Account: "alice", Token: tok}, imapi.OK, ""},
		{"edge session id", imapi.LoginReq{AppKey: appKey, Account: "alice", Token: tok, SessionID: sid}, imapi.OK, sid},
		{"malformed session id", imapi.LoginReq{AppKey: appKey, Account: "alice", Token: tok, SessionID: "ABC"}, imapi.ErrBadRequest, ""},
		{"signed for another account", imapi.LoginReq{AppKey: appKey, Account: "bob", Token: tok}, imapi.ErrUnauthorized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp imapi.LoginResp
			if code := anon.call(imapi.OpLogin, &tc.req, &resp); code != tc.want {
				t.Fatalf("code %v, want %v", code, tc.want)
			}
			if tc.want != imapi.OK {
				return
			}
			if tc.wantSID != "" && resp.SessionID != tc.wantSID {
				t.Fatalf("session %q, want the edge's %q", resp.SessionID, tc.wantSID)
			}
			if tc.wantSID == "" && (len(resp.SessionID) != 32 || resp.SessionID == sid) {
				t.Fatalf("session %q", resp.SessionID)
			}
		})
	}

	// The core stays authoritative: revoke_others invalidates a signed
	// token that still verifies.
	if _, _, err := e.svc.Sessions().IssueToken(ctx, appKey, "alice", true); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok, e.clock.now()); err != nil {
		t.Fatalf("the revoked token should still verify: %v", err)
	}
	if code := anon.call(imapi.OpLogin, &imapi.LoginReq{AppKey: appKey, Account: "alice", Token: tok}, nil); code != imapi.ErrUnauthorized {
		t.Fatalf("revoked signed token: %v, want 401", code)
	}
}

func TestTokenKeyConfig(t *testing.T) {
	seed, _, _ := logintoken.GenerateKey()
	for _, tc := range []struct {
		name string
		key  service.TokenKeyConfig
		ok   bool
	}{
		{"good", service.TokenKeyConfig{ID: "t1", PrivateKey: config.NewSecret(logintoken.EncodeKey(seed))}, true},
		{"dot in id", service.TokenKeyConfig{ID: "t.1", PrivateKey: config.NewSecret(logintoken.EncodeKey(seed))}, false},
		{"short key", service.TokenKeyConfig{ID: "t1", PrivateKey: config.NewSecret("c2hvcnQ=")}, false},
		{"no key", service.TokenKeyConfig{ID: "t1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := service.Default()
			c.TokenKey = &tc.key
			err := c.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && strings.Contains(err.Error(), logintoken.EncodeKey(seed)) {
				t.Fatal("the error shows the private key")
			}
		})
	}
}
