package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Users and relationships: profiles, friends and friend requests, the
// blacklist, mutes and the per-account notice stream.
//
// Every change that someone must hear about is written in the same
// transaction as the notices it produces: each notice gets the next
// sequence of its account's notice stream (user_notice_seq), so a device
// that was offline catches up with Notices(afterSeq) and misses nothing.
// Streams keep the newest NoticeKeep notices of each account.

// NoticeKeep is how many notices of one account the stream keeps.
const NoticeKeep = 1000

// Blacklist modes of an app (Append.BlockMode).
const (
	// BlockInbound refuses messages to the blocker from the blocked account;
	// the blocker may still write to the blocked account.
	BlockInbound = 0
	// BlockBoth also refuses messages from the blocker to the account they
	// blocked.
	BlockBoth = 1
)

// ErrBlocked is an append refused by the blacklist.
var ErrBlocked = errors.New("store: blocked")

// Profile is the public part of a user.
type Profile struct {
	Account string
	Name    string
	Avatar  string
	// Ext is the app's custom fields: a JSON object, or empty.
	Ext     []byte
	Updated int64 // unix milliseconds; 0 if never changed
}

// ProfileUpdate changes some profile fields; nil fields are kept. Ext
// replaces the custom fields as a whole.
type ProfileUpdate struct {
	Name   *string
	Avatar *string
	Ext    []byte
}

// Friend is one row of an account's friend list.
type Friend struct {
	Account string
	Alias   string
	Since   int64 // unix milliseconds
}

// FriendRequest is a pending request.
type FriendRequest struct {
	From    string
	To      string
	Message string
	Time    int64
}

// Notice is one entry of an account's notice stream. Body is opaque to the
// store (the services keep JSON there); Seq and Time are set when stored.
type Notice struct {
	Account string
	Seq     int64
	Time    int64
	Body    []byte
}

// RelationStore is the store's part for profiles and relationships.
type RelationStore interface {
	// Profiles returns the profiles of the accounts that exist, in the
	// order asked.
	Profiles(ctx context.Context, appkey string, accounts []string) ([]Profile, error)
	// UpdateProfile changes a profile and records the notes made from the
	// profile after the change; ErrNotFound for an unknown account.
	UpdateProfile(ctx context.Context, appkey, account string, upd ProfileUpdate, notes func(Profile) []Notice) (Profile, []Notice, error)

	// RequestFriend records a request from → to (replacing an earlier one
	// and its message). When to had already asked from, the two become
	// friends at once (RequestAccepted). When to blocks from, the request
	// is recorded but hidden from to (RequestHidden: never accepted at
	// once; FriendRequests leaves it out of to's list). notes gets the
	// outcome. ErrExists: already friends.
	RequestFriend(ctx context.Context, appkey, from, to, message string, notes func(RequestOutcome) []Notice) (RequestOutcome, []Notice, error)
	// AnswerFriend accepts (friends both ways, aliasing from as alias) or
	// rejects the request from → account. ErrNotFound: no such request.
	AnswerFriend(ctx context.Context, appkey, account, from string, accept bool, alias string, notes []Notice) ([]Notice, error)
	// DeleteFriend ends a friendship both ways. ErrNotFound: not friends.
	DeleteFriend(ctx context.Context, appkey, account, friend string, notes []Notice) ([]Notice, error)
	// SetAlias sets the owner's remark on a friend. ErrNotFound: not friends.
	SetAlias(ctx context.Context, appkey, owner, friend, alias string, notes []Notice) ([]Notice, error)
	// AddFriends makes pairs of accounts friends both ways directly (the
	// server API's import); it returns the accounts actually added.
	AddFriends(ctx context.Context, appkey, owner string, friends []string, notes func(added []string) []Notice) ([]string, []Notice, error)
	// Friends lists an account's friends, oldest first.
	Friends(ctx context.Context, appkey, account string) ([]Friend, error)
	// FriendCount counts an account's friends.
	FriendCount(ctx context.Context, appkey, account string) (int, error)
	// FriendRequests lists the pending requests to and from an account.
	FriendRequests(ctx context.Context, appkey, account string) ([]FriendRequest, error)

	// SetBlocked adds (on) or removes target from owner's blacklist and
	// records notes when something changed; changed reports that.
	SetBlocked(ctx context.Context, appkey, owner, target string, on bool, notes []Notice) (changed bool, _ []Notice, _ error)
	// Blacklist lists the accounts owner blocks.
	Blacklist(ctx context.Context, appkey, owner string) ([]string, error)
	// Blocks reports whether owner blocks target.
	Blocks(ctx context.Context, appkey, owner, target string) (bool, error)

	// SetMuted mutes (on) or unmutes a conversation for account.
	SetMuted(ctx context.Context, appkey, account, convID string, on bool, notes []Notice) (changed bool, _ []Notice, _ error)
	// Mutes lists the conversations account muted.
	Mutes(ctx context.Context, appkey, account string) ([]string, error)
	// Muted reports whether account muted convID.
	Muted(ctx context.Context, appkey, account, convID string) (bool, error)
	// MutedAmong returns which of accounts muted convID (one query).
	MutedAmong(ctx context.Context, appkey, convID string, accounts []string) (map[string]bool, error)

	// AddNotices records notices outside any other change.
	AddNotices(ctx context.Context, appkey string, notes []Notice) ([]Notice, error)
	// Notices returns up to limit notices of account with seq > afterSeq,
	// oldest first, and whether more exist.
	Notices(ctx context.Context, appkey, account string, afterSeq int64, limit int) ([]Notice, bool, error)
	// LastNoticeSeq returns the seq of account's newest notice, trimmed or
	// not (0 when it never had one).
	LastNoticeSeq(ctx context.Context, appkey, account string) (int64, error)
}

var relationsMigration = migration{4, "profiles and relationships", []string{
	`ALTER TABLE users ADD COLUMN avatar TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE users ADD COLUMN ext TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE users ADD COLUMN profile_updated BIGINT NOT NULL DEFAULT 0`,
	`CREATE TABLE friends (
		appkey TEXT NOT NULL,
		owner TEXT NOT NULL,
		friend TEXT NOT NULL,
		alias TEXT NOT NULL DEFAULT '',
		created BIGINT NOT NULL,
		PRIMARY KEY (appkey, owner, friend)) {{without_rowid}}`,
	`CREATE TABLE friend_requests (
		appkey TEXT NOT NULL,
		target TEXT NOT NULL,
		requester TEXT NOT NULL,
		message TEXT NOT NULL,
		created BIGINT NOT NULL,
		PRIMARY KEY (appkey, target, requester)) {{without_rowid}}`,
	`CREATE INDEX friend_requests_requester ON friend_requests (appkey, requester)`,
	`CREATE TABLE blacklist (
		appkey TEXT NOT NULL,
		owner TEXT NOT NULL,
		target TEXT NOT NULL,
		created BIGINT NOT NULL,
		PRIMARY KEY (appkey, owner, target)) {{without_rowid}}`,
	`CREATE TABLE mutes (
		appkey TEXT NOT NULL,
		account TEXT NOT NULL,
		conv_id TEXT NOT NULL,
		created BIGINT NOT NULL,
		PRIMARY KEY (appkey, account, conv_id)) {{without_rowid}}`,
	`CREATE TABLE user_notice_seq (
		appkey TEXT NOT NULL,
		account TEXT NOT NULL,
		last_seq BIGINT NOT NULL,
		PRIMARY KEY (appkey, account)) {{without_rowid}}`,
	`CREATE TABLE user_notices (
		appkey TEXT NOT NULL,
		account TEXT NOT NULL,
		seq BIGINT NOT NULL,
		body TEXT NOT NULL,
		ts BIGINT NOT NULL,
		PRIMARY KEY (appkey, account, seq)) {{without_rowid}}`,
}}

// relTx runs fn in a write transaction; when fn reports a change, notes
// are recorded in the same transaction. It retries the whole transaction
// on the backend's transient errors (PostgreSQL deadlocks between two
// accounts acting on each other).
func (s *sqlStore) relTx(ctx context.Context, what, appkey string, notes func() []Notice, fn func(tx *sql.Tx) (bool, error)) (bool, []Notice, error) {
	for attempt := 0; ; attempt++ {
		changed, out, err := s.relTxOnce(ctx, appkey, notes, fn)
		if err == nil || attempt >= 3 || !s.d.retryable(err) {
			if err != nil && !isSentinel(err) {
				err = fmt.Errorf("store: %s: %w", what, err)
			}
			return changed, out, err
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
}

func fixed(notes []Notice) func() []Notice { return func() []Notice { return notes } }

func isSentinel(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) || errors.Is(err, ErrForbidden) ||
		errors.Is(err, ErrBlocked) || errors.Is(err, ErrClosed)
}

func (s *sqlStore) relTxOnce(ctx context.Context, appkey string, notes func() []Notice, fn func(tx *sql.Tx) (bool, error)) (bool, []Notice, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, nil, err
	}
	defer func() { _ = tx.Rollback() }()
	changed, err := fn(tx)
	if err != nil || !changed {
		return false, nil, err
	}
	out, err := s.addNoticesTx(ctx, tx, appkey, notes())
	if err != nil {
		return false, nil, err
	}
	if err := tx.Commit(); err != nil {
		return false, nil, err
	}
	return true, out, nil
}

// addNoticesTx gives each note the next sequence of its account (accounts
// in sorted order: the lock order on PostgreSQL) and trims old notices.
func (s *sqlStore) addNoticesTx(ctx context.Context, tx *sql.Tx, appkey string, notes []Notice) ([]Notice, error) {
	if len(notes) == 0 {
		return nil, nil
	}
	out := slices.Clone(notes)
	slices.SortStableFunc(out, func(a, b Notice) int { return strings.Compare(a.Account, b.Account) })
	now := time.Now().UnixMilli()
	for i := range out {
		n := &out[i]
		if err := tx.QueryRowContext(ctx, s.q(`INSERT INTO user_notice_seq (appkey, account, last_seq) VALUES (?, ?, 1)
			ON CONFLICT (appkey, account) DO UPDATE SET last_seq = user_notice_seq.last_seq + 1 RETURNING last_seq`),
			appkey, n.Account).Scan(&n.Seq); err != nil {
			return nil, err
		}
		n.Time = now
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO user_notices (appkey, account, seq, body, ts) VALUES (?, ?, ?, ?, ?)`),
			appkey, n.Account, n.Seq, string(n.Body), n.Time); err != nil {
			return nil, err
		}
		if n.Seq > NoticeKeep && n.Seq%64 == 0 {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM user_notices WHERE appkey = ? AND account = ? AND seq <= ?`),
				appkey, n.Account, n.Seq-NoticeKeep); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func (s *sqlStore) AddNotices(ctx context.Context, appkey string, notes []Notice) ([]Notice, error) {
	_, out, err := s.relTx(ctx, "add notices", appkey, fixed(notes), func(*sql.Tx) (bool, error) { return true, nil })
	return out, err
}

func (s *sqlStore) Notices(ctx context.Context, appkey, account string, afterSeq int64, limit int) ([]Notice, bool, error) {
	limit = max(limit, 1)
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT seq, body, ts FROM user_notices WHERE appkey = ? AND account = ? AND seq > ? ORDER BY seq LIMIT ?`),
		appkey, account, afterSeq, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("store: notices: %w", err)
	}
	defer rows.Close()
	var out []Notice
	for rows.Next() {
		if len(out) == limit {
			return out, true, nil
		}
		n := Notice{Account: account}
		var body string
		if err := rows.Scan(&n.Seq, &body, &n.Time); err != nil {
			return nil, false, fmt.Errorf("store: notices: %w", err)
		}
		n.Body = []byte(body)
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("store: notices: %w", err)
	}
	return out, false, nil
}

func (s *sqlStore) LastNoticeSeq(ctx context.Context, appkey, account string) (int64, error) {
	var seq int64
	err := s.r.QueryRowContext(ctx, s.q(`SELECT last_seq FROM user_notice_seq WHERE appkey = ? AND account = ?`), appkey, account).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: last notice seq: %w", err)
	}
	return seq, nil
}

// --- profiles ---

func (s *sqlStore) Profiles(ctx context.Context, appkey string, accounts []string) ([]Profile, error) {
	if len(accounts) == 0 {
		return nil, nil
	}
	ph := strings.TrimSuffix(strings.Repeat("?, ", len(accounts)), ", ")
	args := make([]any, 0, len(accounts)+1)
	args = append(args, appkey)
	for _, a := range accounts {
		args = append(args, a)
	}
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT account, name, avatar, ext, profile_updated FROM users WHERE appkey = ? AND account IN (`+ph+`)`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: profiles: %w", err)
	}
	defer rows.Close()
	by := map[string]Profile{}
	for rows.Next() {
		p, err := scanProfile(rows)
		if err != nil {
			return nil, fmt.Errorf("store: profiles: %w", err)
		}
		by[p.Account] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: profiles: %w", err)
	}
	out := make([]Profile, 0, len(by))
	for _, a := range accounts {
		if p, ok := by[a]; ok {
			out = append(out, p)
			delete(by, a)
		}
	}
	return out, nil
}

func scanProfile(sc scanner) (Profile, error) {
	var p Profile
	var ext string
	if err := sc.Scan(&p.Account, &p.Name, &p.Avatar, &ext, &p.Updated); err != nil {
		return Profile{}, err
	}
	if ext != "" {
		p.Ext = []byte(ext)
	}
	return p, nil
}

func (s *sqlStore) UpdateProfile(ctx context.Context, appkey, account string, upd ProfileUpdate, notes func(Profile) []Notice) (Profile, []Notice, error) {
	var p Profile
	_, out, err := s.relTx(ctx, "update profile", appkey, func() []Notice { return notes(p) }, func(tx *sql.Tx) (bool, error) {
		sets := []string{"profile_updated = ?"}
		args := []any{time.Now().UnixMilli()}
		if upd.Name != nil {
			sets = append(sets, "name = ?")
			args = append(args, *upd.Name)
		}
		if upd.Avatar != nil {
			sets = append(sets, "avatar = ?")
			args = append(args, *upd.Avatar)
		}
		if upd.Ext != nil {
			sets = append(sets, "ext = ?")
			args = append(args, string(upd.Ext))
		}
		args = append(args, appkey, account)
		res, err := tx.ExecContext(ctx, s.q(`UPDATE users SET `+strings.Join(sets, ", ")+` WHERE appkey = ? AND account = ?`), args...)
		if err != nil {
			return false, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return false, ErrNotFound
		}
		p, err = scanProfile(tx.QueryRowContext(ctx, s.q(`SELECT account, name, avatar, ext, profile_updated FROM users WHERE appkey = ? AND account = ?`), appkey, account))
		return true, err
	})
	return p, out, err
}

// --- friends ---

func (s *sqlStore) areFriendsTx(ctx context.Context, tx *sql.Tx, appkey, a, b string) (bool, error) {
	var n int
	err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM friends WHERE appkey = ? AND owner = ? AND friend = ?`), appkey, a, b).Scan(&n)
	return n > 0, err
}

// befriendTx makes a and b friends both ways (a's alias for b given) and
// drops requests between them.
func (s *sqlStore) befriendTx(ctx context.Context, tx *sql.Tx, appkey, a, b, aliasOfB string, now int64) error {
	for _, r := range [][3]string{{a, b, aliasOfB}, {b, a, ""}} {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO friends (appkey, owner, friend, alias, created) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (appkey, owner, friend) DO NOTHING`), appkey, r[0], r[1], r[2], now); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, s.q(`DELETE FROM friend_requests WHERE appkey = ? AND ((target = ? AND requester = ?) OR (target = ? AND requester = ?))`),
		appkey, a, b, b, a)
	return err
}

// RequestOutcome is what a friend request did.
type RequestOutcome int

// Outcomes of RequestFriend.
const (
	RequestPending  RequestOutcome = iota // recorded, waiting for an answer
	RequestAccepted                       // crossed an earlier request: friends now
	RequestHidden                         // the target blocks the requester: recorded, never shown to it
)

func (s *sqlStore) RequestFriend(ctx context.Context, appkey, from, to, message string, notes func(RequestOutcome) []Notice) (RequestOutcome, []Notice, error) {
	outcome := RequestPending
	_, out, err := s.relTx(ctx, "request friend", appkey, func() []Notice { return notes(outcome) }, func(tx *sql.Tx) (bool, error) {
		outcome = RequestPending
		if s.d.forUpdate != "" {
			// Two crossing requests lock both accounts in one order, so
			// the second sees the first and makes friends (PostgreSQL;
			// SQLite's single writer serializes them already).
			if _, err := tx.ExecContext(ctx, s.q(`SELECT account FROM users WHERE appkey = ? AND account IN (?, ?) ORDER BY account`+s.d.forUpdate), appkey, from, to); err != nil {
				return false, err
			}
		}
		if ok, err := s.areFriendsTx(ctx, tx, appkey, from, to); err != nil || ok {
			if ok {
				err = ErrExists
			}
			return false, err
		}
		now := time.Now().UnixMilli()
		var blocked int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM blacklist WHERE appkey = ? AND owner = ? AND target = ?`),
			appkey, to, from).Scan(&blocked); err != nil {
			return false, err
		}
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM friend_requests WHERE appkey = ? AND target = ? AND requester = ?`),
			appkey, from, to).Scan(&n); err != nil {
			return false, err
		}
		switch {
		case blocked > 0:
			outcome = RequestHidden
		case n > 0:
			outcome = RequestAccepted
			return true, s.befriendTx(ctx, tx, appkey, from, to, "", now)
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO friend_requests (appkey, target, requester, message, created) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (appkey, target, requester) DO UPDATE SET message = excluded.message, created = excluded.created`),
			appkey, to, from, message, now)
		return true, err
	})
	return outcome, out, err
}

func (s *sqlStore) AnswerFriend(ctx context.Context, appkey, account, from string, accept bool, alias string, notes []Notice) ([]Notice, error) {
	_, out, err := s.relTx(ctx, "answer friend", appkey, fixed(notes), func(tx *sql.Tx) (bool, error) {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM friend_requests WHERE appkey = ? AND target = ? AND requester = ?`), appkey, account, from)
		if err != nil {
			return false, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return false, ErrNotFound
		}
		if !accept {
			return true, nil
		}
		return true, s.befriendTx(ctx, tx, appkey, account, from, alias, time.Now().UnixMilli())
	})
	return out, err
}

func (s *sqlStore) DeleteFriend(ctx context.Context, appkey, account, friend string, notes []Notice) ([]Notice, error) {
	_, out, err := s.relTx(ctx, "delete friend", appkey, fixed(notes), func(tx *sql.Tx) (bool, error) {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM friends WHERE appkey = ? AND ((owner = ? AND friend = ?) OR (owner = ? AND friend = ?))`),
			appkey, account, friend, friend, account)
		if err != nil {
			return false, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return false, ErrNotFound
		}
		return true, nil
	})
	return out, err
}

func (s *sqlStore) SetAlias(ctx context.Context, appkey, owner, friend, alias string, notes []Notice) ([]Notice, error) {
	_, out, err := s.relTx(ctx, "set alias", appkey, fixed(notes), func(tx *sql.Tx) (bool, error) {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE friends SET alias = ? WHERE appkey = ? AND owner = ? AND friend = ?`), alias, appkey, owner, friend)
		if err != nil {
			return false, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return false, ErrNotFound
		}
		return true, nil
	})
	return out, err
}

func (s *sqlStore) AddFriends(ctx context.Context, appkey, owner string, friends []string, notes func(added []string) []Notice) ([]string, []Notice, error) {
	var added []string
	for attempt := 0; ; attempt++ {
		added = nil
		out, err := func() ([]Notice, error) {
			tx, err := s.w.BeginTx(ctx, nil)
			if err != nil {
				return nil, err
			}
			defer func() { _ = tx.Rollback() }()
			now := time.Now().UnixMilli()
			for _, f := range friends {
				ok, err := s.areFriendsTx(ctx, tx, appkey, owner, f)
				if err != nil {
					return nil, err
				}
				if ok {
					continue
				}
				if err := s.befriendTx(ctx, tx, appkey, owner, f, "", now); err != nil {
					return nil, err
				}
				added = append(added, f)
			}
			if len(added) == 0 {
				return nil, nil
			}
			out, err := s.addNoticesTx(ctx, tx, appkey, notes(added))
			if err != nil {
				return nil, err
			}
			return out, tx.Commit()
		}()
		if err == nil {
			return added, out, nil
		}
		if attempt >= 3 || !s.d.retryable(err) {
			return nil, nil, fmt.Errorf("store: add friends: %w", err)
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
}

func (s *sqlStore) Friends(ctx context.Context, appkey, account string) ([]Friend, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT friend, alias, created FROM friends WHERE appkey = ? AND owner = ? ORDER BY created, friend`), appkey, account)
	if err != nil {
		return nil, fmt.Errorf("store: friends: %w", err)
	}
	defer rows.Close()
	var out []Friend
	for rows.Next() {
		var f Friend
		if err := rows.Scan(&f.Account, &f.Alias, &f.Since); err != nil {
			return nil, fmt.Errorf("store: friends: %w", err)
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

func (s *sqlStore) FriendCount(ctx context.Context, appkey, account string) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM friends WHERE appkey = ? AND owner = ?`), appkey, account).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: friend count: %w", err)
	}
	return n, nil
}

func (s *sqlStore) FriendRequests(ctx context.Context, appkey, account string) ([]FriendRequest, error) {
	// Requests from accounts the caller blocks are hidden from it (the
	// requester still sees its own).
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT requester, target, message, created FROM friend_requests r
		WHERE appkey = ? AND (requester = ? OR target = ? AND NOT EXISTS (
			SELECT 1 FROM blacklist b WHERE b.appkey = r.appkey AND b.owner = r.target AND b.target = r.requester))
		ORDER BY created, requester, target`), appkey, account, account)
	if err != nil {
		return nil, fmt.Errorf("store: friend requests: %w", err)
	}
	defer rows.Close()
	var out []FriendRequest
	for rows.Next() {
		var r FriendRequest
		if err := rows.Scan(&r.From, &r.To, &r.Message, &r.Time); err != nil {
			return nil, fmt.Errorf("store: friend requests: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// --- blacklist and mutes ---

// setPairTx inserts or deletes one (appkey, a, b) row of a two-key table.
func (s *sqlStore) setPairTx(ctx context.Context, tx *sql.Tx, table, colA, colB, appkey, a, b string, on bool) (bool, error) {
	var res sql.Result
	var err error
	if on {
		res, err = tx.ExecContext(ctx, s.q(`INSERT INTO `+table+` (appkey, `+colA+`, `+colB+`, created) VALUES (?, ?, ?, ?)
			ON CONFLICT (appkey, `+colA+`, `+colB+`) DO NOTHING`), appkey, a, b, time.Now().UnixMilli())
	} else {
		res, err = tx.ExecContext(ctx, s.q(`DELETE FROM `+table+` WHERE appkey = ? AND `+colA+` = ? AND `+colB+` = ?`), appkey, a, b)
	}
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

func (s *sqlStore) listPairs(ctx context.Context, what, table, colA, colB, appkey, a string) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT `+colB+` FROM `+table+` WHERE appkey = ? AND `+colA+` = ? ORDER BY created, `+colB), appkey, a)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (s *sqlStore) SetBlocked(ctx context.Context, appkey, owner, target string, on bool, notes []Notice) (bool, []Notice, error) {
	return s.relTx(ctx, "blacklist", appkey, fixed(notes), func(tx *sql.Tx) (bool, error) {
		return s.setPairTx(ctx, tx, "blacklist", "owner", "target", appkey, owner, target, on)
	})
}

func (s *sqlStore) Blacklist(ctx context.Context, appkey, owner string) ([]string, error) {
	return s.listPairs(ctx, "blacklist", "blacklist", "owner", "target", appkey, owner)
}

func (s *sqlStore) Blocks(ctx context.Context, appkey, owner, target string) (bool, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM blacklist WHERE appkey = ? AND owner = ? AND target = ?`), appkey, owner, target).Scan(&n); err != nil {
		return false, fmt.Errorf("store: blocks: %w", err)
	}
	return n > 0, nil
}

func (s *sqlStore) SetMuted(ctx context.Context, appkey, account, convID string, on bool, notes []Notice) (bool, []Notice, error) {
	return s.relTx(ctx, "mute", appkey, fixed(notes), func(tx *sql.Tx) (bool, error) {
		return s.setPairTx(ctx, tx, "mutes", "account", "conv_id", appkey, account, convID, on)
	})
}

func (s *sqlStore) Mutes(ctx context.Context, appkey, account string) ([]string, error) {
	return s.listPairs(ctx, "mutes", "mutes", "account", "conv_id", appkey, account)
}

func (s *sqlStore) Muted(ctx context.Context, appkey, account, convID string) (bool, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM mutes WHERE appkey = ? AND account = ? AND conv_id = ?`), appkey, account, convID).Scan(&n); err != nil {
		return false, fmt.Errorf("store: muted: %w", err)
	}
	return n > 0, nil
}

func (s *sqlStore) MutedAmong(ctx context.Context, appkey, convID string, accounts []string) (map[string]bool, error) {
	out := map[string]bool{}
	for off := 0; off < len(accounts); off += 500 {
		part := accounts[off:min(off+500, len(accounts))]
		args := make([]any, 0, 2+len(part))
		args = append(args, appkey, convID)
		for _, a := range part {
			args = append(args, a)
		}
		ph := strings.TrimSuffix(strings.Repeat("?, ", len(part)), ", ")
		rows, err := s.r.QueryContext(ctx, s.q(`SELECT account FROM mutes WHERE appkey = ? AND conv_id = ? AND account IN (`+ph+`)`), args...)
		if err != nil {
			return nil, fmt.Errorf("store: muted among: %w", err)
		}
		for rows.Next() {
			var a string
			if err := rows.Scan(&a); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: muted among: %w", err)
			}
			out[a] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("store: muted among: %w", err)
		}
	}
	return out, nil
}

// queryBlocked queues on tx the blacklist lookups of the 1:1 appends in ps
// (all of appkey): the blocker's own entry, and the sender's too with
// BlockBoth. After the flush, the function it returns tells which appends
// are blocked.
func (s *sqlStore) queryBlocked(tx batchTx, appkey string, ps []*pending) func() map[*pending]bool {
	var pairs [][2]string
	seen := map[[2]string]bool{}
	add := func(owner, target string) {
		k := [2]string{owner, target}
		if !seen[k] {
			seen[k] = true
			pairs = append(pairs, k)
		}
	}
	for _, p := range ps {
		if p.a.Peer == "" || p.a.Peer == p.a.Sender {
			continue
		}
		add(p.a.Peer, p.a.Sender)
		if p.a.BlockMode == BlockBoth {
			add(p.a.Sender, p.a.Peer)
		}
	}
	blocks := map[[2]string]bool{}
	rows := make([]any, 0, 3*len(pairs))
	for _, k := range pairs {
		rows = append(rows, appkey, k[0], k[1])
	}
	s.queryRows(tx, sqlBlocked, nil, rows, func(rs rowScanner) error {
		var o, t string
		if err := rs.Scan(&o, &t); err != nil {
			return err
		}
		blocks[[2]string{o, t}] = true
		return nil
	})
	return func() map[*pending]bool {
		if len(blocks) == 0 {
			return nil
		}
		out := map[*pending]bool{}
		for _, p := range ps {
			if blocks[[2]string{p.a.Peer, p.a.Sender}] || (p.a.BlockMode == BlockBoth && blocks[[2]string{p.a.Sender, p.a.Peer}]) {
				out[p] = true
			}
		}
		return out
	}
}
