package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// dialect holds what differs between the backends; the SQL text is shared.
type dialect struct {
	name string
	// positional turns '?' placeholders into $1, $2 … (PostgreSQL).
	positional bool
	// forUpdate is appended to reads that precede an update in a transaction.
	forUpdate string
	// lockMigrations serializes migrations across nodes.
	lockMigrations string
	// withoutRowID replaces {{without_rowid}} in migrations.
	withoutRowID string
	// retryable reports errors after which a whole transaction may be retried
	// at once (deadlock, serialization failure, a racing duplicate insert, a
	// connection lost or ended by the server).
	retryable func(error) bool
	// stalled reports errors of a database that did not answer in time
	// (lock or statement timeout, the commit's deadline): retrying at once
	// would only wait again, so the caller is told ErrUnavailable.
	stalled func(error) bool
}

var sqliteDialect = &dialect{name: DriverSQLite, withoutRowID: "WITHOUT ROWID", retryable: func(error) bool { return false },
	stalled: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }}

var postgresDialect = &dialect{
	name:           DriverPostgres,
	positional:     true,
	forUpdate:      " FOR UPDATE",
	lockMigrations: "SELECT pg_advisory_xact_lock(771400001)",
	retryable: func(err error) bool {
		// A new connection is taken; a racing duplicate insert (23505)
		// is deduped by the retry.
		var pe *pgconn.PgError
		return pgUnavailable(err) || pgLostRace(err) || (errors.As(err, &pe) && pe.Code == "23505")
	},
	stalled: pgStalled,
}

// pgUnavailable reports errors of a PostgreSQL that cannot take the
// statement now while another one, on a new connection, may succeed: no
// server could be reached or none was writable (a failover under way: the
// DSN asks for target_session_attrs=read-write), the connection broke or
// the server ended it (shut down, crashed, killed the session), the server
// is starting up or in recovery, or it was demoted to a standby under an
// open connection.
func pgUnavailable(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || pgConnLost(err) {
		return true
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "25006": // read_only_sql_transaction: a standby, or a demoted primary
		return true
	case "25P03": // idle_in_transaction_session_timeout ended the session
		return true
	case "57P01", "57P02", "57P03": // admin shutdown, crash shutdown, cannot connect now (starting, in recovery)
		return true
	case "53300": // too_many_connections: every node reconnecting at once after a failover
		return true
	}
	return strings.HasPrefix(pe.Code, "08") // connection exception
}

// pgStalled reports errors of a PostgreSQL that did not answer in time.
func pgStalled(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || pgTimedOut(err)
}

// pgTimedOut reports the server's own timeouts: lock_not_available
// (lock_timeout) and query_canceled (statement_timeout).
func pgTimedOut(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "55P03" || pe.Code == "57014")
}

// pgLostRace reports a transaction that lost to a concurrent one:
// serialization failure, deadlock.
func pgLostRace(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// Unavailable reports whether err, from any store call, means that the
// database could not do it for now — not reachable, not writable (a
// failover under way), shut down or starting, too slow (the server's lock
// or statement timeout), or the transaction lost a race — so that the same
// call may succeed later: callers answer "retry" (imapi.ErrUnavailable),
// not an internal error, which clients take as definitive. Group commits
// fail with ErrUnavailable for these already.
func Unavailable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) || pgUnavailable(err) || pgTimedOut(err) || pgLostRace(err)
}

// pgConnLost reports errors of a connection that could not be made (no
// server answered, or none was writable: a failover under way) or broke
// under a statement (the server died, or the network to it). The outcome
// of a commit that broke is unknown: what is retried must be idempotent,
// as appends are (deduplicated by client message id).
func pgConnLost(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	return pgconn.SafeToRetry(err)
}

func (d *dialect) rebind(q string) string {
	if !d.positional || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}
