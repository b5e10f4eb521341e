package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Offline push (device tokens, do-not-disturb, the badge) and the session
// event log (logins, logouts, kicks): migration 5.

var pushMigration = migration{5, "push tokens, push settings and the event log", []string{
	`CREATE TABLE push_tokens (
		appkey TEXT NOT NULL,
		account TEXT NOT NULL,
		device_id TEXT NOT NULL,
		provider TEXT NOT NULL,
		token TEXT NOT NULL,
		sandbox INTEGER NOT NULL DEFAULT 0,
		updated BIGINT NOT NULL,
		PRIMARY KEY (appkey, account, device_id))`,
	`CREATE UNIQUE INDEX push_tokens_token ON push_tokens (appkey, provider, token)`,
	`CREATE TABLE push_settings (
		appkey TEXT NOT NULL,
		account TEXT NOT NULL,
		dnd_enabled INTEGER NOT NULL DEFAULT 0,
		dnd_start INTEGER NOT NULL DEFAULT 0,
		dnd_end INTEGER NOT NULL DEFAULT 0,
		dnd_tz TEXT NOT NULL DEFAULT '',
		updated BIGINT NOT NULL,
		PRIMARY KEY (appkey, account))`,
	`CREATE TABLE event_log (
		appkey TEXT NOT NULL,
		event_id TEXT NOT NULL,
		account TEXT NOT NULL,
		kind TEXT NOT NULL,
		ts BIGINT NOT NULL,
		device_id TEXT NOT NULL DEFAULT '',
		device_type TEXT NOT NULL DEFAULT '',
		client_ip TEXT NOT NULL DEFAULT '',
		sdk TEXT NOT NULL DEFAULT '',
		session_id TEXT NOT NULL DEFAULT '',
		gateway TEXT NOT NULL DEFAULT '',
		reason TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (appkey, event_id))`,
	`CREATE INDEX event_log_account ON event_log (appkey, account, ts, event_id)`,
	`CREATE INDEX event_log_time ON event_log (appkey, ts, event_id)`,
}}

// PushToken is the push token of one device of an account.
type PushToken struct {
	AppKey   string
	Account  string
	DeviceID string
	Provider string // imapi.ProviderAPNs, ProviderFCM or ProviderWebhook
	Token    string
	Sandbox  bool
	Updated  time.Time
}

// PushSettings are an account's push preferences; the zero value (no row)
// is "no do-not-disturb".
type PushSettings struct {
	DNDEnabled bool
	DNDStart   int // minutes after local midnight
	DNDEnd     int
	DNDZone    string // IANA time zone; "" is UTC
}

// SessionEvent is one entry of the event log.
type SessionEvent struct {
	AppKey     string
	ID         string // unique per app; orders events of the same millisecond
	Account    string
	Kind       string // login, logout, kick
	Time       int64  // unix milliseconds
	DeviceID   string
	DeviceType string
	ClientIP   string
	SDK        string
	SessionID  string
	Gateway    string
	Reason     string
}

// EventQuery selects a page of an app's event log, oldest first: events
// with From <= Time < To (To 0: no upper bound), of Account when set, after
// the cursor (AfterTime, AfterID) when AfterID is set.
type EventQuery struct {
	AppKey    string
	Account   string
	From, To  int64
	AfterTime int64
	AfterID   string
	Limit     int
}

// PushStore is the part of Store that offline push and the event log need.
type PushStore interface {
	// PutPushToken sets the device's token; the same token held by another
	// device or account of the app is removed (a phone changed hands).
	PutPushToken(ctx context.Context, t PushToken) error
	// DeletePushToken removes the device's token (no error when it has none).
	DeletePushToken(ctx context.Context, appkey, account, deviceID string) error
	// DeletePushTokenValue removes a token the provider reported as no
	// longer valid, whichever device holds it; it reports whether one was.
	DeletePushTokenValue(ctx context.Context, appkey, provider, token string) (bool, error)
	// PushTokens lists the account's devices with a token.
	PushTokens(ctx context.Context, appkey, account string) ([]PushToken, error)
	// PutPushSettings replaces the account's push settings.
	PutPushSettings(ctx context.Context, appkey, account string, ps PushSettings) error
	// PushSettings returns the account's settings (zero when never set).
	PushSettings(ctx context.Context, appkey, account string) (PushSettings, error)
	// UnreadTotal is the account's unread messages across conversations,
	// super-groups included (last seq − read seq), in one query (the badge).
	UnreadTotal(ctx context.Context, appkey, account string) (int64, error)

	// AppendEvents records session events (an id seen before is ignored,
	// so a redelivered event is recorded once).
	AppendEvents(ctx context.Context, evs []SessionEvent) error
	// Events returns a page of the event log and whether more follow.
	Events(ctx context.Context, q EventQuery) ([]SessionEvent, bool, error)
	// DeleteEventsBefore removes events older than before (unix
	// milliseconds) of every app and returns how many went.
	DeleteEventsBefore(ctx context.Context, before int64) (int64, error)
}

func (s *sqlStore) PutPushToken(ctx context.Context, t PushToken) error {
	if t.Updated.IsZero() {
		t.Updated = time.Now()
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: put push token: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM push_tokens WHERE appkey = ? AND provider = ? AND token = ?
		AND NOT (account = ? AND device_id = ?)`), t.AppKey, t.Provider, t.Token, t.Account, t.DeviceID); err != nil {
		return fmt.Errorf("store: put push token: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO push_tokens (appkey, account, device_id, provider, token, sandbox, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (appkey, account, device_id) DO UPDATE SET provider = excluded.provider, token = excluded.token,
		sandbox = excluded.sandbox, updated = excluded.updated`),
		t.AppKey, t.Account, t.DeviceID, t.Provider, t.Token, boolInt(t.Sandbox), t.Updated.UnixMilli()); err != nil {
		return fmt.Errorf("store: put push token: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: put push token: %w", err)
	}
	return nil
}

func (s *sqlStore) DeletePushToken(ctx context.Context, appkey, account, deviceID string) error {
	if _, err := s.w.ExecContext(ctx, s.q(`DELETE FROM push_tokens WHERE appkey = ? AND account = ? AND device_id = ?`),
		appkey, account, deviceID); err != nil {
		return fmt.Errorf("store: delete push token: %w", err)
	}
	return nil
}

func (s *sqlStore) DeletePushTokenValue(ctx context.Context, appkey, provider, token string) (bool, error) {
	res, err := s.w.ExecContext(ctx, s.q(`DELETE FROM push_tokens WHERE appkey = ? AND provider = ? AND token = ?`),
		appkey, provider, token)
	if err != nil {
		return false, fmt.Errorf("store: delete push token: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

func (s *sqlStore) PushTokens(ctx context.Context, appkey, account string) ([]PushToken, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT device_id, provider, token, sandbox, updated FROM push_tokens
		WHERE appkey = ? AND account = ? ORDER BY device_id`), appkey, account)
	if err != nil {
		return nil, fmt.Errorf("store: push tokens: %w", err)
	}
	defer rows.Close()
	var out []PushToken
	for rows.Next() {
		t := PushToken{AppKey: appkey, Account: account}
		var sandbox int
		var updated int64
		if err := rows.Scan(&t.DeviceID, &t.Provider, &t.Token, &sandbox, &updated); err != nil {
			return nil, fmt.Errorf("store: push tokens: %w", err)
		}
		t.Sandbox, t.Updated = sandbox != 0, time.UnixMilli(updated)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: push tokens: %w", err)
	}
	return out, nil
}

func (s *sqlStore) PutPushSettings(ctx context.Context, appkey, account string, ps PushSettings) error {
	if _, err := s.w.ExecContext(ctx, s.q(`INSERT INTO push_settings (appkey, account, dnd_enabled, dnd_start, dnd_end, dnd_tz, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (appkey, account) DO UPDATE SET dnd_enabled = excluded.dnd_enabled, dnd_start = excluded.dnd_start,
		dnd_end = excluded.dnd_end, dnd_tz = excluded.dnd_tz, updated = excluded.updated`),
		appkey, account, boolInt(ps.DNDEnabled), ps.DNDStart, ps.DNDEnd, ps.DNDZone, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("store: put push settings: %w", err)
	}
	return nil
}

func (s *sqlStore) PushSettings(ctx context.Context, appkey, account string) (PushSettings, error) {
	var ps PushSettings
	var enabled int
	err := s.r.QueryRowContext(ctx, s.q(`SELECT dnd_enabled, dnd_start, dnd_end, dnd_tz FROM push_settings
		WHERE appkey = ? AND account = ?`), appkey, account).Scan(&enabled, &ps.DNDStart, &ps.DNDEnd, &ps.DNDZone)
	if errors.Is(err, sql.ErrNoRows) {
		return PushSettings{}, nil
	}
	if err != nil {
		return PushSettings{}, fmt.Errorf("store: push settings: %w", err)
	}
	ps.DNDEnabled = enabled != 0
	return ps, nil
}

func (s *sqlStore) UnreadTotal(ctx context.Context, appkey, account string) (int64, error) {
	// One query: ordinary conversations keep a counter per member;
	// super-groups (read diffusion) count last seq − read seq per live group.
	var n int64
	if err := s.r.QueryRowContext(ctx, s.q(`SELECT
		COALESCE((SELECT SUM(unread) FROM user_convs WHERE appkey = ? AND account = ?), 0) +
		COALESCE((SELECT SUM(CASE WHEN c.last_seq > sm.read_seq THEN c.last_seq - sm.read_seq ELSE 0 END) FROM super_members sm
			JOIN super_groups g ON g.appkey = sm.appkey AND g.group_id = sm.group_id
			JOIN conversations c ON c.appkey = sm.appkey AND c.conv_id = 's:' || sm.group_id
			WHERE sm.appkey = ? AND sm.account = ? AND g.dismissed = 0), 0)`),
		appkey, account, appkey, account).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: unread total: %w", err)
	}
	return n, nil
}

func (s *sqlStore) AppendEvents(ctx context.Context, evs []SessionEvent) error {
	if len(evs) == 0 {
		return nil
	}
	// Prepared once (a reconnect storm writes an entry per login).
	ins, err := s.stmtOn(ctx, s.w, `INSERT INTO event_log (appkey, event_id, account, kind, ts, device_id, device_type, client_ip, sdk, session_id, gateway, reason)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (appkey, event_id) DO NOTHING`)
	if err != nil {
		return fmt.Errorf("store: append events: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: append events: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	st := tx.StmtContext(ctx, ins)
	for _, e := range evs {
		if _, err := st.ExecContext(ctx, e.AppKey, e.ID, e.Account, e.Kind, e.Time, e.DeviceID, e.DeviceType,
			e.ClientIP, e.SDK, e.SessionID, e.Gateway, e.Reason); err != nil {
			return fmt.Errorf("store: append events: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: append events: %w", err)
	}
	return nil
}

func (s *sqlStore) Events(ctx context.Context, q EventQuery) ([]SessionEvent, bool, error) {
	var where []string
	args := []any{q.AppKey}
	where = append(where, "appkey = ?")
	if q.Account != "" {
		where = append(where, "account = ?")
		args = append(args, q.Account)
	}
	where = append(where, "ts >= ?")
	args = append(args, q.From)
	if q.To > 0 {
		where = append(where, "ts < ?")
		args = append(args, q.To)
	}
	if q.AfterID != "" {
		where = append(where, "(ts > ? OR (ts = ? AND event_id > ?))")
		args = append(args, q.AfterTime, q.AfterTime, q.AfterID)
	}
	limit := max(q.Limit, 1)
	args = append(args, limit+1)
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT event_id, account, kind, ts, device_id, device_type, client_ip, sdk, session_id, gateway, reason
		FROM event_log WHERE `+strings.Join(where, " AND ")+` ORDER BY ts, event_id LIMIT ?`), args...)
	if err != nil {
		return nil, false, fmt.Errorf("store: events: %w", err)
	}
	defer rows.Close()
	var out []SessionEvent
	for rows.Next() {
		e := SessionEvent{AppKey: q.AppKey}
		if err := rows.Scan(&e.ID, &e.Account, &e.Kind, &e.Time, &e.DeviceID, &e.DeviceType, &e.ClientIP, &e.SDK,
			&e.SessionID, &e.Gateway, &e.Reason); err != nil {
			return nil, false, fmt.Errorf("store: events: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("store: events: %w", err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}

func (s *sqlStore) DeleteEventsBefore(ctx context.Context, before int64) (int64, error) {
	res, err := s.w.ExecContext(ctx, s.q(`DELETE FROM event_log WHERE ts < ?`), before)
	if err != nil {
		return 0, fmt.Errorf("store: delete events: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
