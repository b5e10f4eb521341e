// Package storetest opens real stores for tests: SQLite in a temporary
// directory and PostgreSQL in a private schema that is dropped afterwards.
// No daemon imports it.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx driver for schema setup

	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/pkg/config"
)

// PostgresURL is the test database (override with LONGLINK_TEST_PG).
func PostgresURL() string {
	if u := os.Getenv("LONGLINK_TEST_PG"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// Drivers are the backends a suite runs against.
var Drivers = []string{store.DriverSQLite, store.DriverPostgres}

// Config returns a store config for driver, with a fresh SQLite file or a
// fresh PostgreSQL schema, removed when the test ends. It skips the test
// when PostgreSQL is unreachable, unless LONGLINK_INTEGRATION is set (then
// PostgreSQL must be there and the test fails).
func Config(t testing.TB, driver string) store.Config {
	t.Helper()
	cfg := store.Default()
	cfg.Driver = driver
	switch driver {
	case store.DriverSQLite:
		cfg.Path = filepath.Join(t.TempDir(), "longlink.db")
	case store.DriverPostgres:
		cfg.DSN = config.NewSecret(schemaDSN(t))
	default:
		t.Fatalf("storetest: unknown driver %q", driver)
	}
	return cfg
}

// Open opens a store for driver and closes it when the test ends.
func Open(t testing.TB, driver string) (store.Store, store.Config) {
	t.Helper()
	cfg := Config(t, driver)
	st, err := store.Open(context.Background(), cfg, store.Deps{})
	if err != nil {
		t.Fatalf("open %s store: %v", driver, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, cfg
}

func schemaDSN(t testing.TB) string {
	t.Helper()
	base := PostgresURL()
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		if os.Getenv("LONGLINK_INTEGRATION") == "" {
			t.Skipf("postgres unreachable at %s (%v); set LONGLINK_INTEGRATION=1 to require it", base, err)
		}
		t.Fatalf("postgres unreachable at %s: %v", base, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "lltest_" + hex.EncodeToString(b[:])
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		_ = db.Close()
		t.Fatalf("postgres: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("postgres: drop schema %s: %v", schema, err)
		}
		_ = db.Close()
	})
	sep := "?"
	for i := 0; i < len(base); i++ {
		if base[i] == '?' {
			sep = "&"
		}
	}
	return base + sep + "search_path=" + schema
}

// BenchResults reports whether benchmarks should print RESULT lines for
// tools/bench (LONGLINK_BENCH_RESULT is set).
func BenchResults() bool { return os.Getenv("LONGLINK_BENCH_RESULT") != "" }
