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
		if errors.Is(err, driver.ErrBadConn) || pgConnLost(err) {
			return true // a new connection is taken
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			return false
		}
		switch pe.Code {
		case "40001", "40P01", "23505": // serialization failure, deadlock, unique violation
			return true
		case "25P03", "57P01", "57P02", "57P03": // idle_in_transaction_session_timeout, admin or crash shutdown, cannot connect now
			return true
		case "25006":
			// read_only_sql_transaction: the server was demoted (or is a
			// standby); a new connection finds the writable one
			// (target_session_attrs=read-write).
			return true
		}
		return strings.HasPrefix(pe.Code, "08") // connection exception
	},
	stalled: func(err error) bool {
		if errors.Is(err, context.DeadlineExceeded) {
			return true
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			return false
		}
		return pe.Code == "55P03" || pe.Code == "57014" // lock_not_available (lock_timeout), query_canceled (statement_timeout)
	},
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
