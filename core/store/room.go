package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Room is a chatroom. Rooms keep no per-member conversation state: only
// who is in the room now (presence, one row per session), the roles and
// sanctions of accounts, and the last HistorySize messages.
type Room struct {
	AppKey        string
	RoomID        string
	Name          string
	Owner         string
	Muted         bool // only owner and managers may send
	GuestsCanSend bool
	HistorySize   int     // recent messages kept
	MsgRate       float64 // messages/s into the room (0: the service's default)
	MemberRate    float64 // messages/s per member (0: the service's default)
	LastSeq       int64
	Closed        bool
	Created       time.Time
}

// RoomAccount is the stored state of one account in one room: its role and
// its sanctions (unix milliseconds; 0 means none).
type RoomAccount struct {
	AppKey      string
	RoomID      string
	Account     string
	Role        string
	MutedUntil  int64
	BannedUntil int64
}

// RoomPresence is one session in a room, on one gateway.
type RoomPresence struct {
	AppKey    string
	RoomID    string
	SessionID string
	Account   string
	Gateway   string
	Entered   time.Time
}

// RoomMemberRow is one account in a room, with its role (RoomAccount's, or
// "" when it has no stored role) and mute.
type RoomMemberRow struct {
	Account    string
	Role       string
	MutedUntil int64
}

// RoomMessage is one message of a room's recent history.
type RoomMessage struct {
	AppKey      string
	RoomID      string
	Seq         int64
	MsgID       string
	Sender      string
	ClientMsgID string
	Type        string
	Body        []byte
	Time        int64 // unix milliseconds
}

// RoomStore is the chatroom part of Store.
type RoomStore interface {
	// CreateRoom stores a room and its owner's role; ErrExists when the id
	// is taken (closed rooms keep their id).
	CreateRoom(ctx context.Context, r Room) error
	// Room returns ErrNotFound for an unknown room; a closed room is
	// returned with Closed set.
	Room(ctx context.Context, appkey, roomID string) (Room, error)
	// CloseRoom marks the room closed and removes its presence; ErrNotFound
	// for an unknown or already closed room.
	CloseRoom(ctx context.Context, appkey, roomID string) error
	// SetRoomMuted mutes or unmutes the whole room.
	SetRoomMuted(ctx context.Context, appkey, roomID string, muted bool) error

	// RoomAccount returns ErrNotFound when the account has no stored state.
	RoomAccount(ctx context.Context, appkey, roomID, account string) (RoomAccount, error)
	// PutRoomAccount creates or replaces an account's role and sanctions.
	PutRoomAccount(ctx context.Context, a RoomAccount) error

	// EnterRoom records a session in a live room (ErrNotFound otherwise);
	// entering twice is harmless.
	EnterRoom(ctx context.Context, p RoomPresence) error
	// InRoom reports whether a session is in the room.
	InRoom(ctx context.Context, appkey, roomID, sessionID string) (bool, error)
	// LeaveRoom removes one session; it reports whether it was there.
	LeaveRoom(ctx context.Context, appkey, roomID, sessionID string) (bool, error)
	// RemoveRoomAccount removes every session of an account and returns how
	// many there were.
	RemoveRoomAccount(ctx context.Context, appkey, roomID, account string) (int, error)
	// RemoveGatewayPresence removes the presence a gateway recorded before
	// a time (the gateway died or restarted) and returns how many sessions
	// it held.
	RemoveGatewayPresence(ctx context.Context, gateway string, before time.Time) (int, error)
	// RoomMembers pages through the accounts present, in account order,
	// after the given account; more reports whether another page exists.
	RoomMembers(ctx context.Context, appkey, roomID, after string, limit int) (rows []RoomMemberRow, more bool, err error)
	// RoomGateways maps the gateways holding sessions of the room to their
	// session counts.
	RoomGateways(ctx context.Context, appkey, roomID string) (map[string]int, error)

	// AppendRoomMessage gives m the room's next sequence, stores it and
	// drops messages older than the room's HistorySize. It fails with
	// ErrNotFound for an unknown or closed room.
	AppendRoomMessage(ctx context.Context, m *RoomMessage) error
	// RoomHistory returns the room's last limit messages, oldest first.
	RoomHistory(ctx context.Context, appkey, roomID string, limit int) ([]RoomMessage, error)
}

// roomMigration is schema version 2 (chatrooms).
var roomMigration = migration{2, "chatrooms", []string{
	`CREATE TABLE rooms (
		appkey TEXT NOT NULL,
		room_id TEXT NOT NULL,
		name TEXT NOT NULL,
		owner TEXT NOT NULL,
		muted INTEGER NOT NULL DEFAULT 0,
		guests_can_send INTEGER NOT NULL DEFAULT 0,
		history_size INTEGER NOT NULL,
		msg_rate DOUBLE PRECISION NOT NULL DEFAULT 0,
		member_rate DOUBLE PRECISION NOT NULL DEFAULT 0,
		last_seq BIGINT NOT NULL DEFAULT 0,
		closed INTEGER NOT NULL DEFAULT 0,
		created BIGINT NOT NULL,
		PRIMARY KEY (appkey, room_id))`,
	`CREATE TABLE room_accounts (
		appkey TEXT NOT NULL,
		room_id TEXT NOT NULL,
		account TEXT NOT NULL,
		role TEXT NOT NULL,
		muted_until BIGINT NOT NULL DEFAULT 0,
		banned_until BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (appkey, room_id, account)) {{without_rowid}}`,
	`CREATE TABLE room_presence (
		appkey TEXT NOT NULL,
		room_id TEXT NOT NULL,
		session_id TEXT NOT NULL,
		account TEXT NOT NULL,
		gateway TEXT NOT NULL,
		entered BIGINT NOT NULL,
		PRIMARY KEY (appkey, room_id, session_id)) {{without_rowid}}`,
	`CREATE INDEX room_presence_account ON room_presence (appkey, room_id, account)`,
	`CREATE TABLE room_messages (
		appkey TEXT NOT NULL,
		room_id TEXT NOT NULL,
		seq BIGINT NOT NULL,
		msg_id TEXT NOT NULL,
		sender TEXT NOT NULL,
		client_msg_id TEXT NOT NULL,
		msg_type TEXT NOT NULL,
		body TEXT NOT NULL,
		ts BIGINT NOT NULL,
		PRIMARY KEY (appkey, room_id, seq)) {{without_rowid}}`,
}}

// prepared caches prepared statements by database and query: the room
// queries run once per enter and per message, and parsing them each time
// was a fifth of the CPU of a crowd entering a room; the login's and the
// conversation list's queries (each client's first requests after a
// reconnect) were a quarter of a reconnect storm's.
type prepared struct {
	mu sync.Mutex
	m  map[preparedKey]*sql.Stmt
}

type preparedKey struct {
	db *sql.DB
	q  string
}

func (p *prepared) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.m {
		_ = st.Close()
	}
	p.m = nil
}

// stmtOn returns the prepared form of query (rebound) on db.
func (s *sqlStore) stmtOn(ctx context.Context, db *sql.DB, query string) (*sql.Stmt, error) {
	k := preparedKey{db, query}
	s.prep.mu.Lock()
	st := s.prep.m[k]
	s.prep.mu.Unlock()
	if st != nil {
		return st, nil
	}
	st, err := db.PrepareContext(ctx, s.q(query))
	if err != nil {
		return nil, err
	}
	s.prep.mu.Lock()
	defer s.prep.mu.Unlock()
	if s.prep.m == nil {
		s.prep.m = map[preparedKey]*sql.Stmt{}
	}
	if prev := s.prep.m[k]; prev != nil {
		_ = st.Close()
		return prev, nil
	}
	s.prep.m[k] = st
	return st, nil
}

// execW runs a prepared write.
func (s *sqlStore) execW(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := s.stmtOn(ctx, s.w, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// queryR runs a prepared read.
func (s *sqlStore) queryR(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.stmtOn(ctx, s.r, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// rowR runs a prepared single-row read.
func (s *sqlStore) rowR(ctx context.Context, query string, args ...any) (*sql.Row, error) {
	st, err := s.stmtOn(ctx, s.r, query)
	if err != nil {
		return nil, err
	}
	return st.QueryRowContext(ctx, args...), nil
}

func (s *sqlStore) CreateRoom(ctx context.Context, r Room) error {
	if r.Created.IsZero() {
		r.Created = time.Now()
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: create room: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, s.q(`INSERT INTO rooms (appkey, room_id, name, owner, muted, guests_can_send, history_size,
		msg_rate, member_rate, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (appkey, room_id) DO NOTHING`),
		r.AppKey, r.RoomID, r.Name, r.Owner, boolInt(r.Muted), boolInt(r.GuestsCanSend), r.HistorySize,
		r.MsgRate, r.MemberRate, r.Created.UnixMilli())
	if err != nil {
		return fmt.Errorf("store: create room: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO room_accounts (appkey, room_id, account, role) VALUES (?, ?, ?, 'owner')
		ON CONFLICT (appkey, room_id, account) DO UPDATE SET role = 'owner'`), r.AppKey, r.RoomID, r.Owner); err != nil {
		return fmt.Errorf("store: create room: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: create room: %w", err)
	}
	return nil
}

func (s *sqlStore) Room(ctx context.Context, appkey, roomID string) (Room, error) {
	r := Room{AppKey: appkey, RoomID: roomID}
	var muted, guests, closed int
	var created int64
	row, err := s.rowR(ctx, `SELECT name, owner, muted, guests_can_send, history_size, msg_rate, member_rate,
		last_seq, closed, created FROM rooms WHERE appkey = ? AND room_id = ?`, appkey, roomID)
	if err == nil {
		err = row.Scan(&r.Name, &r.Owner, &muted, &guests, &r.HistorySize, &r.MsgRate, &r.MemberRate, &r.LastSeq, &closed, &created)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return Room{}, ErrNotFound
	}
	if err != nil {
		return Room{}, fmt.Errorf("store: room: %w", err)
	}
	r.Muted, r.GuestsCanSend, r.Closed = muted != 0, guests != 0, closed != 0
	r.Created = time.UnixMilli(created)
	return r, nil
}

func (s *sqlStore) CloseRoom(ctx context.Context, appkey, roomID string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: close room: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, s.q(`UPDATE rooms SET closed = 1 WHERE appkey = ? AND room_id = ? AND closed = 0`), appkey, roomID)
	if err != nil {
		return fmt.Errorf("store: close room: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM room_presence WHERE appkey = ? AND room_id = ?`), appkey, roomID); err != nil {
		return fmt.Errorf("store: close room: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: close room: %w", err)
	}
	return nil
}

func (s *sqlStore) SetRoomMuted(ctx context.Context, appkey, roomID string, muted bool) error {
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE rooms SET muted = ? WHERE appkey = ? AND room_id = ? AND closed = 0`), boolInt(muted), appkey, roomID)
	if err != nil {
		return fmt.Errorf("store: mute room: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *sqlStore) RoomAccount(ctx context.Context, appkey, roomID, account string) (RoomAccount, error) {
	a := RoomAccount{AppKey: appkey, RoomID: roomID, Account: account}
	row, err := s.rowR(ctx, `SELECT role, muted_until, banned_until FROM room_accounts
		WHERE appkey = ? AND room_id = ? AND account = ?`, appkey, roomID, account)
	if err == nil {
		err = row.Scan(&a.Role, &a.MutedUntil, &a.BannedUntil)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return RoomAccount{}, ErrNotFound
	}
	if err != nil {
		return RoomAccount{}, fmt.Errorf("store: room account: %w", err)
	}
	return a, nil
}

func (s *sqlStore) PutRoomAccount(ctx context.Context, a RoomAccount) error {
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO room_accounts (appkey, room_id, account, role, muted_until, banned_until)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (appkey, room_id, account) DO UPDATE SET role = excluded.role,
		muted_until = excluded.muted_until, banned_until = excluded.banned_until`),
		a.AppKey, a.RoomID, a.Account, a.Role, a.MutedUntil, a.BannedUntil)
	if err != nil {
		return fmt.Errorf("store: put room account: %w", err)
	}
	return nil
}

func (s *sqlStore) EnterRoom(ctx context.Context, p RoomPresence) error {
	if p.Entered.IsZero() {
		p.Entered = time.Now()
	}
	// One statement: the presence row exists only while the room is live.
	res, err := s.execW(ctx, `INSERT INTO room_presence (appkey, room_id, session_id, account, gateway, entered)
		SELECT ?, ?, ?, ?, ?, ? FROM rooms WHERE appkey = ? AND room_id = ? AND closed = 0
		ON CONFLICT (appkey, room_id, session_id) DO UPDATE SET gateway = excluded.gateway`,
		p.AppKey, p.RoomID, p.SessionID, p.Account, p.Gateway, p.Entered.UnixMilli(), p.AppKey, p.RoomID)
	if err != nil {
		return fmt.Errorf("store: enter room: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *sqlStore) InRoom(ctx context.Context, appkey, roomID, sessionID string) (bool, error) {
	var n int
	row, err := s.rowR(ctx, `SELECT COUNT(*) FROM room_presence WHERE appkey = ? AND room_id = ? AND session_id = ?`,
		appkey, roomID, sessionID)
	if err == nil {
		err = row.Scan(&n)
	}
	if err != nil {
		return false, fmt.Errorf("store: in room: %w", err)
	}
	return n > 0, nil
}

func (s *sqlStore) LeaveRoom(ctx context.Context, appkey, roomID, sessionID string) (bool, error) {
	res, err := s.execW(ctx, `DELETE FROM room_presence WHERE appkey = ? AND room_id = ? AND session_id = ?`, appkey, roomID, sessionID)
	if err != nil {
		return false, fmt.Errorf("store: leave room: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

func (s *sqlStore) RemoveRoomAccount(ctx context.Context, appkey, roomID, account string) (int, error) {
	res, err := s.w.ExecContext(ctx, s.q(`DELETE FROM room_presence WHERE appkey = ? AND room_id = ? AND account = ?`), appkey, roomID, account)
	if err != nil {
		return 0, fmt.Errorf("store: remove room account: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func (s *sqlStore) RemoveGatewayPresence(ctx context.Context, gateway string, before time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, s.q(`DELETE FROM room_presence WHERE gateway = ? AND entered < ?`), gateway, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("store: remove gateway presence: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func (s *sqlStore) RoomMembers(ctx context.Context, appkey, roomID, after string, limit int) ([]RoomMemberRow, bool, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT p.account, COALESCE(MAX(a.role), ''), COALESCE(MAX(a.muted_until), 0)
		FROM room_presence p LEFT JOIN room_accounts a ON a.appkey = p.appkey AND a.room_id = p.room_id AND a.account = p.account
		WHERE p.appkey = ? AND p.room_id = ? AND p.account > ?
		GROUP BY p.account ORDER BY p.account LIMIT ?`), appkey, roomID, after, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("store: room members: %w", err)
	}
	defer rows.Close()
	var out []RoomMemberRow
	for rows.Next() {
		var m RoomMemberRow
		if err := rows.Scan(&m.Account, &m.Role, &m.MutedUntil); err != nil {
			return nil, false, fmt.Errorf("store: room members: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("store: room members: %w", err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}

func (s *sqlStore) RoomGateways(ctx context.Context, appkey, roomID string) (map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT gateway, COUNT(*) FROM room_presence WHERE appkey = ? AND room_id = ? GROUP BY gateway`), appkey, roomID)
	if err != nil {
		return nil, fmt.Errorf("store: room gateways: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var g string
		var n int
		if err := rows.Scan(&g, &n); err != nil {
			return nil, fmt.Errorf("store: room gateways: %w", err)
		}
		out[g] = n
	}
	return out, rows.Err()
}

func (s *sqlStore) AppendRoomMessage(ctx context.Context, m *RoomMessage) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: append room message: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var seq int64
	var keep int
	err = tx.QueryRowContext(ctx, s.q(`UPDATE rooms SET last_seq = last_seq + 1 WHERE appkey = ? AND room_id = ? AND closed = 0
		RETURNING last_seq, history_size`), m.AppKey, m.RoomID).Scan(&seq, &keep)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("store: append room message: %w", err)
	}
	m.Seq = seq
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO room_messages (appkey, room_id, seq, msg_id, sender, client_msg_id, msg_type, body, ts)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`), m.AppKey, m.RoomID, seq, m.MsgID, m.Sender, m.ClientMsgID, m.Type, string(m.Body), m.Time); err != nil {
		return fmt.Errorf("store: append room message: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM room_messages WHERE appkey = ? AND room_id = ? AND seq <= ?`), m.AppKey, m.RoomID, seq-int64(keep)); err != nil {
		return fmt.Errorf("store: trim room history: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: append room message: %w", err)
	}
	return nil
}

func (s *sqlStore) RoomHistory(ctx context.Context, appkey, roomID string, limit int) ([]RoomMessage, error) {
	st, err := s.stmtOn(ctx, s.r, `SELECT seq, msg_id, sender, client_msg_id, msg_type, body, ts FROM room_messages
		WHERE appkey = ? AND room_id = ? ORDER BY seq DESC LIMIT ?`)
	if err != nil {
		return nil, fmt.Errorf("store: room history: %w", err)
	}
	rows, err := st.QueryContext(ctx, appkey, roomID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: room history: %w", err)
	}
	defer rows.Close()
	var out []RoomMessage
	for rows.Next() {
		m := RoomMessage{AppKey: appkey, RoomID: roomID}
		var body string
		if err := rows.Scan(&m.Seq, &m.MsgID, &m.Sender, &m.ClientMsgID, &m.Type, &body, &m.Time); err != nil {
			return nil, fmt.Errorf("store: room history: %w", err)
		}
		m.Body = []byte(body)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: room history: %w", err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}
