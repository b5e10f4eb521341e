package core_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

// TestEventLogStorm (defect 4): a storm of logins while the store is
// stalled for longer than the request timeout — what a reconnect storm
// does to a real store — loses no entry of the event log. The entries
// were written inside the login request and lost on "context deadline
// exceeded" (a 4,000-client storm lost 8,843); now every login is in the
// log once the store answers again, and none was shed.
func TestEventLogStorm(t *testing.T) {
	const clients = 200
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	accounts := make([]string, clients)
	for i := range accounts {
		accounts[i] = fmt.Sprintf("u%03d", i)
	}
	var dataDir string
	e := newPushEnvWith(t, ctx, func(c *core.Config) {
		c.Service.RequestTimeout = config.Duration(time.Second)
		dataDir = c.DataDir
	}, accounts...)

	// The store stalls: another connection holds SQLite's write lock
	// (reads go on, as in WAL mode they do under a busy writer).
	db, err := sql.Open(store.DriverSQLite, filepath.Join(dataDir, "core.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stall, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()
	if _, err := stall.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Second).UnixMilli()

	// The storm: every client logs in at once, through the gateway.
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for _, acct := range accounts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := sdk.New(sdk.Config{Addresses: []string{e.node.LinkAddr()}, ServerKeys: map[string][]byte{e.key.ID: e.key.Public},
				AppKey: "demo", Account: acct, Token: e.users[acct], DeviceType: "phone"})
			if err == nil {
				c.Start()
				t.Cleanup(func() { _ = c.Close() })
				err = c.WaitConnected(ctx)
			}
			if err != nil {
				errs <- fmt.Errorf("%s: %w", acct, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("login during the stall: %v", err)
	}
	// The log's writes meet the stall too (after the store's busy
	// timeout) and are retried; then the store answers again.
	waittest.Until(t, time.Minute, "an event log write to fail on the stalled store", func() bool {
		return e.total("longlink_push_event_log_retries_total") >= 1
	})
	if _, err := stall.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}

	logins := map[string]int{}
	waittest.Until(t, time.Minute, fmt.Sprintf("%d logins in the event log", clients), func() bool {
		clear(logins)
		evs, _, err := e.node.Store().Events(ctx, store.EventQuery{AppKey: "demo", From: start, Limit: 10 * clients})
		if err != nil {
			return false
		}
		for _, ev := range evs {
			if ev.Kind == "login" {
				logins[ev.Account]++
			}
		}
		return len(logins) == clients
	})
	for acct, n := range logins {
		if n != 1 {
			t.Fatalf("%s: %d logins in the log, want 1", acct, n)
		}
	}
	for _, result := range []string{"shed_queue_full", "shed_shutdown"} {
		if n := e.counter("longlink_push_session_events_total", "result", result); n != 0 {
			t.Fatalf("%v entries %s", n, result)
		}
	}
}

// total sums a counter's series.
func (e *pushEnv) total(name string) float64 {
	mfs, _ := e.reg.Gather()
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
