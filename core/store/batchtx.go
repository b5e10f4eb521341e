package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// rowScanner is a result row of either backend.
type rowScanner interface{ Scan(dest ...any) error }

// batchTx is the transaction of a group commit. Statements are queued and
// run by flush: on PostgreSQL all the queued ones in one round trip (a pgx
// batch, pipelined), on SQLite (in process, no round trip) one after the
// other. A scan function sees its statement's rows during the flush, so
// what a statement returns may be used only after it.
type batchTx interface {
	// query queues q (rebound) with args; scan, if set, gets each row.
	query(q string, args []any, scan func(rowScanner) error)
	// flush runs what is queued.
	flush(ctx context.Context) error
	// commit runs what is queued and commits, in one flush.
	commit(ctx context.Context) error
}

// inBatchTx runs f in a transaction of the writer; f ends it with commit,
// else it is rolled back.
func (s *sqlStore) inBatchTx(ctx context.Context, f func(batchTx) error) error {
	if s.d == sqliteDialect {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		return f(&sqliteTx{s: s, tx: tx, ctx: ctx})
	}
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c := dc.(*stdlib.Conn).Conn()
		t := &pgTx{c: c, b: &pgx.Batch{}}
		t.b.Queue("BEGIN")
		err := f(t)
		if err != nil && !t.done {
			// The ROLLBACK of an aborted transaction; a connection that
			// cannot even do that (killed by idle_in_transaction or a lost
			// server) leaves the pool.
			if _, rerr := c.Exec(context.Background(), "ROLLBACK"); rerr != nil || c.IsClosed() {
				return errors.Join(err, driver.ErrBadConn)
			}
		}
		if c.IsClosed() {
			return errors.Join(err, driver.ErrBadConn)
		}
		return err
	})
}

// sqliteTx runs each statement at once on the writer's transaction, the
// multi-row ones prepared (stmtCache).
type sqliteTx struct {
	s   *sqlStore
	tx  *sql.Tx
	ctx context.Context
	err error
}

func (t *sqliteTx) query(q string, args []any, scan func(rowScanner) error) {
	if t.err != nil {
		return
	}
	t.err = t.run(q, args, scan)
}

func (t *sqliteTx) run(q string, args []any, scan func(rowScanner) error) error {
	ctx := t.ctx
	var rs *sql.Rows
	var err error
	if st := t.s.stmts.get(q); st != nil {
		st = t.tx.StmtContext(ctx, st)
		if scan == nil {
			_, err = st.ExecContext(ctx, args...)
			return err
		}
		rs, err = st.QueryContext(ctx, args...)
	} else {
		if scan == nil {
			_, err = t.tx.ExecContext(ctx, q, args...)
			return err
		}
		rs, err = t.tx.QueryContext(ctx, q, args...)
	}
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		if err := scan(rs); err != nil {
			return err
		}
	}
	return rs.Err()
}

func (t *sqliteTx) flush(context.Context) error { return t.err }

func (t *sqliteTx) commit(context.Context) error {
	if t.err != nil {
		return t.err
	}
	return t.tx.Commit()
}

// pgTx queues statements in a pgx batch and sends it at each flush: one
// round trip for any number of statements. The first batch opens the
// transaction (BEGIN queued first), the last one commits it.
type pgTx struct {
	c    *pgx.Conn
	b    *pgx.Batch
	done bool // committed
}

func (t *pgTx) query(q string, args []any, scan func(rowScanner) error) {
	qq := t.b.Queue(q, args...)
	if scan == nil {
		return
	}
	qq.Query(func(rows pgx.Rows) error {
		for rows.Next() {
			if err := scan(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}

func (t *pgTx) flush(ctx context.Context) error {
	if t.b.Len() == 0 {
		return nil
	}
	b := t.b
	t.b = &pgx.Batch{}
	if err := t.c.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("pipelined statements: %w", err)
	}
	return nil
}

func (t *pgTx) commit(ctx context.Context) error {
	t.b.Queue("COMMIT")
	if err := t.flush(ctx); err != nil {
		return err
	}
	t.done = true
	return nil
}
