package room

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/service/internal/node"
)

// --- tokens ---

// Room tokens are HMAC-SHA256 over "appkey|room|account|role|expiry" with
// a key derived from the app's secret, so any service node verifies them
// without storing anything and they die with a secret rotation. They are
// bearer secrets: never logged.
func roomTokenKey(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("longlink room token v1"))
	return m.Sum(nil)
}

func signRoomToken(secret, payload string) string {
	m := hmac.New(sha256.New, roomTokenKey(secret))
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// verifyRoomToken checks a token for appkey, room and account and returns
// the role it grants.
func verifyRoomToken(secret, token, appkey, roomID, account string, now time.Time) (string, bool) {
	p64, sig64, ok := strings.Cut(token, ".")
	if !ok {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil {
		return "", false
	}
	sig, err := base64.RawURLEncoding.DecodeString(sig64)
	if err != nil {
		return "", false
	}
	m := hmac.New(sha256.New, roomTokenKey(secret))
	m.Write(payload)
	if !hmac.Equal(sig, m.Sum(nil)) {
		return "", false
	}
	f := strings.Split(string(payload), "|")
	if len(f) != 5 || f[0] != appkey || f[1] != roomID || f[2] != account {
		return "", false
	}
	exp, err := strconv.ParseInt(f[4], 10, 64)
	if err != nil || now.Unix() >= exp {
		return "", false
	}
	return f[3], true
}

// TokenFor signs an entry token as IssueToken does, for an app
// server (or a load generator) that holds the app secret and issues tokens
// without a round trip. role is "member" or "guest".
func TokenFor(secret, appkey, roomID, account, role string, expires time.Time) string {
	return signRoomToken(secret, strings.Join([]string{appkey, roomID, account, role, strconv.FormatInt(expires.Unix(), 10)}, "|"))
}

// IssueToken issues an entry token for account (member or guest) into
// a live room, valid for ttl (0 or more than the configured maximum: the
// configured token_ttl).
func (s *Rooms) IssueToken(ctx context.Context, appkey, roomID, account, role string, ttl time.Duration) (*Token, error) {
	if !imapi.ValidName(roomID) || !imapi.ValidName(account) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "room_id and account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	if role == "" {
		role = imapi.RoleMember
	}
	if role != imapi.RoleMember && role != imapi.RoleGuest {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "role: member or guest (owner and managers are set on the room)")
	}
	if ttl <= 0 || ttl > s.cfg.TokenTTL.D() {
		ttl = s.cfg.TokenTTL.D()
	}
	app, err := s.n.App(ctx, appkey)
	if err != nil {
		return nil, node.StoreErr(err, "app")
	}
	r, err := s.n.Store.Room(ctx, appkey, roomID)
	if err != nil {
		return nil, node.StoreErr(err, "room")
	}
	if r.Closed {
		return nil, imapi.Errorf(imapi.ErrNotFound, "room closed")
	}
	exp := s.n.Now().Add(ttl)
	return &Token{Token: TokenFor(app.Secret, appkey, roomID, account, role, exp), Role: role, Expires: exp.Unix()}, nil
}
