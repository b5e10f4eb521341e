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

// Group commit: AppendMessage queues a pending append; a committer takes
// everything queued (up to MaxBatch) into one transaction, so one fsync acks
// many messages. SQLite runs one committer (its single writer); PostgreSQL
// runs several, and the transaction takes its row locks in a fixed order
// (conversations sorted by id, then user state sorted by account) so that
// concurrent batches on several nodes cannot deadlock each other.

type pending struct {
	a    *Append
	res  AppendResult
	err  error
	done chan struct{}
}

// appendStmts are prepared once on the writer.
type appendStmts struct {
	dedupe, peer, members, convSeq, insert, ucReset, ucAdd *sql.Stmt
}

func (st *appendStmts) all() []**sql.Stmt {
	return []**sql.Stmt{&st.dedupe, &st.peer, &st.members, &st.convSeq, &st.insert, &st.ucReset, &st.ucAdd}
}

func (st *appendStmts) close() {
	for _, p := range st.all() {
		if *p != nil {
			_ = (*p).Close()
		}
	}
}

func (s *sqlStore) prepare(ctx context.Context) error {
	texts := []string{
		`SELECT msg_id, seq, ts FROM messages WHERE appkey = ? AND conv_id = ? AND sender = ? AND client_msg_id = ?`,
		`SELECT disabled FROM users WHERE appkey = ? AND account = ?`,
		`SELECT account FROM group_members WHERE appkey = ? AND group_id = ?`,
		`INSERT INTO conversations (appkey, conv_id, conv_type, last_seq, last_time) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (appkey, conv_id) DO UPDATE SET last_seq = conversations.last_seq + excluded.last_seq, last_time = excluded.last_time
			RETURNING last_seq`,
		`INSERT INTO messages (appkey, conv_id, seq, msg_id, conv_type, sender, sender_device, recipient, client_msg_id, msg_type, body, mentions, ts)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		`INSERT INTO user_convs (appkey, account, conv_id, conv_type, peer, last_seq, last_time, read_seq, unread, mentions)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (appkey, account, conv_id) DO UPDATE SET last_seq = excluded.last_seq, last_time = excluded.last_time,
			read_seq = CASE WHEN excluded.read_seq > user_convs.read_seq THEN excluded.read_seq ELSE user_convs.read_seq END,
			unread = excluded.unread, mentions = excluded.mentions`,
		`INSERT INTO user_convs (appkey, account, conv_id, conv_type, peer, last_seq, last_time, read_seq, unread, mentions)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (appkey, account, conv_id) DO UPDATE SET last_seq = excluded.last_seq, last_time = excluded.last_time,
			unread = user_convs.unread + excluded.unread, mentions = user_convs.mentions + excluded.mentions`,
	}
	for i, p := range s.stmts.all() {
		st, err := s.w.PrepareContext(ctx, s.q(texts[i]))
		if err != nil {
			s.stmts.close()
			return err
		}
		*p = st
	}
	return nil
}

// AppendMessage queues a for the next group commit and waits for it.
func (s *sqlStore) AppendMessage(ctx context.Context, a *Append) (AppendResult, error) {
	if a.ConvID == "" || a.Sender == "" || a.ClientMsgID == "" || a.MsgID == "" || (a.Peer == "") == (a.GroupID == "") {
		return AppendResult{}, errors.New("store: append: conv id, sender, client msg id, msg id and exactly one of peer or group id are required")
	}
	p := &pending{a: a, done: make(chan struct{})}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return AppendResult{}, ErrClosed
	}
	select {
	case s.appendCh <- p:
	case <-ctx.Done():
		s.mu.RUnlock()
		return AppendResult{}, ctx.Err()
	}
	s.mu.RUnlock()
	// Once queued the append is committed whatever happens to ctx; waiting
	// for it keeps the ack honest (a cancelled caller resends and dedupes).
	<-p.done
	return p.res, p.err
}

func (s *sqlStore) commitLoop() {
	defer s.wg.Done()
	batch := make([]*pending, 0, s.cfg.MaxBatch)
	for {
		select {
		case p := <-s.appendCh:
			batch = append(batch[:0], p)
		case <-s.quit:
			// Close holds no enqueuer any more: commit what is left.
			for {
				batch = batch[:0]
			drain:
				for len(batch) < s.cfg.MaxBatch {
					select {
					case p := <-s.appendCh:
						batch = append(batch, p)
					default:
						break drain
					}
				}
				if len(batch) == 0 {
					return
				}
				s.commitBatch(batch)
			}
		}
	fill:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case p := <-s.appendCh:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		s.commitBatch(batch)
	}
}

func (s *sqlStore) commitBatch(batch []*pending) {
	start := time.Now()
	var err error
	for attempt := 0; ; attempt++ {
		err = s.tryBatch(batch)
		if err == nil || attempt >= 3 || !s.d.retryable(err) {
			break
		}
		s.metrics.retries.Inc()
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
	s.metrics.batches.Inc()
	s.metrics.batchSize.Observe(float64(len(batch)))
	s.metrics.commitTime.Observe(time.Since(start).Seconds())
	for _, p := range batch {
		switch {
		case err != nil:
			p.err = fmt.Errorf("store: append: %w", err)
			p.res = AppendResult{}
			s.metrics.appends.WithLabelValues("error").Inc()
		case p.err != nil:
			s.metrics.appends.WithLabelValues("rejected").Inc()
		case p.res.Duplicate:
			s.metrics.appends.WithLabelValues("duplicate").Inc()
		default:
			s.metrics.appends.WithLabelValues("stored").Inc()
		}
		close(p.done)
	}
}

type dedupeKey struct{ appkey, conv, sender, cmid string }
type convKey struct{ appkey, conv string }
type ucKey struct{ appkey, account, conv string }

type ucAgg struct {
	convType int
	peer     string
	lastSeq  int64
	lastTime int64
	reset    bool
	readSeq  int64
	unread   int64
	mentions int64
}

// tryBatch runs one transaction for the batch. Per-append problems (not a
// member, unknown peer) are set on the pending and do not fail the batch; a
// database error fails (and may retry) the whole batch.
func (s *sqlStore) tryBatch(batch []*pending) error {
	ctx := context.Background()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	dedupe := tx.StmtContext(ctx, s.stmts.dedupe)
	peerSt := tx.StmtContext(ctx, s.stmts.peer)
	membersSt := tx.StmtContext(ctx, s.stmts.members)

	peers := map[[2]string]bool{}      // (appkey, account) → exists and enabled
	groups := map[[2]string][]string{} // (appkey, group) → members
	seen := map[dedupeKey]*pending{}   // first append of each key in this batch
	byConv := map[convKey][]*pending{} // accepted appends per conversation
	var accepted int
	for _, p := range batch {
		p.err, p.res = nil, AppendResult{}
		a := p.a
		k := dedupeKey{a.AppKey, a.ConvID, a.Sender, a.ClientMsgID}
		if first, ok := seen[k]; ok {
			// The same message twice in one batch: answer both from the first.
			p.res, p.err = first.res, first.err
			p.res.Duplicate = true
			continue
		}
		seen[k] = p
		// Membership / recipient check.
		if a.GroupID != "" {
			gk := [2]string{a.AppKey, a.GroupID}
			ms, ok := groups[gk]
			if !ok {
				ms, err = stmtStrings(ctx, membersSt, a.AppKey, a.GroupID)
				if err != nil {
					return err
				}
				groups[gk] = ms
			}
			if !slices.Contains(ms, a.Sender) {
				p.err = ErrForbidden
				continue
			}
			p.res.Members = ms
		} else {
			pk := [2]string{a.AppKey, a.Peer}
			ok, cached := peers[pk]
			if !cached {
				var disabled int
				err := peerSt.QueryRowContext(ctx, a.AppKey, a.Peer).Scan(&disabled)
				switch {
				case errors.Is(err, sql.ErrNoRows):
					ok = false
				case err != nil:
					return err
				default:
					ok = disabled == 0
				}
				peers[pk] = ok
			}
			if !ok {
				p.err = ErrNotFound
				continue
			}
			if a.Sender == a.Peer {
				p.res.Members = []string{a.Sender}
			} else {
				p.res.Members = []string{a.Sender, a.Peer}
			}
		}
		var msgID string
		var seq, ts int64
		err := dedupe.QueryRowContext(ctx, a.AppKey, a.ConvID, a.Sender, a.ClientMsgID).Scan(&msgID, &seq, &ts)
		switch {
		case err == nil:
			p.res.MsgID, p.res.Seq, p.res.Time, p.res.Duplicate = msgID, seq, ts, true
			continue
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		ck := convKey{a.AppKey, a.ConvID}
		byConv[ck] = append(byConv[ck], p)
		accepted++
	}
	if accepted == 0 {
		// Nothing to write: answer from the reads.
		return s.fixInBatchDuplicates(batch, seen)
	}

	// Allocate sequences, conversations in a fixed order.
	convs := make([]convKey, 0, len(byConv))
	for k := range byConv {
		convs = append(convs, k)
	}
	slices.SortFunc(convs, func(a, b convKey) int {
		if a.appkey != b.appkey {
			return strings.Compare(a.appkey, b.appkey)
		}
		return strings.Compare(a.conv, b.conv)
	})
	convSeq := tx.StmtContext(ctx, s.stmts.convSeq)
	insert := tx.StmtContext(ctx, s.stmts.insert)
	ucs := map[ucKey]*ucAgg{}
	for _, ck := range convs {
		ps := byConv[ck]
		last := ps[len(ps)-1].a
		var top int64
		if err := convSeq.QueryRowContext(ctx, ck.appkey, ck.conv, last.ConvType, len(ps), last.Time).Scan(&top); err != nil {
			return err
		}
		seq := top - int64(len(ps))
		for _, p := range ps {
			seq++
			a := p.a
			if _, err := insert.ExecContext(ctx, a.AppKey, a.ConvID, seq, a.MsgID, a.ConvType, a.Sender, a.SenderDevice, a.To,
				a.ClientMsgID, a.Type, string(a.Body), joinMentions(a.Mentions), a.Time); err != nil {
				return err
			}
			p.res.MsgID, p.res.Seq, p.res.Time = a.MsgID, seq, a.Time
			for _, m := range p.res.Members {
				k := ucKey{a.AppKey, m, a.ConvID}
				u := ucs[k]
				if u == nil {
					u = &ucAgg{convType: a.ConvType}
					switch {
					case a.GroupID != "":
						u.peer = a.GroupID
					case m == a.Sender:
						u.peer = a.Peer
					default:
						u.peer = a.Sender
					}
					ucs[k] = u
				}
				u.lastSeq, u.lastTime = seq, a.Time
				if m == a.Sender {
					// Sending implies having read everything before.
					u.reset, u.readSeq, u.unread, u.mentions = true, seq, 0, 0
				} else {
					u.unread++
					if slices.Contains(a.Mentions, m) {
						u.mentions++
					}
				}
			}
		}
	}
	keys := make([]ucKey, 0, len(ucs))
	for k := range ucs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b ucKey) int {
		if a.appkey != b.appkey {
			return strings.Compare(a.appkey, b.appkey)
		}
		if a.account != b.account {
			return strings.Compare(a.account, b.account)
		}
		return strings.Compare(a.conv, b.conv)
	})
	ucReset := tx.StmtContext(ctx, s.stmts.ucReset)
	ucAdd := tx.StmtContext(ctx, s.stmts.ucAdd)
	for _, k := range keys {
		u := ucs[k]
		st := ucAdd
		if u.reset {
			st = ucReset
		}
		if _, err := st.ExecContext(ctx, k.appkey, k.account, k.conv, u.convType, u.peer, u.lastSeq, u.lastTime,
			u.readSeq, u.unread, u.mentions); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	return s.fixInBatchDuplicates(batch, seen)
}

// fixInBatchDuplicates copies the final result of the first append of a key
// to later appends of the same key in the batch (they were answered before
// the first one got its sequence).
func (s *sqlStore) fixInBatchDuplicates(batch []*pending, seen map[dedupeKey]*pending) error {
	for _, p := range batch {
		a := p.a
		first := seen[dedupeKey{a.AppKey, a.ConvID, a.Sender, a.ClientMsgID}]
		if first != p {
			p.res, p.err = first.res, first.err
			if p.err == nil {
				p.res.Duplicate = true
			}
		}
	}
	return nil
}

func stmtStrings(ctx context.Context, st *sql.Stmt, args ...any) ([]string, error) {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
