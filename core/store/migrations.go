package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// migration is one versioned schema change. The statements are portable SQL
// that SQLite and PostgreSQL both accept, so both backends keep one logical
// schema; the only dialect marker is {{without_rowid}}, which makes SQLite
// cluster a table on its primary key (one B-tree less to write per row) and
// is empty on PostgreSQL. Never edit a released migration; append a new one.
type migration struct {
	version int
	name    string
	stmts   []string
}

var migrations = []migration{
	{1, "initial schema", []string{
		`CREATE TABLE apps (
			appkey TEXT PRIMARY KEY,
			secret TEXT NOT NULL,
			devices TEXT NOT NULL,
			heartbeat_sec INTEGER NOT NULL,
			updated BIGINT NOT NULL)`,
		`CREATE TABLE users (
			appkey TEXT NOT NULL,
			account TEXT NOT NULL,
			name TEXT NOT NULL DEFAULT '',
			disabled INTEGER NOT NULL DEFAULT 0,
			created BIGINT NOT NULL,
			PRIMARY KEY (appkey, account))`,
		`CREATE TABLE tokens (
			appkey TEXT NOT NULL,
			account TEXT NOT NULL,
			token_hash TEXT NOT NULL,
			expires BIGINT NOT NULL,
			created BIGINT NOT NULL,
			PRIMARY KEY (appkey, account, token_hash))`,
		`CREATE TABLE conversations (
			appkey TEXT NOT NULL,
			conv_id TEXT NOT NULL,
			conv_type INTEGER NOT NULL,
			last_seq BIGINT NOT NULL,
			last_time BIGINT NOT NULL,
			PRIMARY KEY (appkey, conv_id)) {{without_rowid}}`,
		`CREATE TABLE messages (
			appkey TEXT NOT NULL,
			conv_id TEXT NOT NULL,
			seq BIGINT NOT NULL,
			msg_id TEXT NOT NULL,
			conv_type INTEGER NOT NULL,
			sender TEXT NOT NULL,
			sender_device TEXT NOT NULL DEFAULT '',
			recipient TEXT NOT NULL,
			client_msg_id TEXT NOT NULL,
			msg_type TEXT NOT NULL,
			body TEXT NOT NULL,
			mentions TEXT NOT NULL DEFAULT '',
			ts BIGINT NOT NULL,
			recalled INTEGER NOT NULL DEFAULT 0,
			PRIMARY KEY (appkey, conv_id, seq))`,
		`CREATE UNIQUE INDEX messages_dedupe ON messages (appkey, client_msg_id, conv_id, sender)`,
		`CREATE UNIQUE INDEX messages_msg_id ON messages (appkey, msg_id)`,
		`CREATE TABLE user_convs (
			appkey TEXT NOT NULL,
			account TEXT NOT NULL,
			conv_id TEXT NOT NULL,
			conv_type INTEGER NOT NULL,
			peer TEXT NOT NULL,
			last_seq BIGINT NOT NULL,
			last_time BIGINT NOT NULL,
			read_seq BIGINT NOT NULL DEFAULT 0,
			unread BIGINT NOT NULL DEFAULT 0,
			mentions BIGINT NOT NULL DEFAULT 0,
			PRIMARY KEY (appkey, account, conv_id)) {{without_rowid}}`,
		`CREATE TABLE im_groups (
			appkey TEXT NOT NULL,
			group_id TEXT NOT NULL,
			name TEXT NOT NULL,
			owner TEXT NOT NULL,
			created BIGINT NOT NULL,
			dismissed INTEGER NOT NULL DEFAULT 0,
			PRIMARY KEY (appkey, group_id))`,
		`CREATE TABLE group_members (
			appkey TEXT NOT NULL,
			group_id TEXT NOT NULL,
			account TEXT NOT NULL,
			joined BIGINT NOT NULL,
			PRIMARY KEY (appkey, group_id, account)) {{without_rowid}}`,
		`CREATE INDEX group_members_account ON group_members (appkey, account)`,
	}},
	roomMigration,
	superMigration,
	relationsMigration,
	pushMigration,
	groupRolesMigration,
	groupInviteMigration,
}

// migrate applies the migrations not yet recorded in schema_migrations, each
// in its own transaction. On PostgreSQL an advisory lock keeps several nodes
// starting at once from racing.
func migrate(ctx context.Context, db *sql.DB, d *dialect) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		name TEXT NOT NULL,
		applied BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range migrations {
		if err := applyMigration(ctx, db, d, m); err != nil {
			return fmt.Errorf("migrate %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, d *dialect, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if d.lockMigrations != "" {
		if _, err := tx.ExecContext(ctx, d.lockMigrations); err != nil {
			return err
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, d.rebind(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	for _, s := range m.stmts {
		if _, err := tx.ExecContext(ctx, strings.ReplaceAll(s, "{{without_rowid}}", d.withoutRowID)); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, d.rebind(`INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)`),
		m.version, m.name, time.Now().UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}
