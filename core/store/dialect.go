package store

import (
	"errors"
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
	// (deadlock, serialization failure, a racing duplicate insert).
	retryable func(error) bool
}

var sqliteDialect = &dialect{name: DriverSQLite, withoutRowID: "WITHOUT ROWID", retryable: func(error) bool { return false }}

var postgresDialect = &dialect{
	name:           DriverPostgres,
	positional:     true,
	forUpdate:      " FOR UPDATE",
	lockMigrations: "SELECT pg_advisory_xact_lock(771400001)",
	retryable: func(err error) bool {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			return false
		}
		switch pe.Code {
		case "40001", "40P01", "23505": // serialization failure, deadlock, unique violation
			return true
		}
		return false
	},
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
