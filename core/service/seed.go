package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/service/session"
	"github.com/longlink/longlink/core/store"
)

// SeedUser is a user to create at start (for example alice and bob in
// `longlink dev`). An empty Token is generated.
type SeedUser struct {
	Account string
	Name    string
	Token   string
}

// Seed creates the users of appkey that do not exist yet and registers a
// token for each (generated when empty; an existing user keeps its other
// tokens). It returns the users with their tokens, for the caller to print.
// The app itself comes from Config.Apps (Start), or from PutApp.
func Seed(ctx context.Context, st store.Store, appkey string, users []SeedUser, ttl time.Duration) ([]SeedUser, error) {
	out := make([]SeedUser, len(users))
	for i, u := range users {
		if !imapi.ValidName(u.Account) {
			return nil, fmt.Errorf("seed: account %q: want 1-64 of A-Z a-z 0-9 _ -", u.Account)
		}
		if err := st.CreateUser(ctx, store.User{AppKey: appkey, Account: u.Account, Name: u.Name}); err != nil && !errors.Is(err, store.ErrExists) {
			return nil, fmt.Errorf("seed %s: %w", u.Account, err)
		}
		if u.Token == "" {
			u.Token = session.NewToken()
		}
		if err := st.PutToken(ctx, appkey, u.Account, session.HashToken(u.Token), time.Now().Add(ttl), false); err != nil {
			return nil, fmt.Errorf("seed %s: %w", u.Account, err)
		}
		out[i] = u
	}
	return out, nil
}
