package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/logging"
)

// sqlStore implements Store over database/sql for both backends.
type sqlStore struct {
	cfg     Config
	d       *dialect
	log     *slog.Logger
	metrics *metrics
	w       *sql.DB // writes (one connection on SQLite)
	r       *sql.DB // reads (the same pool on PostgreSQL)
	ck      *sql.DB // SQLite: the background checkpointer's connection

	stmts stmtCache
	prep  prepared // single-row statements of the chatroom queries (room.go)

	mu       sync.RWMutex // held shared while enqueueing, exclusively to close
	closed   bool
	appendCh chan *unit
	shed     shedder
	quit     chan struct{}
	wg       sync.WaitGroup

	purgeKick chan struct{} // wakes purgeLoop (superpurge.go)

	pg *pgConnector // PostgreSQL's connections (nil on SQLite)
}

// Open connects to the configured backend, runs the migrations and starts
// the group committer(s).
func Open(ctx context.Context, cfg Config, deps Deps) (Store, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	log := logging.OrDiscard(deps.Logger)
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &sqlStore{
		cfg:       cfg,
		log:       log.With("component", "store", "driver", cfg.Driver),
		appendCh:  make(chan *unit, 65536),
		quit:      make(chan struct{}),
		purgeKick: make(chan struct{}, 1),
	}
	var err error
	switch cfg.Driver {
	case DriverSQLite:
		err = s.openSQLite()
	case DriverPostgres:
		err = s.openPostgres()
	}
	if err != nil {
		return nil, err
	}
	fail := func(err error) (Store, error) {
		s.closeDBs()
		return nil, err
	}
	if err := s.w.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("store: connect: %w", err))
	}
	if err := migrate(ctx, s.w, s.d); err != nil {
		return fail(fmt.Errorf("store: %w", err))
	}
	if err := s.prepare(ctx); err != nil {
		return fail(fmt.Errorf("store: prepare: %w", err))
	}
	s.metrics, err = newMetrics(reg, func() float64 { return float64(s.shed.waiting.Load()) }, s.pg)
	if err != nil {
		return fail(fmt.Errorf("store: %w", err))
	}
	n := 1
	if cfg.Driver == DriverPostgres {
		n = cfg.Committers
	}
	s.shed.maxDelay, s.shed.workers = cfg.MaxQueueDelay.D(), float64(n)
	for range n {
		s.wg.Add(1)
		go s.commitLoop()
	}
	if s.ck != nil {
		s.wg.Add(1)
		go s.checkpointLoop()
	}
	s.wg.Add(1)
	go s.purgeLoop()
	return s, nil
}

func (s *sqlStore) openSQLite() error {
	s.d = sqliteDialect
	q := url.Values{}
	for _, p := range []string{
		"journal_mode(WAL)",
		"synchronous(" + strings.ToUpper(s.cfg.Synchronous) + ")",
		fmt.Sprintf("busy_timeout(%d)", s.cfg.BusyTimeout.D().Milliseconds()),
		"foreign_keys(0)",
		"cache_size(-32000)",
		"temp_store(MEMORY)",
		// Checkpoints run in the background (checkpointLoop) so that a
		// commit never waits for one; the writer checkpoints by itself only
		// if the background falls far behind (64 MiB of WAL).
		"wal_autocheckpoint(16384)",
	} {
		q.Add("_pragma", p)
	}
	base := "file:" + s.cfg.Path
	wq := url.Values{"_txlock": {"immediate"}}
	for k, v := range q {
		wq[k] = v
	}
	w, err := sql.Open("sqlite", base+"?"+wq.Encode())
	if err != nil {
		return fmt.Errorf("store: open sqlite: %w", err)
	}
	// One writer connection: SQLite serializes writers anyway, and a single
	// connection keeps the prepared statements hot and avoids SQLITE_BUSY.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	s.w = w
	// The writer creates the file and switches it to WAL before readers open.
	if err := w.Ping(); err != nil {
		_ = w.Close()
		return fmt.Errorf("store: open sqlite %s: %w", s.cfg.Path, err)
	}
	q.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", base+"?"+q.Encode())
	if err != nil {
		_ = w.Close()
		return fmt.Errorf("store: open sqlite: %w", err)
	}
	r.SetMaxOpenConns(s.cfg.ReadConns)
	r.SetMaxIdleConns(s.cfg.ReadConns)
	s.r = r
	ck, err := sql.Open("sqlite", base+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return fmt.Errorf("store: open sqlite: %w", err)
	}
	ck.SetMaxOpenConns(1)
	s.ck = ck
	return nil
}

// checkpointLoop copies the WAL back into the database file (PASSIVE: it
// never blocks the writer or readers) a few times a second.
func (s *sqlStore) checkpointLoop() {
	defer s.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			if _, err := s.ck.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
				s.log.Warn("wal checkpoint", "err", err)
			}
		}
	}
}

func (s *sqlStore) openPostgres() error {
	s.d = postgresDialect
	pc, err := pgx.ParseConfig(s.cfg.DSN.Reveal())
	if err != nil {
		return fmt.Errorf("store: postgres dsn: %w", err)
	}
	// Server-side bounds on every session, unless the DSN sets its own:
	// no node can hold the others' locks for long by stalling.
	for k, v := range map[string]config.Duration{
		"lock_timeout":                        s.cfg.LockTimeout,
		"statement_timeout":                   s.cfg.StatementTimeout,
		"idle_in_transaction_session_timeout": s.cfg.IdleInTransactionTimeout,
	} {
		if _, set := pc.RuntimeParams[k]; !set && v > 0 {
			pc.RuntimeParams[k] = strconv.FormatInt(v.D().Milliseconds(), 10)
		}
	}
	s.pg = newPGConnector(stdlib.GetConnector(*pc), s.cfg.ConnectRetry.D())
	db := sql.OpenDB(s.pg)
	n := s.cfg.ReadConns + s.cfg.Committers + 2
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s.w, s.r = db, db
	return nil
}

func (s *sqlStore) closeDBs() {
	if s.w != nil {
		_ = s.w.Close()
	}
	if s.r != nil && s.r != s.w {
		_ = s.r.Close()
	}
	if s.ck != nil {
		_ = s.ck.Close()
	}
}

// Close stops accepting appends, commits the queued ones and closes the
// database. It is safe to call more than once.
func (s *sqlStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	s.wg.Wait()
	s.stmts.close()
	s.prep.close()
	s.closeDBs()
	return nil
}

func (s *sqlStore) q(query string) string { return s.d.rebind(query) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// --- apps ---

func (s *sqlStore) PutApp(ctx context.Context, a App) error {
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO apps (appkey, secret, devices, heartbeat_sec, updated) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (appkey) DO UPDATE SET secret = excluded.secret, devices = excluded.devices,
		heartbeat_sec = excluded.heartbeat_sec, updated = excluded.updated`),
		a.AppKey, a.Secret, a.Devices, a.HeartbeatSec, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("store: put app: %w", err)
	}
	return nil
}

func (s *sqlStore) App(ctx context.Context, appkey string) (App, error) {
	a := App{AppKey: appkey}
	err := s.r.QueryRowContext(ctx, s.q(`SELECT secret, devices, heartbeat_sec FROM apps WHERE appkey = ?`), appkey).
		Scan(&a.Secret, &a.Devices, &a.HeartbeatSec)
	if errors.Is(err, sql.ErrNoRows) {
		return App{}, ErrNotFound
	}
	if err != nil {
		return App{}, fmt.Errorf("store: app: %w", err)
	}
	return a, nil
}

// --- users and tokens ---

func (s *sqlStore) CreateUser(ctx context.Context, u User) error {
	if u.Created.IsZero() {
		u.Created = time.Now()
	}
	res, err := s.w.ExecContext(ctx, s.q(`INSERT INTO users (appkey, account, name, disabled, created) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (appkey, account) DO NOTHING`),
		u.AppKey, u.Account, u.Name, boolInt(u.Disabled), u.Created.UnixMilli())
	if err != nil {
		return fmt.Errorf("store: create user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

func (s *sqlStore) UpdateUser(ctx context.Context, appkey, account string, upd UserUpdate) (User, error) {
	var sets []string
	var args []any
	if upd.Name != nil {
		sets = append(sets, "name = ?")
		args = append(args, *upd.Name)
	}
	if upd.Disabled != nil {
		sets = append(sets, "disabled = ?")
		args = append(args, boolInt(*upd.Disabled))
	}
	if len(sets) > 0 {
		args = append(args, appkey, account)
		res, err := s.w.ExecContext(ctx, s.q(`UPDATE users SET `+strings.Join(sets, ", ")+` WHERE appkey = ? AND account = ?`), args...)
		if err != nil {
			return User{}, fmt.Errorf("store: update user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return User{}, ErrNotFound
		}
	}
	return s.user(ctx, s.w, appkey, account)
}

func (s *sqlStore) User(ctx context.Context, appkey, account string) (User, error) {
	return s.user(ctx, s.r, appkey, account)
}

func (s *sqlStore) user(ctx context.Context, db *sql.DB, appkey, account string) (User, error) {
	u := User{AppKey: appkey, Account: account}
	var disabled int
	var created int64
	st, err := s.stmtOn(ctx, db, `SELECT name, disabled, created FROM users WHERE appkey = ? AND account = ?`)
	if err != nil {
		return User{}, fmt.Errorf("store: user: %w", err)
	}
	err = st.QueryRowContext(ctx, appkey, account).Scan(&u.Name, &disabled, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("store: user: %w", err)
	}
	u.Disabled = disabled != 0
	u.Created = time.UnixMilli(created)
	return u, nil
}

func (s *sqlStore) UsersExist(ctx context.Context, appkey string, accounts []string) (map[string]bool, error) {
	out := make(map[string]bool, len(accounts))
	if len(accounts) == 0 {
		return out, nil
	}
	ph := strings.TrimSuffix(strings.Repeat("?, ", len(accounts)), ", ")
	args := make([]any, 0, len(accounts)+1)
	args = append(args, appkey)
	for _, a := range accounts {
		args = append(args, a)
	}
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT account FROM users WHERE appkey = ? AND disabled = 0 AND account IN (`+ph+`)`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: users exist: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("store: users exist: %w", err)
		}
		out[a] = true
	}
	return out, rows.Err()
}

func (s *sqlStore) PutToken(ctx context.Context, appkey, account string, hash []byte, expires time.Time, revokeOthers bool) error {
	h := hex.EncodeToString(hash)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: put token: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var n int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM users WHERE appkey = ? AND account = ?`), appkey, account).Scan(&n); err != nil {
		return fmt.Errorf("store: put token: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	now := time.Now().UnixMilli()
	if revokeOthers {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM tokens WHERE appkey = ? AND account = ?`), appkey, account); err != nil {
			return fmt.Errorf("store: put token: %w", err)
		}
	} else if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM tokens WHERE appkey = ? AND account = ? AND expires < ?`), appkey, account, now); err != nil {
		return fmt.Errorf("store: put token: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO tokens (appkey, account, token_hash, expires, created) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (appkey, account, token_hash) DO UPDATE SET expires = excluded.expires`),
		appkey, account, h, expires.UnixMilli(), now); err != nil {
		return fmt.Errorf("store: put token: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: put token: %w", err)
	}
	return nil
}

func (s *sqlStore) CheckToken(ctx context.Context, appkey, account string, hash []byte, now time.Time) (bool, error) {
	var n int
	row, err := s.rowR(ctx, `SELECT COUNT(*) FROM tokens WHERE appkey = ? AND account = ? AND token_hash = ? AND expires > ?`,
		appkey, account, hex.EncodeToString(hash), now.UnixMilli())
	if err == nil {
		err = row.Scan(&n)
	}
	if err != nil {
		return false, fmt.Errorf("store: check token: %w", err)
	}
	return n > 0, nil
}

// --- messages (reads) ---

const msgCols = `conv_id, conv_type, seq, msg_id, sender, sender_device, recipient, client_msg_id, msg_type, body, mentions, ts, recalled`

type scanner interface{ Scan(dest ...any) error }

func scanMessage(sc scanner, appkey string) (Message, error) {
	m := Message{AppKey: appkey}
	var body, mentions string
	var recalled int
	if err := sc.Scan(&m.ConvID, &m.ConvType, &m.Seq, &m.MsgID, &m.Sender, &m.SenderDevice, &m.To,
		&m.ClientMsgID, &m.Type, &body, &mentions, &m.Time, &recalled); err != nil {
		return Message{}, err
	}
	if body != "" {
		m.Body = []byte(body)
	}
	m.Mentions = splitMentions(mentions)
	m.Recalled = recalled != 0
	return m, nil
}

// Mentions are stored as ",a,b," so that one account can be matched with LIKE.
func joinMentions(ms []string) string {
	if len(ms) == 0 {
		return ""
	}
	return "," + strings.Join(ms, ",") + ","
}

func splitMentions(s string) []string {
	s = strings.Trim(s, ",")
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

func (s *sqlStore) queryMessages(ctx context.Context, appkey, query string, limit int, args ...any) ([]Message, bool, error) {
	rows, err := s.r.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, false, fmt.Errorf("store: messages: %w", err)
	}
	defer rows.Close()
	out := make([]Message, 0, min(limit, 64))
	more := false
	for rows.Next() {
		if len(out) == limit {
			more = true
			break
		}
		m, err := scanMessage(rows, appkey)
		if err != nil {
			return nil, false, fmt.Errorf("store: messages: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("store: messages: %w", err)
	}
	return out, more, nil
}

func (s *sqlStore) Messages(ctx context.Context, appkey, convID string, afterSeq int64, limit int) ([]Message, bool, error) {
	if limit < 1 {
		limit = 1
	}
	return s.queryMessages(ctx, appkey, `SELECT `+msgCols+` FROM messages WHERE appkey = ? AND conv_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
		limit, appkey, convID, afterSeq, limit+1)
}

func (s *sqlStore) History(ctx context.Context, appkey, convID string, beforeSeq int64, limit int) ([]Message, bool, error) {
	if limit < 1 {
		limit = 1
	}
	if beforeSeq <= 0 {
		return s.queryMessages(ctx, appkey, `SELECT `+msgCols+` FROM messages WHERE appkey = ? AND conv_id = ? ORDER BY seq DESC LIMIT ?`,
			limit, appkey, convID, limit+1)
	}
	return s.queryMessages(ctx, appkey, `SELECT `+msgCols+` FROM messages WHERE appkey = ? AND conv_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?`,
		limit, appkey, convID, beforeSeq, limit+1)
}

func (s *sqlStore) MessageByID(ctx context.Context, appkey, convID, msgID string) (Message, error) {
	row := s.r.QueryRowContext(ctx, s.q(`SELECT `+msgCols+` FROM messages WHERE appkey = ? AND msg_id = ?`), appkey, msgID)
	m, err := scanMessage(row, appkey)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && m.ConvID != convID) {
		return Message{}, ErrNotFound
	}
	if err != nil {
		return Message{}, fmt.Errorf("store: message: %w", err)
	}
	return m, nil
}

func (s *sqlStore) Recall(ctx context.Context, appkey, convID, msgID string) error {
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE messages SET recalled = 1, body = '' WHERE appkey = ? AND conv_id = ? AND msg_id = ?`),
		appkey, convID, msgID)
	if err != nil {
		return fmt.Errorf("store: recall: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// --- conversation state ---

func (s *sqlStore) MarkRead(ctx context.Context, appkey, account, convID string, seq int64) (int64, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: mark read: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var readSeq, lastSeq int64
	err = tx.QueryRowContext(ctx, s.q(`SELECT read_seq, last_seq FROM user_convs WHERE appkey = ? AND account = ? AND conv_id = ?`+s.d.forUpdate),
		appkey, account, convID).Scan(&readSeq, &lastSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("store: mark read: %w", err)
	}
	next := min(max(readSeq, seq), lastSeq)
	if next == readSeq {
		return readSeq, nil
	}
	var unread, mentions int64
	if next < lastSeq {
		err = tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*), COALESCE(SUM(CASE WHEN mentions LIKE ? ESCAPE '\' THEN 1 ELSE 0 END), 0)
			FROM messages WHERE appkey = ? AND conv_id = ? AND seq > ? AND sender <> ?`),
			"%,"+likeEscape(account)+",%", appkey, convID, next, account).Scan(&unread, &mentions)
		if err != nil {
			return 0, fmt.Errorf("store: mark read: count: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE user_convs SET read_seq = ?, unread = ?, mentions = ? WHERE appkey = ? AND account = ? AND conv_id = ?`),
		next, unread, mentions, appkey, account, convID); err != nil {
		return 0, fmt.Errorf("store: mark read: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: mark read: %w", err)
	}
	return next, nil
}

// lastMessageCols are the columns of a conversation's last message m, which
// a LEFT JOIN leaves out when the conversation has none (lastMessage).
const lastMessageCols = `m.conv_id, m.conv_type, m.seq, m.msg_id, m.sender, m.sender_device, m.recipient, m.client_msg_id, m.msg_type, m.body, m.mentions, m.ts, m.recalled`

// lastMessage scans lastMessageCols.
type lastMessage struct {
	conv, id, sender, dev, to, cmid, typ, body, mentions sql.NullString
	convType, seq, ts, recalled                          sql.NullInt64
}

func (l *lastMessage) dest() []any {
	return []any{&l.conv, &l.convType, &l.seq, &l.id, &l.sender, &l.dev, &l.to, &l.cmid, &l.typ, &l.body, &l.mentions, &l.ts, &l.recalled}
}

// message is the scanned message, nil when there was none.
func (l *lastMessage) message(appkey string) *Message {
	if !l.id.Valid {
		return nil
	}
	m := &Message{AppKey: appkey, ConvID: l.conv.String, ConvType: int(l.convType.Int64), Seq: l.seq.Int64, MsgID: l.id.String,
		Sender: l.sender.String, SenderDevice: l.dev.String, To: l.to.String, ClientMsgID: l.cmid.String, Type: l.typ.String,
		Mentions: splitMentions(l.mentions.String), Time: l.ts.Int64, Recalled: l.recalled.Int64 != 0}
	if l.body.String != "" {
		m.Body = []byte(l.body.String)
	}
	return m
}

func (s *sqlStore) Conversations(ctx context.Context, appkey, account string, limit int) ([]ConvState, error) {
	if limit < 1 {
		limit = 1
	}
	rows, err := s.queryR(ctx, `SELECT uc.conv_id, uc.conv_type, uc.peer, uc.last_seq, uc.last_time, uc.read_seq, uc.unread, uc.mentions, `+lastMessageCols+`
		FROM user_convs uc LEFT JOIN messages m ON m.appkey = uc.appkey AND m.conv_id = uc.conv_id AND m.seq = uc.last_seq
		WHERE uc.appkey = ? AND uc.account = ? ORDER BY uc.last_time DESC, uc.conv_id LIMIT ?`, appkey, account, limit)
	if err != nil {
		return nil, fmt.Errorf("store: conversations: %w", err)
	}
	defer rows.Close()
	var out []ConvState
	for rows.Next() {
		var c ConvState
		var last lastMessage
		if err := rows.Scan(append([]any{&c.ConvID, &c.ConvType, &c.Peer, &c.LastSeq, &c.LastTime, &c.ReadSeq, &c.Unread, &c.Mentions}, last.dest()...)...); err != nil {
			return nil, fmt.Errorf("store: conversations: %w", err)
		}
		c.Last = last.message(appkey)
		out = append(out, c)
	}
	return out, rows.Err()
}

// --- groups ---

func (s *sqlStore) CreateGroup(ctx context.Context, g Group) error {
	if g.Created.IsZero() {
		g.Created = time.Now()
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: create group: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	mode := g.InviteMode
	if mode == "" {
		mode = "all"
	}
	res, err := tx.ExecContext(ctx, s.q(`INSERT INTO im_groups (appkey, group_id, name, owner, created, invite_mode) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (appkey, group_id) DO NOTHING`), g.AppKey, g.GroupID, g.Name, g.Owner, g.Created.UnixMilli(), mode)
	if err != nil {
		return fmt.Errorf("store: create group: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	if _, err := s.addMembersTx(ctx, tx, g.AppKey, g.GroupID, g.Members, g.Created); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: create group: %w", err)
	}
	return nil
}

func (s *sqlStore) addMembersTx(ctx context.Context, tx *sql.Tx, appkey, groupID string, accounts []string, now time.Time) ([]string, error) {
	var added []string
	for _, a := range accounts {
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO group_members (appkey, group_id, account, joined) VALUES (?, ?, ?, ?)
			ON CONFLICT (appkey, group_id, account) DO NOTHING`), appkey, groupID, a, now.UnixMilli())
		if err != nil {
			return nil, fmt.Errorf("store: add member: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			added = append(added, a)
		}
	}
	return added, nil
}

// liveGroupTx locks the group row (PostgreSQL) and fails for unknown or
// dismissed groups.
func (s *sqlStore) liveGroupTx(ctx context.Context, tx *sql.Tx, appkey, groupID string) error {
	var dismissed int
	err := tx.QueryRowContext(ctx, s.q(`SELECT dismissed FROM im_groups WHERE appkey = ? AND group_id = ?`+s.d.forUpdate), appkey, groupID).Scan(&dismissed)
	if errors.Is(err, sql.ErrNoRows) || dismissed != 0 {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("store: group: %w", err)
	}
	return nil
}

func (s *sqlStore) Group(ctx context.Context, appkey, groupID string) (Group, error) {
	g := Group{AppKey: appkey, GroupID: groupID}
	var created int64
	var dismissed int
	err := s.r.QueryRowContext(ctx, s.q(`SELECT name, owner, created, dismissed FROM im_groups WHERE appkey = ? AND group_id = ?`), appkey, groupID).
		Scan(&g.Name, &g.Owner, &created, &dismissed)
	if errors.Is(err, sql.ErrNoRows) || dismissed != 0 {
		return Group{}, ErrNotFound
	}
	if err != nil {
		return Group{}, fmt.Errorf("store: group: %w", err)
	}
	g.Created = time.UnixMilli(created)
	g.Members, err = s.members(ctx, s.r, appkey, groupID)
	return g, err
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *sqlStore) members(ctx context.Context, db querier, appkey, groupID string) ([]string, error) {
	rows, err := db.QueryContext(ctx, s.q(`SELECT account FROM group_members WHERE appkey = ? AND group_id = ? ORDER BY joined, account`), appkey, groupID)
	if err != nil {
		return nil, fmt.Errorf("store: members: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("store: members: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func (s *sqlStore) AddMembers(ctx context.Context, appkey, groupID string, accounts []string) ([]string, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: add members: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := s.liveGroupTx(ctx, tx, appkey, groupID); err != nil {
		return nil, err
	}
	added, err := s.addMembersTx(ctx, tx, appkey, groupID, accounts, time.Now())
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("store: add members: %w", err)
	}
	return added, nil
}

func (s *sqlStore) RemoveMembers(ctx context.Context, appkey, groupID string, accounts []string) ([]string, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: remove members: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := s.liveGroupTx(ctx, tx, appkey, groupID); err != nil {
		return nil, err
	}
	var removed []string
	for _, a := range accounts {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM group_members WHERE appkey = ? AND group_id = ? AND account = ?`), appkey, groupID, a)
		if err != nil {
			return nil, fmt.Errorf("store: remove member: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			removed = append(removed, a)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("store: remove members: %w", err)
	}
	return removed, nil
}

func (s *sqlStore) GroupsOf(ctx context.Context, appkey, account string) ([]Group, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT g.group_id, g.name, g.owner, g.created FROM group_members gm
		JOIN im_groups g ON g.appkey = gm.appkey AND g.group_id = gm.group_id
		WHERE gm.appkey = ? AND gm.account = ? AND g.dismissed = 0 ORDER BY g.created, g.group_id`), appkey, account)
	if err != nil {
		return nil, fmt.Errorf("store: groups of: %w", err)
	}
	var out []Group
	for rows.Next() {
		g := Group{AppKey: appkey}
		var created int64
		if err := rows.Scan(&g.GroupID, &g.Name, &g.Owner, &created); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: groups of: %w", err)
		}
		g.Created = time.UnixMilli(created)
		out = append(out, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: groups of: %w", err)
	}
	for i := range out {
		if out[i].Members, err = s.members(ctx, s.r, appkey, out[i].GroupID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *sqlStore) DismissGroup(ctx context.Context, appkey, groupID string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: dismiss group: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := s.liveGroupTx(ctx, tx, appkey, groupID); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE im_groups SET dismissed = 1 WHERE appkey = ? AND group_id = ?`), appkey, groupID); err != nil {
		return fmt.Errorf("store: dismiss group: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM group_members WHERE appkey = ? AND group_id = ?`), appkey, groupID); err != nil {
		return fmt.Errorf("store: dismiss group: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: dismiss group: %w", err)
	}
	return nil
}
