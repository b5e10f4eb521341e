package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Group roles and group profile (migration 6): members are plain members
// or managers (group_members.role); the owner is im_groups.owner. A group
// also has an announcement, an avatar URL and whether plain members may
// change these and the name (anyone_updates).

// Member roles stored in group_members.role.
const (
	RoleMember  = 0
	RoleManager = 1
)

// GroupMeta is what a group has beyond Group: managers and its profile.
type GroupMeta struct {
	Managers      []string
	Announcement  string
	Avatar        string
	AnyoneUpdates bool
	InviteMode    string // "all" or "managers" (migration 7)
}

// GroupUpdate changes some fields of a group; nil fields are kept.
type GroupUpdate struct {
	Name          *string
	Announcement  *string
	Avatar        *string
	AnyoneUpdates *bool
	InviteMode    *string
}

// GroupRoleStore is the store's part for group roles.
type GroupRoleStore interface {
	// GroupMeta returns ErrNotFound for an unknown or dismissed group.
	GroupMeta(ctx context.Context, appkey, groupID string) (GroupMeta, error)
	// UpdateGroup changes a live group (ErrNotFound otherwise).
	UpdateGroup(ctx context.Context, appkey, groupID string, upd GroupUpdate) error
	// SetGroupRole makes a member a manager or a plain member; ErrForbidden
	// when account is not a member. It reports whether the role changed.
	SetGroupRole(ctx context.Context, appkey, groupID, account string, role int) (bool, error)
	// TransferGroup makes to (a member) the owner in place of from, which
	// stays a plain member. ErrForbidden when from is not the owner or to
	// not a member.
	TransferGroup(ctx context.Context, appkey, groupID, from, to string) error
}

var groupRolesMigration = migration{6, "group roles", []string{
	`ALTER TABLE group_members ADD COLUMN role INTEGER NOT NULL DEFAULT 0`,
	`ALTER TABLE im_groups ADD COLUMN announcement TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE im_groups ADD COLUMN avatar TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE im_groups ADD COLUMN anyone_updates INTEGER NOT NULL DEFAULT 0`,
}}

// groupInviteMigration (7) adds who may add members to a group: "all"
// (every member, the behaviour before it) or "managers".
var groupInviteMigration = migration{7, "group invite mode", []string{
	`ALTER TABLE im_groups ADD COLUMN invite_mode TEXT NOT NULL DEFAULT 'all'`,
}}

func (s *sqlStore) GroupMeta(ctx context.Context, appkey, groupID string) (GroupMeta, error) {
	var m GroupMeta
	var dismissed, anyone int
	err := s.r.QueryRowContext(ctx, s.q(`SELECT announcement, avatar, anyone_updates, invite_mode, dismissed FROM im_groups WHERE appkey = ? AND group_id = ?`), appkey, groupID).
		Scan(&m.Announcement, &m.Avatar, &anyone, &m.InviteMode, &dismissed)
	if errors.Is(err, sql.ErrNoRows) || dismissed != 0 {
		return GroupMeta{}, ErrNotFound
	}
	if err != nil {
		return GroupMeta{}, fmt.Errorf("store: group meta: %w", err)
	}
	m.AnyoneUpdates = anyone != 0
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT account FROM group_members WHERE appkey = ? AND group_id = ? AND role = ? ORDER BY joined, account`),
		appkey, groupID, RoleManager)
	if err != nil {
		return GroupMeta{}, fmt.Errorf("store: group managers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return GroupMeta{}, fmt.Errorf("store: group managers: %w", err)
		}
		m.Managers = append(m.Managers, a)
	}
	return m, rows.Err()
}

func (s *sqlStore) UpdateGroup(ctx context.Context, appkey, groupID string, upd GroupUpdate) error {
	var sets []string
	var args []any
	if upd.Name != nil {
		sets, args = append(sets, "name = ?"), append(args, *upd.Name)
	}
	if upd.Announcement != nil {
		sets, args = append(sets, "announcement = ?"), append(args, *upd.Announcement)
	}
	if upd.Avatar != nil {
		sets, args = append(sets, "avatar = ?"), append(args, *upd.Avatar)
	}
	if upd.AnyoneUpdates != nil {
		sets, args = append(sets, "anyone_updates = ?"), append(args, boolInt(*upd.AnyoneUpdates))
	}
	if upd.InviteMode != nil {
		sets, args = append(sets, "invite_mode = ?"), append(args, *upd.InviteMode)
	}
	if len(sets) == 0 {
		return nil
	}
	args = append(args, appkey, groupID)
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE im_groups SET `+strings.Join(sets, ", ")+` WHERE appkey = ? AND group_id = ? AND dismissed = 0`), args...)
	if err != nil {
		return fmt.Errorf("store: update group: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *sqlStore) SetGroupRole(ctx context.Context, appkey, groupID, account string, role int) (bool, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("store: set group role: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := s.liveGroupTx(ctx, tx, appkey, groupID); err != nil {
		return false, err
	}
	var cur int
	err = tx.QueryRowContext(ctx, s.q(`SELECT role FROM group_members WHERE appkey = ? AND group_id = ? AND account = ?`), appkey, groupID, account).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return false, ErrForbidden
	}
	if err != nil {
		return false, fmt.Errorf("store: set group role: %w", err)
	}
	if cur == role {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE group_members SET role = ? WHERE appkey = ? AND group_id = ? AND account = ?`), role, appkey, groupID, account); err != nil {
		return false, fmt.Errorf("store: set group role: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("store: set group role: %w", err)
	}
	return true, nil
}

func (s *sqlStore) TransferGroup(ctx context.Context, appkey, groupID, from, to string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: transfer group: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := s.liveGroupTx(ctx, tx, appkey, groupID); err != nil {
		return err
	}
	var owner string
	if err := tx.QueryRowContext(ctx, s.q(`SELECT owner FROM im_groups WHERE appkey = ? AND group_id = ?`), appkey, groupID).Scan(&owner); err != nil {
		return fmt.Errorf("store: transfer group: %w", err)
	}
	if owner != from {
		return ErrForbidden
	}
	res, err := tx.ExecContext(ctx, s.q(`UPDATE group_members SET role = ? WHERE appkey = ? AND group_id = ? AND account = ?`), RoleMember, appkey, groupID, to)
	if err != nil {
		return fmt.Errorf("store: transfer group: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrForbidden
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE im_groups SET owner = ? WHERE appkey = ? AND group_id = ?`), to, appkey, groupID); err != nil {
		return fmt.Errorf("store: transfer group: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: transfer group: %w", err)
	}
	return nil
}
