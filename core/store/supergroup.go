package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Super-groups: read diffusion. Their messages live once in the messages
// table under conversation "s:<group>" (sequence in conversations, like any
// conversation); members are rows of super_members, which also hold each
// member's read position, written only when the member reads (or sends).
// Mentions are rows of super_mentions only for the mentioned accounts, or
// one row for "@all". No statement writes per member per message.

// ErrGroupFull is returned when adding members would exceed the limit.
var ErrGroupFull = errors.New("store: group member limit reached")

// SuperGroup is a super-group without its member list.
type SuperGroup struct {
	AppKey  string
	GroupID string
	Name    string
	Owner   string
	Count   int   // members
	LastSeq int64 // the group's last message sequence
	Created time.Time
}

// SuperStore is the super-group part of Store.
type SuperStore interface {
	// CreateSuperGroup stores a group with its first members (the owner
	// included); ErrGroupFull when they exceed maxMembers.
	CreateSuperGroup(ctx context.Context, g SuperGroup, members []string, maxMembers int) error
	// SuperGroup returns ErrNotFound for an unknown or dismissed group.
	SuperGroup(ctx context.Context, appkey, groupID string) (SuperGroup, error)
	// AddSuperMembers adds a batch in one transaction and returns the
	// accounts actually added and the new count; ErrGroupFull (nothing
	// added) when the count would exceed maxMembers. New members start
	// with everything before their join read.
	AddSuperMembers(ctx context.Context, appkey, groupID string, accounts []string, maxMembers int) ([]string, int, error)
	// RemoveSuperMembers removes a batch in one transaction.
	RemoveSuperMembers(ctx context.Context, appkey, groupID string, accounts []string) ([]string, int, error)
	// SuperMembers pages members in account order after the account after.
	SuperMembers(ctx context.Context, appkey, groupID, after string, limit int) ([]string, bool, error)
	// IsSuperMember reports whether account belongs to the live group.
	IsSuperMember(ctx context.Context, appkey, groupID, account string) (bool, error)
	// SuperGroupsOf lists the account's live super-groups.
	SuperGroupsOf(ctx context.Context, appkey, account string) ([]SuperGroup, error)
	// DismissSuperGroup marks the group dismissed; its member and mention
	// rows are purged in the background (the messages stay, as for any
	// conversation).
	DismissSuperGroup(ctx context.Context, appkey, groupID string) error
	// MarkSuperRead moves the member's read position up to seq (never back,
	// never past the group's last seq) and returns it; ErrForbidden for a
	// non-member.
	MarkSuperRead(ctx context.Context, appkey, groupID, account string, seq int64) (int64, error)
	// AddSuperMentions records that message seq mentions accounts (those
	// that are members; MentionAll is stored as one row). Idempotent.
	AddSuperMentions(ctx context.Context, appkey, groupID string, seq int64, accounts []string) error
	// SuperConversations are the account's super-group conversations with
	// messages, most recent first: unread = last seq − read seq; mentions
	// counts unread messages that mention the account or "@all".
	SuperConversations(ctx context.Context, appkey, account string, limit int) ([]ConvState, error)
	// CreateUsers creates a batch of users in one transaction (members of
	// large groups are created in bulk) and returns the accounts created;
	// existing ones are left as they are.
	CreateUsers(ctx context.Context, users []User) ([]string, error)
}

// MentionAll is the mention of every member, stored as one row.
const MentionAll = "@all"

// superMigration (version 3) adds the super-group tables.
var superMigration = migration{3, "super-groups", []string{
	`CREATE TABLE super_groups (
			appkey TEXT NOT NULL,
			group_id TEXT NOT NULL,
			name TEXT NOT NULL,
			owner TEXT NOT NULL,
			created BIGINT NOT NULL,
			dismissed INTEGER NOT NULL DEFAULT 0,
			members BIGINT NOT NULL DEFAULT 0,
			PRIMARY KEY (appkey, group_id))`,
	`CREATE TABLE super_members (
			appkey TEXT NOT NULL,
			group_id TEXT NOT NULL,
			account TEXT NOT NULL,
			joined BIGINT NOT NULL,
			read_seq BIGINT NOT NULL DEFAULT 0,
			PRIMARY KEY (appkey, group_id, account)) {{without_rowid}}`,
	`CREATE INDEX super_members_account ON super_members (appkey, account)`,
	`CREATE TABLE super_mentions (
			appkey TEXT NOT NULL,
			account TEXT NOT NULL,
			group_id TEXT NOT NULL,
			seq BIGINT NOT NULL,
			PRIMARY KEY (appkey, account, group_id, seq)) {{without_rowid}}`,
}}

// superChunk bounds the rows of one multi-row statement (parameters stay
// far below SQLite's and PostgreSQL's limits).
const superChunk = 250

func superConv(groupID string) string { return "s:" + groupID }

func (s *sqlStore) CreateSuperGroup(ctx context.Context, g SuperGroup, members []string, maxMembers int) error {
	if len(members) > maxMembers {
		return ErrGroupFull
	}
	if g.Created.IsZero() {
		g.Created = time.Now()
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: create super group: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, s.q(`INSERT INTO super_groups (appkey, group_id, name, owner, created, members) VALUES (?, ?, ?, ?, ?, 0)
		ON CONFLICT (appkey, group_id) DO NOTHING`), g.AppKey, g.GroupID, g.Name, g.Owner, g.Created.UnixMilli())
	if err != nil {
		return fmt.Errorf("store: create super group: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	if _, _, err := s.addSuperTx(ctx, tx, g.AppKey, g.GroupID, members, maxMembers, g.Created); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: create super group: %w", err)
	}
	return nil
}

// lockSuperTx locks the live group's row and returns its member count.
func (s *sqlStore) lockSuperTx(ctx context.Context, tx *sql.Tx, appkey, groupID string) (int, error) {
	var dismissed, count int
	err := tx.QueryRowContext(ctx, s.q(`SELECT dismissed, members FROM super_groups WHERE appkey = ? AND group_id = ?`+s.d.forUpdate),
		appkey, groupID).Scan(&dismissed, &count)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && dismissed != 0) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("store: super group: %w", err)
	}
	return count, nil
}

// appendAccounts appends rows' one column of accounts to dst and closes
// rows.
func appendAccounts(dst []string, rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return dst, err
		}
		dst = append(dst, a)
	}
	return dst, rows.Err()
}

// inList returns "?, ?, …" for n values.
func inList(n int) string { return strings.TrimSuffix(strings.Repeat("?, ", n), ", ") }

func (s *sqlStore) addSuperTx(ctx context.Context, tx *sql.Tx, appkey, groupID string, accounts []string, maxMembers int, now time.Time) ([]string, int, error) {
	count, err := s.lockSuperTx(ctx, tx, appkey, groupID)
	if err != nil {
		return nil, 0, err
	}
	// New members have read everything before their join.
	var last int64
	err = tx.QueryRowContext(ctx, s.q(`SELECT last_seq FROM conversations WHERE appkey = ? AND conv_id = ?`), appkey, superConv(groupID)).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, 0, fmt.Errorf("store: add super members: %w", err)
	}
	var added []string
	for off := 0; off < len(accounts); off += superChunk {
		part := accounts[off:min(off+superChunk, len(accounts))]
		args := make([]any, 0, 5*len(part))
		for _, a := range part {
			args = append(args, appkey, groupID, a, now.UnixMilli(), last)
		}
		rows, err := tx.QueryContext(ctx, s.q(`INSERT INTO super_members (appkey, group_id, account, joined, read_seq) VALUES `+
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?), ", len(part)), ", ")+
			` ON CONFLICT (appkey, group_id, account) DO NOTHING RETURNING account`), args...)
		if err != nil {
			return nil, 0, fmt.Errorf("store: add super members: %w", err)
		}
		if added, err = appendAccounts(added, rows); err != nil {
			return nil, 0, fmt.Errorf("store: add super members: %w", err)
		}
	}
	count += len(added)
	if count > maxMembers {
		return nil, 0, ErrGroupFull
	}
	if len(added) > 0 {
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE super_groups SET members = ? WHERE appkey = ? AND group_id = ?`), count, appkey, groupID); err != nil {
			return nil, 0, fmt.Errorf("store: add super members: %w", err)
		}
	}
	return added, count, nil
}

func (s *sqlStore) AddSuperMembers(ctx context.Context, appkey, groupID string, accounts []string, maxMembers int) ([]string, int, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("store: add super members: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	added, count, err := s.addSuperTx(ctx, tx, appkey, groupID, accounts, maxMembers, time.Now())
	if err != nil {
		return nil, 0, err
	}
	if err := tx.Commit(); err != nil {
		return nil, 0, fmt.Errorf("store: add super members: %w", err)
	}
	return added, count, nil
}

func (s *sqlStore) RemoveSuperMembers(ctx context.Context, appkey, groupID string, accounts []string) ([]string, int, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("store: remove super members: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	count, err := s.lockSuperTx(ctx, tx, appkey, groupID)
	if err != nil {
		return nil, 0, err
	}
	var removed []string
	for off := 0; off < len(accounts); off += superChunk {
		part := accounts[off:min(off+superChunk, len(accounts))]
		args := make([]any, 0, 2+len(part))
		args = append(args, appkey, groupID)
		for _, a := range part {
			args = append(args, a)
		}
		rows, err := tx.QueryContext(ctx, s.q(`DELETE FROM super_members WHERE appkey = ? AND group_id = ? AND account IN (`+inList(len(part))+`) RETURNING account`), args...)
		if err != nil {
			return nil, 0, fmt.Errorf("store: remove super members: %w", err)
		}
		if removed, err = appendAccounts(removed, rows); err != nil {
			return nil, 0, fmt.Errorf("store: remove super members: %w", err)
		}
	}
	if len(removed) > 0 {
		count -= len(removed)
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE super_groups SET members = ? WHERE appkey = ? AND group_id = ?`), count, appkey, groupID); err != nil {
			return nil, 0, fmt.Errorf("store: remove super members: %w", err)
		}
		args := make([]any, 0, 2+len(removed))
		args = append(args, appkey, groupID)
		for _, a := range removed {
			args = append(args, a)
		}
		for off := 0; off < len(removed); off += superChunk {
			part := args[2+off : 2+min(off+superChunk, len(removed))]
			a := append([]any{appkey, groupID}, part...)
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM super_mentions WHERE appkey = ? AND group_id = ? AND account IN (`+inList(len(part))+`)`), a...); err != nil {
				return nil, 0, fmt.Errorf("store: remove super members: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, 0, fmt.Errorf("store: remove super members: %w", err)
	}
	return removed, count, nil
}

func (s *sqlStore) SuperGroup(ctx context.Context, appkey, groupID string) (SuperGroup, error) {
	g := SuperGroup{AppKey: appkey, GroupID: groupID}
	var created int64
	var dismissed int
	var last sql.NullInt64
	err := s.r.QueryRowContext(ctx, s.q(`SELECT g.name, g.owner, g.created, g.dismissed, g.members, c.last_seq FROM super_groups g
		LEFT JOIN conversations c ON c.appkey = g.appkey AND c.conv_id = ?
		WHERE g.appkey = ? AND g.group_id = ?`), superConv(groupID), appkey, groupID).
		Scan(&g.Name, &g.Owner, &created, &dismissed, &g.Count, &last)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && dismissed != 0) {
		return SuperGroup{}, ErrNotFound
	}
	if err != nil {
		return SuperGroup{}, fmt.Errorf("store: super group: %w", err)
	}
	g.Created = time.UnixMilli(created)
	g.LastSeq = last.Int64
	return g, nil
}

func (s *sqlStore) SuperMembers(ctx context.Context, appkey, groupID, after string, limit int) ([]string, bool, error) {
	limit = max(limit, 1)
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT account FROM super_members WHERE appkey = ? AND group_id = ? AND account > ? ORDER BY account LIMIT ?`),
		appkey, groupID, after, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("store: super members: %w", err)
	}
	defer rows.Close()
	out := make([]string, 0, min(limit, 1024))
	more := false
	for rows.Next() {
		if len(out) == limit {
			more = true
			break
		}
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, false, fmt.Errorf("store: super members: %w", err)
		}
		out = append(out, a)
	}
	return out, more, rows.Err()
}

func (s *sqlStore) IsSuperMember(ctx context.Context, appkey, groupID, account string) (bool, error) {
	var n int
	err := s.r.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM super_members sm JOIN super_groups g ON g.appkey = sm.appkey AND g.group_id = sm.group_id
		WHERE sm.appkey = ? AND sm.group_id = ? AND sm.account = ? AND g.dismissed = 0`), appkey, groupID, account).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("store: super member: %w", err)
	}
	return n > 0, nil
}

func (s *sqlStore) SuperGroupsOf(ctx context.Context, appkey, account string) ([]SuperGroup, error) {
	rows, err := s.queryR(ctx, `SELECT g.group_id, g.name, g.owner, g.created, g.members, COALESCE(c.last_seq, 0) FROM super_members sm
		JOIN super_groups g ON g.appkey = sm.appkey AND g.group_id = sm.group_id
		LEFT JOIN conversations c ON c.appkey = sm.appkey AND c.conv_id = 's:' || sm.group_id
		WHERE sm.appkey = ? AND sm.account = ? AND g.dismissed = 0 ORDER BY g.created, g.group_id`, appkey, account)
	if err != nil {
		return nil, fmt.Errorf("store: super groups of: %w", err)
	}
	defer rows.Close()
	var out []SuperGroup
	for rows.Next() {
		g := SuperGroup{AppKey: appkey}
		var created int64
		if err := rows.Scan(&g.GroupID, &g.Name, &g.Owner, &created, &g.Count, &g.LastSeq); err != nil {
			return nil, fmt.Errorf("store: super groups of: %w", err)
		}
		g.Created = time.UnixMilli(created)
		out = append(out, g)
	}
	return out, rows.Err()
}

func (s *sqlStore) DismissSuperGroup(ctx context.Context, appkey, groupID string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: dismiss super group: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := s.lockSuperTx(ctx, tx, appkey, groupID); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE super_groups SET dismissed = 1, members = 0 WHERE appkey = ? AND group_id = ?`), appkey, groupID); err != nil {
		return fmt.Errorf("store: dismiss super group: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: dismiss super group: %w", err)
	}
	s.kickPurge() // the rows go in the background (superpurge.go)
	return nil
}

func (s *sqlStore) MarkSuperRead(ctx context.Context, appkey, groupID, account string, seq int64) (int64, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: mark super read: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var readSeq int64
	var last sql.NullInt64
	err = tx.QueryRowContext(ctx, s.q(`SELECT sm.read_seq, c.last_seq FROM super_members sm
		LEFT JOIN conversations c ON c.appkey = sm.appkey AND c.conv_id = ?
		WHERE sm.appkey = ? AND sm.group_id = ? AND sm.account = ?`+s.forUpdateOf("sm")), superConv(groupID), appkey, groupID, account).Scan(&readSeq, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrForbidden
	}
	if err != nil {
		return 0, fmt.Errorf("store: mark super read: %w", err)
	}
	next := min(max(readSeq, seq), last.Int64)
	if next <= readSeq {
		return readSeq, nil
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE super_members SET read_seq = ? WHERE appkey = ? AND group_id = ? AND account = ?`),
		next, appkey, groupID, account); err != nil {
		return 0, fmt.Errorf("store: mark super read: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: mark super read: %w", err)
	}
	return next, nil
}

func (s *sqlStore) AddSuperMentions(ctx context.Context, appkey, groupID string, seq int64, accounts []string) error {
	var all bool
	var named []any
	for _, a := range accounts {
		if a == MentionAll {
			all = true
		} else {
			named = append(named, a)
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: super mentions: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if all {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO super_mentions (appkey, account, group_id, seq) VALUES (?, ?, ?, ?)
			ON CONFLICT (appkey, account, group_id, seq) DO NOTHING`), appkey, MentionAll, groupID, seq); err != nil {
			return fmt.Errorf("store: super mentions: %w", err)
		}
	}
	for off := 0; off < len(named); off += superChunk {
		part := named[off:min(off+superChunk, len(named))]
		args := append([]any{seq, appkey, groupID}, part...)
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO super_mentions (appkey, account, group_id, seq)
			SELECT appkey, account, group_id, ? FROM super_members WHERE appkey = ? AND group_id = ? AND account IN (`+inList(len(part))+`)
			ON CONFLICT (appkey, account, group_id, seq) DO NOTHING`), args...); err != nil {
			return fmt.Errorf("store: super mentions: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: super mentions: %w", err)
	}
	return nil
}

func (s *sqlStore) SuperConversations(ctx context.Context, appkey, account string, limit int) ([]ConvState, error) {
	limit = max(limit, 1)
	rows, err := s.queryR(ctx, `SELECT sm.group_id, c.last_seq, c.last_time, sm.read_seq,
		(SELECT COUNT(*) FROM super_mentions mn WHERE mn.appkey = sm.appkey AND mn.group_id = sm.group_id AND mn.seq > sm.read_seq
			AND (mn.account = sm.account OR mn.account = ?)), `+lastMessageCols+`
		FROM super_members sm
		JOIN super_groups g ON g.appkey = sm.appkey AND g.group_id = sm.group_id
		JOIN conversations c ON c.appkey = sm.appkey AND c.conv_id = 's:' || sm.group_id
		LEFT JOIN messages m ON m.appkey = c.appkey AND m.conv_id = c.conv_id AND m.seq = c.last_seq
		WHERE sm.appkey = ? AND sm.account = ? AND g.dismissed = 0
		ORDER BY c.last_time DESC, sm.group_id LIMIT ?`, MentionAll, appkey, account, limit)
	if err != nil {
		return nil, fmt.Errorf("store: super conversations: %w", err)
	}
	defer rows.Close()
	var out []ConvState
	for rows.Next() {
		var c ConvState
		var gid string
		var last lastMessage
		if err := rows.Scan(append([]any{&gid, &c.LastSeq, &c.LastTime, &c.ReadSeq, &c.Mentions}, last.dest()...)...); err != nil {
			return nil, fmt.Errorf("store: super conversations: %w", err)
		}
		c.ConvID, c.ConvType, c.Peer = superConv(gid), superConvType, gid
		c.Unread = max(c.LastSeq-c.ReadSeq, 0)
		c.Last = last.message(appkey)
		out = append(out, c)
	}
	return out, rows.Err()
}

// forUpdateOf locks only table t's rows (PostgreSQL refuses FOR UPDATE on
// the nullable side of an outer join).
func (s *sqlStore) forUpdateOf(t string) string {
	if s.d.forUpdate == "" {
		return ""
	}
	return s.d.forUpdate + " OF " + t
}

func (s *sqlStore) CreateUsers(ctx context.Context, users []User) ([]string, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: create users: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	now := time.Now()
	var created []string
	for off := 0; off < len(users); off += superChunk {
		part := users[off:min(off+superChunk, len(users))]
		args := make([]any, 0, 5*len(part))
		for _, u := range part {
			if u.Created.IsZero() {
				u.Created = now
			}
			args = append(args, u.AppKey, u.Account, u.Name, boolInt(u.Disabled), u.Created.UnixMilli())
		}
		rows, err := tx.QueryContext(ctx, s.q(`INSERT INTO users (appkey, account, name, disabled, created) VALUES `+
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?), ", len(part)), ", ")+
			` ON CONFLICT (appkey, account) DO NOTHING RETURNING account`), args...)
		if err != nil {
			return nil, fmt.Errorf("store: create users: %w", err)
		}
		for rows.Next() {
			var a string
			if err := rows.Scan(&a); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: create users: %w", err)
			}
			created = append(created, a)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("store: create users: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("store: create users: %w", err)
	}
	return created, nil
}

// superConvType is imapi.ConvSuper (the store does not import imapi).
const superConvType = 4
