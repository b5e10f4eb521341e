package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Group commit: AppendMessages queues its appends as one unit; a committer
// takes the queued units, whole and in queue order, into one transaction
// (up to MaxBatch appends), so one fsync acks many messages. A unit is never
// split: its appends are stored in one transaction and, per conversation,
// get sequences in the unit's order. SQLite runs one committer (its
// single writer); PostgreSQL runs several, and the transaction takes its
// row locks in a fixed order (conversations sorted by id, then user state
// sorted by account) so that concurrent batches on several nodes cannot
// deadlock each other. On PostgreSQL the statements of each step of a
// transaction are pipelined (pgx batch): a group commit is three round
// trips whatever its size — the reads, the sequence allocation, and the
// writes with the COMMIT.

type pending struct {
	a   *Append
	res AppendResult
}

// unit is the appends of one AppendMessages call.
type unit struct {
	ps   []*pending
	err  error // the whole unit's failure (a database error)
	done chan struct{}
}

// A batch runs a handful of multi-row statements instead of one statement
// per message: row counts are split into power-of-two chunks so that each
// (statement, chunk size) is prepared once and reused.
const maxChunk = 256

// stmtCache holds SQLite's prepared multi-row statements by text (prepared
// at open: preparing on the single SQLite writer while a batch transaction
// holds it would deadlock). PostgreSQL's are prepared by pgx's statement
// cache on each connection.
type stmtCache struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		_ = st.Close()
	}
	c.m = nil
}

func (c *stmtCache) get(q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[q]
}

// multiRow describes a statement with a repeated part: head, then rows
// copies of row joined by ", ", then tail.
type multiRow struct {
	kind, head, row, tail string
	cols                  int
}

var (
	sqlDedupe = multiRow{kind: "dedupe", cols: 1,
		head: `SELECT client_msg_id, conv_id, sender, msg_id, seq, ts FROM messages WHERE appkey = ? AND client_msg_id IN (`,
		row:  `?`, tail: `)`}
	sqlPeers = multiRow{kind: "peers", cols: 1,
		head: `SELECT account, disabled FROM users WHERE appkey = ? AND account IN (`,
		row:  `?`, tail: `)`}
	sqlConvSeq = multiRow{kind: "convseq", cols: 5,
		head: `INSERT INTO conversations (appkey, conv_id, conv_type, last_seq, last_time) VALUES `,
		row:  `(?, ?, ?, ?, ?)`,
		tail: ` ON CONFLICT (appkey, conv_id) DO UPDATE SET last_seq = conversations.last_seq + excluded.last_seq,
			last_time = excluded.last_time RETURNING conv_id, last_seq`}
	sqlInsert = multiRow{kind: "insert", cols: 13,
		head: `INSERT INTO messages (appkey, conv_id, seq, msg_id, conv_type, sender, sender_device, recipient, client_msg_id, msg_type, body, mentions, ts) VALUES `,
		row:  `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`}
	sqlUCReset = multiRow{kind: "ucreset", cols: 10,
		head: `INSERT INTO user_convs (appkey, account, conv_id, conv_type, peer, last_seq, last_time, read_seq, unread, mentions) VALUES `,
		row:  `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		tail: ` ON CONFLICT (appkey, account, conv_id) DO UPDATE SET last_seq = excluded.last_seq, last_time = excluded.last_time,
			read_seq = CASE WHEN excluded.read_seq > user_convs.read_seq THEN excluded.read_seq ELSE user_convs.read_seq END,
			unread = excluded.unread, mentions = excluded.mentions`}
	sqlUCAdd = multiRow{kind: "ucadd", cols: 10,
		head: `INSERT INTO user_convs (appkey, account, conv_id, conv_type, peer, last_seq, last_time, read_seq, unread, mentions) VALUES `,
		row:  `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		tail: ` ON CONFLICT (appkey, account, conv_id) DO UPDATE SET last_seq = excluded.last_seq, last_time = excluded.last_time,
			unread = user_convs.unread + excluded.unread, mentions = user_convs.mentions + excluded.mentions`}
	// The blacklist entries of 1:1 pairs (owner, target): a VALUES list
	// joined to the blacklist, which both backends answer with one
	// primary-key lookup per pair (an OR chain or a row-value IN list makes
	// SQLite scan the app's whole blacklist). Each row carries the appkey so
	// that the statement is a multiRow, prepared once per chunk size like
	// the others: its text used to differ with the number of pairs, and
	// SQLite parsed and planned it again in every group commit.
	sqlBlocked = multiRow{kind: "blocked", cols: 3,
		head: `WITH p(a, o, t) AS (VALUES `,
		row:  `(?, ?, ?)`,
		tail: `) SELECT b.owner, b.target FROM p JOIN blacklist b ON b.appkey = p.a AND b.owner = p.o AND b.target = p.t`}
	sqlMembers = `SELECT account FROM group_members WHERE appkey = ? AND group_id = ?`
)

// text is the statement with n rows, rebound for the backend.
func (s *sqlStore) text(q multiRow, n int) string {
	var b strings.Builder
	b.WriteString(q.head)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(q.row)
	}
	b.WriteString(q.tail)
	return s.q(b.String())
}

// chunks splits n into power-of-two sizes, largest first, at most maxChunk.
func chunks(n int) []int {
	var out []int
	for n > 0 {
		c := maxChunk
		for c > n {
			c >>= 1
		}
		out = append(out, c)
		n -= c
	}
	return out
}

// queryRows queues q over rows (each of q.cols values) in chunks on tx;
// prefix values (the appkey of a SELECT) come before each chunk's rows.
// When scan is set the statement returns rows, passed to scan one by one.
func (s *sqlStore) queryRows(tx batchTx, q multiRow, prefix []any, rows []any, scan func(rowScanner) error) {
	n := len(rows) / q.cols
	off := 0
	for _, c := range chunks(n) {
		args := append(append(make([]any, 0, len(prefix)+c*q.cols), prefix...), rows[off*q.cols:(off+c)*q.cols]...)
		off += c
		tx.query(s.text(q, c), args, scan)
	}
}

// prepare prepares SQLite's multi-row statements of every chunk size once.
func (s *sqlStore) prepare(ctx context.Context) error {
	if s.d != sqliteDialect {
		return nil
	}
	m := map[string]*sql.Stmt{}
	for _, q := range []multiRow{sqlDedupe, sqlPeers, sqlConvSeq, sqlInsert, sqlUCReset, sqlUCAdd, sqlBlocked} {
		for n := 1; n <= maxChunk; n <<= 1 {
			text := s.text(q, n)
			st, err := s.w.PrepareContext(ctx, text)
			if err != nil {
				for _, st := range m {
					_ = st.Close()
				}
				return fmt.Errorf("%s/%d: %w", q.kind, n, err)
			}
			m[text] = st
		}
	}
	s.stmts.mu.Lock()
	s.stmts.m = m
	s.stmts.mu.Unlock()
	return nil
}

// AppendMessage stores one message: AppendMessages of one.
func (s *sqlStore) AppendMessage(ctx context.Context, a *Append) (AppendResult, error) {
	rs, err := s.AppendMessages(ctx, []*Append{a})
	if err != nil {
		return AppendResult{}, err
	}
	if rs[0].Err != nil {
		return AppendResult{}, rs[0].Err
	}
	return rs[0], nil
}

// AppendMessages queues as as one unit for the next group commit and waits
// for it.
func (s *sqlStore) AppendMessages(ctx context.Context, as []*Append) ([]AppendResult, error) {
	if len(as) == 0 {
		return nil, nil
	}
	u := &unit{ps: make([]*pending, len(as)), done: make(chan struct{})}
	for i, a := range as {
		if a.ConvID == "" || a.Sender == "" || a.ClientMsgID == "" || a.MsgID == "" || (a.Peer == "") == (a.GroupID == "") {
			return nil, errors.New("store: append: conv id, sender, client msg id, msg id and exactly one of peer or group id are required")
		}
		u.ps[i] = &pending{a: a}
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	if !s.shed.admit(len(as)) {
		s.mu.RUnlock()
		s.metrics.appends.WithLabelValues("shed").Add(float64(len(as)))
		return nil, s.shed.busy()
	}
	select {
	case s.appendCh <- u:
	case <-ctx.Done():
		s.mu.RUnlock()
		s.shed.done(len(as))
		return nil, ctx.Err()
	}
	s.mu.RUnlock()
	// Once queued the appends are committed whatever happens to ctx;
	// waiting for them keeps the acks honest (a cancelled caller resends and
	// dedupes).
	<-u.done
	if u.err != nil {
		return nil, u.err
	}
	out := make([]AppendResult, len(u.ps))
	for i, p := range u.ps {
		out[i] = p.res
	}
	return out, nil
}

func (s *sqlStore) commitLoop() {
	defer s.wg.Done()
	var units []*unit
	var batch []*pending
	take := func(u *unit) {
		units = append(units, u)
		batch = append(batch, u.ps...)
	}
	for {
		units, batch = units[:0], batch[:0]
		select {
		case u := <-s.appendCh:
			take(u)
		case <-s.quit:
			// Close holds no enqueuer any more: commit what is left.
			for {
				units, batch = units[:0], batch[:0]
			drain:
				for len(batch) < s.cfg.MaxBatch {
					select {
					case u := <-s.appendCh:
						take(u)
					default:
						break drain
					}
				}
				if len(units) == 0 {
					return
				}
				s.commitBatch(units, batch)
			}
		}
	fill:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case u := <-s.appendCh:
				take(u)
			default:
				break fill
			}
		}
		s.commitBatch(units, batch)
	}
}

func (s *sqlStore) commitBatch(units []*unit, batch []*pending) {
	start := time.Now()
	var err error
	for attempt := 0; ; attempt++ {
		err = s.tryBatch(batch)
		if err == nil || attempt >= 3 || !s.d.retryable(err) {
			break
		}
		s.metrics.retries.Inc()
		s.log.Debug("group commit retried", "attempt", attempt+1, "appends", len(batch), "err", err)
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
	took := time.Since(start)
	if err == nil {
		s.shed.observe(len(batch), took)
	} else {
		s.log.Warn("group commit failed", "appends", len(batch), "took", took, "err", err)
	}
	s.metrics.batches.Inc()
	s.metrics.batchSize.Observe(float64(len(batch)))
	s.metrics.commitTime.Observe(took.Seconds())
	// Uncounted before anyone is answered: an answered sender that appends
	// again at once must not find its own last append still counted.
	s.shed.done(len(batch))
	for _, p := range batch {
		switch {
		case err != nil:
			s.metrics.appends.WithLabelValues("error").Inc()
		case p.res.Err != nil:
			s.metrics.appends.WithLabelValues("rejected").Inc()
		case p.res.Duplicate:
			s.metrics.appends.WithLabelValues("duplicate").Inc()
		default:
			s.metrics.appends.WithLabelValues("stored").Inc()
		}
	}
	if err != nil && (s.d.stalled(err) || s.d.retryable(err)) {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, u := range units {
		if err != nil {
			u.err = fmt.Errorf("store: append: %w", err)
		}
		close(u.done)
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
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CommitTimeout.D())
	defer cancel()
	return s.inBatchTx(ctx, func(tx batchTx) error { return s.appendTx(ctx, tx, batch) })
}

// appendTx is the transaction of a group commit in three steps, each one
// flush of tx: the reads, the sequence allocation, the writes.
func (s *sqlStore) appendTx(ctx context.Context, tx batchTx, batch []*pending) error {
	r := s.queueReads(tx, batch)
	if err := tx.flush(ctx); err != nil {
		return err
	}
	byConv, seen := r.admit(batch)
	if len(byConv) == 0 {
		s.fixInBatchDuplicates(batch, seen)
		return tx.commit(ctx)
	}

	convs := sortedConvs(byConv)
	tops := s.queueSeqAllocation(tx, convs, byConv)
	if err := tx.flush(ctx); err != nil {
		return err
	}

	if err := s.queueWrites(tx, convs, byConv, tops); err != nil {
		return err
	}
	if err := tx.commit(ctx); err != nil {
		return err
	}
	s.fixInBatchDuplicates(batch, seen)
	return nil
}

// batchReads is what the first step of a group commit reads, filled in
// when tx flushes: earlier appends of the batch's client message ids, the
// 1:1 recipients that exist (and whether they are enabled), the members of
// the ordinary groups sent to, the senders' super-group memberships, and
// the 1:1 appends a blacklist refuses.
type batchReads struct {
	existing  map[dedupeKey]AppendResult
	peerOK    map[[2]string]bool
	groups    map[[2]string][]string
	superOK   map[superKey]bool
	blockedBy []func() map[*pending]bool
}

// queueReads queues on tx the reads of the batch, one multi-row query per
// kind and appkey, and clears the appends' results.
func (s *sqlStore) queueReads(tx batchTx, batch []*pending) *batchReads {
	byApp := map[string][]*pending{}
	var apps []string
	for _, p := range batch {
		p.res = AppendResult{}
		if _, ok := byApp[p.a.AppKey]; !ok {
			apps = append(apps, p.a.AppKey)
		}
		byApp[p.a.AppKey] = append(byApp[p.a.AppKey], p)
	}
	r := &batchReads{
		existing: map[dedupeKey]AppendResult{},
		peerOK:   map[[2]string]bool{},
		groups:   map[[2]string][]string{},
		superOK:  map[superKey]bool{},
	}
	for _, appkey := range apps {
		s.queueAppReads(tx, r, appkey, byApp[appkey])
	}
	return r
}

// queueAppReads queues the reads of one app's appends ps.
func (s *sqlStore) queueAppReads(tx batchTx, r *batchReads, appkey string, ps []*pending) {
	var cmids, peers []any
	seenC, seenP := map[string]bool{}, map[string]bool{}
	for _, p := range ps {
		if !seenC[p.a.ClientMsgID] {
			seenC[p.a.ClientMsgID] = true
			cmids = append(cmids, p.a.ClientMsgID)
		}
		if p.a.Peer != "" && !seenP[p.a.Peer] {
			seenP[p.a.Peer] = true
			peers = append(peers, p.a.Peer)
		}
		s.queueMembership(tx, r, appkey, p.a)
	}
	s.queryRows(tx, sqlDedupe, []any{appkey}, cmids, func(rs rowScanner) error {
		var k dedupeKey
		var res AppendResult
		if err := rs.Scan(&k.cmid, &k.conv, &k.sender, &res.MsgID, &res.Seq, &res.Time); err != nil {
			return err
		}
		k.appkey = appkey
		r.existing[k] = res
		return nil
	})
	s.queryRows(tx, sqlPeers, []any{appkey}, peers, func(rs rowScanner) error {
		var a string
		var disabled int
		if err := rs.Scan(&a, &disabled); err != nil {
			return err
		}
		r.peerOK[[2]string{appkey, a}] = disabled == 0
		return nil
	})
	if len(peers) > 0 {
		r.blockedBy = append(r.blockedBy, s.queryBlocked(tx, appkey, ps))
	}
}

// queueMembership queues, once per group of the batch, the read that
// checks a group append's sender: its super-group membership, or the
// ordinary group's members.
func (s *sqlStore) queueMembership(tx batchTx, r *batchReads, appkey string, a *Append) {
	switch {
	case a.Super:
		sk := superKey{appkey, a.GroupID, a.Sender}
		if _, ok := r.superOK[sk]; ok {
			return
		}
		r.superOK[sk] = false
		tx.query(s.q(sqlSuperMember), []any{appkey, a.GroupID, a.Sender}, func(rs rowScanner) error {
			var n int
			if err := rs.Scan(&n); err != nil {
				return err
			}
			r.superOK[sk] = n > 0
			return nil
		})
	case a.GroupID != "":
		gk := [2]string{appkey, a.GroupID}
		if _, ok := r.groups[gk]; ok {
			return
		}
		r.groups[gk] = nil
		tx.query(s.q(sqlMembers), []any{appkey, a.GroupID}, func(rs rowScanner) error {
			var m string
			if err := rs.Scan(&m); err != nil {
				return err
			}
			r.groups[gk] = append(r.groups[gk], m)
			return nil
		})
	}
}

// admit decides each append of the batch from the reads: refused (the
// error set on it), a duplicate of an earlier append (its result set), or
// to be stored, in byConv by conversation in batch order. seen holds the
// first append of each dedupe key; later ones are answered from it by
// fixInBatchDuplicates.
func (r *batchReads) admit(batch []*pending) (byConv map[convKey][]*pending, seen map[dedupeKey]*pending) {
	blocked := map[*pending]bool{}
	for _, f := range r.blockedBy {
		for p := range f() {
			blocked[p] = true
		}
	}
	seen = map[dedupeKey]*pending{}
	byConv = map[convKey][]*pending{}
	for _, p := range batch {
		a := p.a
		k := dedupeKey{a.AppKey, a.ConvID, a.Sender, a.ClientMsgID}
		if _, ok := seen[k]; ok {
			continue
		}
		seen[k] = p
		if !r.allowed(p, blocked[p]) {
			continue
		}
		if res, ok := r.existing[k]; ok {
			p.res.MsgID, p.res.Seq, p.res.Time, p.res.Duplicate = res.MsgID, res.Seq, res.Time, true
			continue
		}
		ck := convKey{a.AppKey, a.ConvID}
		byConv[ck] = append(byConv[ck], p)
	}
	return byConv, seen
}

// allowed checks that p's sender may send to its conversation and sets the
// accounts whose conversation state it updates (p.res.Members); when not,
// it sets the refusal (p.res.Err).
func (r *batchReads) allowed(p *pending, blocked bool) bool {
	a := p.a
	switch {
	case a.Super:
		if !r.superOK[superKey{a.AppKey, a.GroupID, a.Sender}] {
			p.res.Err = ErrForbidden
			return false
		}
	case a.GroupID != "":
		ms := r.groups[[2]string{a.AppKey, a.GroupID}]
		if !slices.Contains(ms, a.Sender) {
			p.res.Err = ErrForbidden
			return false
		}
		p.res.Members = ms
	default:
		if !r.peerOK[[2]string{a.AppKey, a.Peer}] {
			p.res.Err = ErrNotFound
			return false
		}
		if blocked {
			p.res.Err = ErrBlocked
			return false
		}
		if a.Sender == a.Peer {
			p.res.Members = []string{a.Sender}
		} else {
			p.res.Members = []string{a.Sender, a.Peer}
		}
	}
	return true
}

// sortedConvs lists the conversations of byConv in (appkey, conversation)
// order: the order their sequence rows are locked in on PostgreSQL.
func sortedConvs(byConv map[convKey][]*pending) []convKey {
	convs := make([]convKey, 0, len(byConv))
	for k := range byConv {
		convs = append(convs, k)
	}
	slices.SortFunc(convs, func(a, b convKey) int {
		if c := strings.Compare(a.appkey, b.appkey); c != 0 {
			return c
		}
		return strings.Compare(a.conv, b.conv)
	})
	return convs
}

// queueSeqAllocation queues the allocation of the conversations'
// sequences, one multi-row upsert per app; the returned map gets each
// conversation's new top sequence when tx flushes.
func (s *sqlStore) queueSeqAllocation(tx batchTx, convs []convKey, byConv map[convKey][]*pending) map[convKey]int64 {
	tops := map[convKey]int64{}
	for i := 0; i < len(convs); {
		appkey := convs[i].appkey
		var rows []any
		for ; i < len(convs) && convs[i].appkey == appkey; i++ {
			ps := byConv[convs[i]]
			last := ps[len(ps)-1].a
			rows = append(rows, appkey, convs[i].conv, last.ConvType, len(ps), last.Time)
		}
		s.queryRows(tx, sqlConvSeq, nil, rows, func(rs rowScanner) error {
			var conv string
			var top int64
			if err := rs.Scan(&conv, &top); err != nil {
				return err
			}
			tops[convKey{appkey, conv}] = top
			return nil
		})
	}
	return tops
}

// queueWrites numbers the appends of each conversation up to its new top
// sequence, sets their results and queues the writes: the messages, the
// members' conversation state, the super-group senders' read positions.
func (s *sqlStore) queueWrites(tx batchTx, convs []convKey, byConv map[convKey][]*pending, tops map[convKey]int64) error {
	var msgRows []any
	ucs := convStates{}
	superReads := map[superKey]int64{}
	for _, ck := range convs {
		ps := byConv[ck]
		top, ok := tops[ck]
		if !ok {
			return fmt.Errorf("no sequence returned for %s", ck.conv)
		}
		seq := top - int64(len(ps))
		for _, p := range ps {
			seq++
			a := p.a
			msgRows = append(msgRows, a.AppKey, a.ConvID, seq, a.MsgID, a.ConvType, a.Sender, a.SenderDevice, a.To,
				a.ClientMsgID, a.Type, string(a.Body), joinMentions(a.Mentions), a.Time)
			p.res.MsgID, p.res.Seq, p.res.Time = a.MsgID, seq, a.Time
			if a.Super {
				// Read diffusion: only the sender's read position moves.
				superReads[superKey{a.AppKey, a.GroupID, a.Sender}] = seq
				continue
			}
			ucs.add(a, p.res.Members, seq)
		}
	}
	s.queryRows(tx, sqlInsert, nil, msgRows, nil)
	s.queueConvStates(tx, ucs)
	s.updateSuperReads(tx, superReads)
	return nil
}

// convStates aggregates the batch's changes to each member's conversation
// state (user_conversations).
type convStates map[ucKey]*ucAgg

// add counts message seq of a in the conversation state of each of members.
func (ucs convStates) add(a *Append, members []string, seq int64) {
	for _, m := range members {
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

// queueConvStates queues the upserts of the conversation states in
// (appkey, account, conversation) order, the lock order on PostgreSQL:
// the senders' (read position reset) and the others' (unread added).
func (s *sqlStore) queueConvStates(tx batchTx, ucs convStates) {
	keys := make([]ucKey, 0, len(ucs))
	for k := range ucs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b ucKey) int {
		if c := strings.Compare(a.appkey, b.appkey); c != 0 {
			return c
		}
		if c := strings.Compare(a.account, b.account); c != 0 {
			return c
		}
		return strings.Compare(a.conv, b.conv)
	})
	var resetRows, addRows []any
	for _, k := range keys {
		u := ucs[k]
		row := []any{k.appkey, k.account, k.conv, u.convType, u.peer, u.lastSeq, u.lastTime, u.readSeq, u.unread, u.mentions}
		if u.reset {
			resetRows = append(resetRows, row...)
		} else {
			addRows = append(addRows, row...)
		}
	}
	s.queryRows(tx, sqlUCReset, nil, resetRows, nil)
	s.queryRows(tx, sqlUCAdd, nil, addRows, nil)
}

type superKey struct{ appkey, group, account string }

// sqlSuperMember counts the sender's membership of a live super-group.
const sqlSuperMember = `SELECT COUNT(*) FROM super_members sm JOIN super_groups g ON g.appkey = sm.appkey AND g.group_id = sm.group_id
	WHERE sm.appkey = ? AND sm.group_id = ? AND sm.account = ? AND g.dismissed = 0`

// updateSuperReads moves super-group senders' read positions to their last
// message of the batch (sending implies having read what came before), in
// key order (the lock order on PostgreSQL).
func (s *sqlStore) updateSuperReads(tx batchTx, reads map[superKey]int64) {
	if len(reads) == 0 {
		return
	}
	keys := make([]superKey, 0, len(reads))
	for k := range reads {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b superKey) int {
		return strings.Compare(a.appkey+"\x00"+a.group+"\x00"+a.account, b.appkey+"\x00"+b.group+"\x00"+b.account)
	})
	q := s.q(`UPDATE super_members SET read_seq = ? WHERE appkey = ? AND group_id = ? AND account = ? AND read_seq < ?`)
	for _, k := range keys {
		seq := reads[k]
		tx.query(q, []any{seq, k.appkey, k.group, k.account, seq}, nil)
	}
}

// fixInBatchDuplicates copies the final result of the first append of a key
// to later appends of the same key in the batch (they were answered before
// the first one got its sequence).
func (s *sqlStore) fixInBatchDuplicates(batch []*pending, seen map[dedupeKey]*pending) {
	for _, p := range batch {
		a := p.a
		first := seen[dedupeKey{a.AppKey, a.ConvID, a.Sender, a.ClientMsgID}]
		if first != p {
			p.res = first.res
			if p.res.Err == nil {
				p.res.Duplicate = true
			}
		}
	}
}
