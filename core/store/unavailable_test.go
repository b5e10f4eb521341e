package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
)

// TestUnavailableCodes: what a failover, a restart or a timeout of
// PostgreSQL answers is "unavailable" (services answer 503 and clients try
// again); what no retry can change is not (services answer it as it is or
// as an internal error, which clients take as definitive).
func TestUnavailableCodes(t *testing.T) {
	pg := func(code string) error { return &pgconn.PgError{Severity: "ERROR", Code: code} }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"read-only transaction (demoted primary, standby)", pg("25006"), true},
		{"admin shutdown", pg("57P01"), true},
		{"crash shutdown", pg("57P02"), true},
		{"cannot connect now (starting, recovering)", pg("57P03"), true},
		{"connection failure", pg("08006"), true},
		{"idle in transaction timeout", pg("25P03"), true},
		{"too many connections", pg("53300"), true},
		{"lock timeout", pg("55P03"), true},
		{"statement timeout", pg("57014"), true},
		{"serialization failure", pg("40001"), true},
		{"deadlock", pg("40P01"), true},
		{"wrapped", fmt.Errorf("store: user: %w", pg("25006")), true},
		{"connection ended", fmt.Errorf("store: user: %w", io.ErrUnexpectedEOF), true},
		{"network", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, true},
		{"store unavailable", fmt.Errorf("store: append: %w", store.ErrUnavailable), true},
		{"store closed", store.ErrClosed, true},
		{"unique violation", pg("23505"), false},
		{"foreign key violation", pg("23503"), false},
		{"undefined table", pg("42P01"), false},
		{"value too long", pg("22001"), false},
		{"not found", store.ErrNotFound, false},
		{"other", errors.New("store: append: conv id required"), false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := store.Unavailable(tc.err); got != tc.want {
				t.Errorf("Unavailable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// TestUnavailableFromPostgres provokes the errors of a failover from a real
// PostgreSQL, as the pgx driver returns them: no server listening (the
// killed primary), a connection asking for a writable server that finds a
// read-only one (the standby before its promotion; the DSN of a two-site
// deployment says target_session_attrs=read-write), a write on a read-only
// server, the server ending the session, a statement timeout; and a
// definitive error for contrast.
func TestUnavailableFromPostgres(t *testing.T) {
	base := storetest.PostgresURL()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		if os.Getenv("LONGLINK_INTEGRATION") == "" {
			t.Skipf("postgres unreachable at %s (%v); set LONGLINK_INTEGRATION=1 to require it", base, err)
		}
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	// A port nobody listens on: the killed primary.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	with := func(extra string) string {
		sep := "?"
		if strings.Contains(base, "?") {
			sep = "&"
		}
		return base + sep + extra
	}
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	deadDSN := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable&connect_timeout=2", cfg.User, dead, cfg.Database)

	connect := func(dsn string) error {
		c, err := pgx.Connect(ctx, dsn)
		if err == nil {
			c.Close(ctx)
		}
		return err
	}
	onConn := func(sqls ...string) error {
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		for _, q := range sqls {
			if _, err := c.Exec(ctx, q); err != nil {
				return err
			}
		}
		t.Fatalf("%v: no error", sqls)
		return nil
	}
	for _, tc := range []struct {
		name string
		err  func() error
		want bool
	}{
		{"no server listening", func() error { return connect(deadDSN) }, true},
		{"read-write wanted, read-only found", func() error {
			return connect(with("target_session_attrs=read-write&options=-c%20default_transaction_read_only%3Don"))
		}, true},
		{"write on a read-only server", func() error {
			return onConn("SET default_transaction_read_only = on", "CREATE TABLE longlink_unavailable_test (a int)")
		}, true},
		{"session ended by the server", func() error { return onConn("SELECT pg_terminate_backend(pg_backend_pid())") }, true},
		{"statement timeout", func() error { return onConn("SET statement_timeout = '20ms'", "SELECT pg_sleep(2)") }, true},
		{"undefined table", func() error { return onConn("SELECT * FROM longlink_no_such_table") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			if err == nil {
				t.Fatal("no error")
			}
			if got := store.Unavailable(fmt.Errorf("store: op: %w", err)); got != tc.want {
				t.Errorf("Unavailable(%v) = %v, want %v", err, got, tc.want)
			}
		})
	}
}
