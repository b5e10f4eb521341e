package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Dismissing a super-group only marks it: every read of members and
// mentions joins super_groups and skips dismissed groups. Its member and
// mention rows (100,000 and more for a big group) are deleted afterwards
// by one background purger in short statements of purgeChunk rows, so a
// dismissal neither outlives its request's deadline nor holds SQLite's
// one writer (or PostgreSQL row locks) for seconds. What a stopped store
// left is purged at its next start.
const purgeChunk = 2000

// purgeRetry is how long the purger waits after a failure (the database
// away, a statement timeout) before it tries again.
const purgeRetry = 30 * time.Second

// purgeLoop purges at start and whenever a dismissal kicks it.
func (s *sqlStore) purgeLoop() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.quit
		cancel()
	}()
	for {
		var retry <-chan time.Time
		if err := s.purgeDismissed(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("purging dismissed super-groups", "err", err, "retry_in", purgeRetry)
			retry = time.After(purgeRetry)
		}
		select {
		case <-s.quit:
			return
		case <-s.purgeKick:
		case <-retry:
		}
	}
}

// kickPurge wakes the purger without waiting for it.
func (s *sqlStore) kickPurge() {
	select {
	case s.purgeKick <- struct{}{}:
	default:
	}
}

// purgeDismissed deletes the rows of every dismissed super-group that has
// any left.
func (s *sqlStore) purgeDismissed(ctx context.Context) error {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT g.appkey, g.group_id FROM super_groups g WHERE g.dismissed = 1 AND (
		EXISTS (SELECT 1 FROM super_members sm WHERE sm.appkey = g.appkey AND sm.group_id = g.group_id) OR
		EXISTS (SELECT 1 FROM super_mentions mn WHERE mn.appkey = g.appkey AND mn.group_id = g.group_id))`))
	if err != nil {
		return fmt.Errorf("store: dismissed super groups: %w", err)
	}
	type group struct{ appkey, id string }
	var groups []group
	for rows.Next() {
		var g group
		if err := rows.Scan(&g.appkey, &g.id); err != nil {
			rows.Close()
			return fmt.Errorf("store: dismissed super groups: %w", err)
		}
		groups = append(groups, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: dismissed super groups: %w", err)
	}
	for _, g := range groups {
		for _, table := range []string{"super_members", "super_mentions"} {
			if err := s.deleteInChunks(ctx, table, g.appkey, g.id); err != nil {
				return err
			}
		}
		s.log.Info("purged a dismissed super-group", "appkey", g.appkey, "group", g.id)
	}
	return nil
}

// deleteInChunks deletes the group's rows of table in account ranges of
// about purgeChunk rows. Ranges of the primary key, not "IN (SELECT …
// LIMIT n)": PostgreSQL planned that as a nested loop over the whole group
// on fresh tables (8.5 s for 2,000 of 4,000 rows, past statement_timeout).
func (s *sqlStore) deleteInChunks(ctx context.Context, table, appkey, groupID string) error {
	for {
		var last string
		err := s.r.QueryRowContext(ctx, s.q(`SELECT account FROM `+table+` WHERE appkey = ? AND group_id = ? ORDER BY account LIMIT 1 OFFSET ?`),
			appkey, groupID, purgeChunk-1).Scan(&last)
		if errors.Is(err, sql.ErrNoRows) { // the rest is less than a chunk
			_, err = s.w.ExecContext(ctx, s.q(`DELETE FROM `+table+` WHERE appkey = ? AND group_id = ?`), appkey, groupID)
			return wrapPurge(err)
		}
		if err != nil {
			return wrapPurge(err)
		}
		if _, err := s.w.ExecContext(ctx, s.q(`DELETE FROM `+table+` WHERE appkey = ? AND group_id = ? AND account <= ?`), appkey, groupID, last); err != nil {
			return wrapPurge(err)
		}
	}
}

func wrapPurge(err error) error {
	if err != nil {
		return fmt.Errorf("store: purge super group: %w", err)
	}
	return nil
}
