// Package node holds what every domain of one service node shares: the bus
// connection and the store, the clock and the log, the app cache, the
// pushes to accounts and super-groups, the mapping of store errors to API
// errors, ids, member lists and page sizes. The domains (core/service/msg,
// group, room, user, pushreg, session) are built on one Node.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/store"
)

// Config is the node-wide tuning the domains share.
type Config struct {
	// PageLimit caps a page; DefaultPage is used when a request gives no
	// limit.
	PageLimit, DefaultPage int
	// RequestTimeout bounds one request's store work (and background work
	// of the same size).
	RequestTimeout time.Duration
}

// Node is one service node's shared plumbing.
type Node struct {
	Cfg     Config
	NATS    *nats.Conn
	Store   store.Store
	Log     *slog.Logger
	Now     func() time.Time
	Metrics *Metrics
	Apps    *AppCache
}

// New builds a node's plumbing.
func New(cfg Config, nc *nats.Conn, st store.Store, log *slog.Logger, now func() time.Time, m *Metrics) *Node {
	return &Node{Cfg: cfg, NATS: nc, Store: st, Log: log, Now: now, Metrics: m, Apps: &AppCache{st: st}}
}

// Page is the page size for a request's limit n.
func (n *Node) Page(limit int) int {
	if limit <= 0 {
		return n.Cfg.DefaultPage
	}
	return min(limit, n.Cfg.PageLimit)
}

// Decode decodes a request body into v; a bad body is ErrBadRequest.
func Decode(body []byte, v any) error {
	if len(body) == 0 {
		return imapi.Errorf(imapi.ErrBadRequest, "empty body")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return imapi.Errorf(imapi.ErrBadRequest, "body: %v", err)
	}
	return nil
}

// StoreErr maps store errors to API errors; anything unexpected is
// internal (logged once by the dispatcher, never sent to clients in
// detail).
func StoreErr(err error, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return imapi.Errorf(imapi.ErrNotFound, "%s not found", what)
	case errors.Is(err, store.ErrForbidden):
		return imapi.Errorf(imapi.ErrForbidden, "not a member of %s", what)
	case errors.Is(err, store.ErrExists):
		return imapi.Errorf(imapi.ErrConflict, "%s already exists", what)
	case errors.Is(err, store.ErrBlocked):
		return imapi.Errorf(imapi.ErrBlocked, "")
	case errors.Is(err, context.DeadlineExceeded):
		return imapi.Errorf(imapi.ErrTimeout, "")
	case store.Unavailable(err):
		// The database is unreachable or not writable for now (a failover
		// under way, a server restarting, a lost connection): the client
		// tries again, as it does not after an internal error.
		ie := imapi.Errorf(imapi.ErrUnavailable, "")
		var ue *store.UnavailableError
		if errors.As(err, &ue) {
			// The database could not be reached (a failover under way):
			// the client is told when the store tries again rather than
			// backing off as from a broken server.
			ie.Message = "store unavailable"
			ie.RetryAfterMs = max(1, ue.RetryAfter.Milliseconds())
		}
		return ie
	case errors.Is(err, store.ErrBusy):
		// Shed before queueing: nothing was stored and clients resend the
		// same client_msg_id after a backoff, the store's hint if it has one.
		ie := imapi.Errorf(imapi.ErrUnavailable, "busy")
		var be *store.BusyError
		if errors.As(err, &be) && be.RetryAfter > 0 {
			ie.RetryAfterMs = max(1, be.RetryAfter.Milliseconds())
		}
		return ie
	}
	return err
}

// Accounts validates and dedupes a member list of at most max accounts.
func Accounts(in []string, max int) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, a := range in {
		if !imapi.ValidName(a) {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "members: %q is not an account", a)
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) > max {
		return nil, imapi.Errorf(imapi.ErrTooLarge, "at most %d members", max)
	}
	return out, nil
}

// RequireUsers fails with ErrNotFound naming the accounts that do not
// exist (or are disabled).
func (n *Node) RequireUsers(ctx context.Context, appkey string, accts []string) error {
	ok, err := n.Store.UsersExist(ctx, appkey, accts)
	if err != nil {
		return StoreErr(err, "users")
	}
	var missing []string
	for _, a := range accts {
		if !ok[a] {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		return imapi.Errorf(imapi.ErrNotFound, "unknown accounts: %v", missing)
	}
	return nil
}
