package store

import (
	"context"
	"database/sql/driver"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// UnavailableError is the ErrUnavailable of a database that could not be
// reached (errors.Is(err, ErrUnavailable)): no server answered or none
// was writable, as while a failover is under way (the primary lost, the
// standby not promoted yet).
type UnavailableError struct {
	// RetryAfter is when the store tries to connect again: a request
	// before it fails the same way at once.
	RetryAfter time.Duration
	Err        error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%v: %v", ErrUnavailable, e.Err)
}
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }
func (e *UnavailableError) Unwrap() error        { return e.Err }

// pgConnector opens the store's PostgreSQL connections, and pauses after
// a failure. Without it, while no server is writable every query of every
// request opens a connection of its own — a TCP connection per listed
// host, TLS, SCRAM and a backend process on the standby, only to be told
// it is read-only — and under a reconnect storm that is hundreds a second
// on the very standby that is being promoted. After a failed attempt it
// fails the next ones at once with an UnavailableError for retry, then
// lets one attempt through (the others keep failing at once until it
// ends), until one succeeds.
type pgConnector struct {
	inner driver.Connector
	retry time.Duration
	now   func() time.Time

	mu      sync.Mutex
	down    bool      // the last attempt failed
	probing bool      // an attempt while down is under way
	next    time.Time // while down: no attempt before
	lastErr error

	failures atomic.Int64 // attempts that failed
	refused  atomic.Int64 // connections refused at once while down
}

func newPGConnector(inner driver.Connector, retry time.Duration) *pgConnector {
	return &pgConnector{inner: inner, retry: retry, now: time.Now}
}

func (c *pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	c.mu.Lock()
	if c.down {
		now := c.now()
		if c.probing || now.Before(c.next) {
			wait := max(c.next.Sub(now), 0)
			if c.probing {
				wait = c.retry
			}
			err := c.lastErr
			c.mu.Unlock()
			c.refused.Add(1)
			return nil, &UnavailableError{RetryAfter: wait, Err: err}
		}
		c.probing = true
	}
	probe := c.probing
	c.mu.Unlock()

	conn, err := c.inner.Connect(ctx)

	c.mu.Lock()
	defer c.mu.Unlock()
	if probe {
		c.probing = false
	}
	if err == nil {
		c.down = false
		return conn, nil
	}
	if ctx.Err() != nil {
		return nil, err // the caller gave up: nothing learnt about the servers
	}
	c.failures.Add(1)
	c.down, c.next, c.lastErr = true, c.now().Add(c.retry), err
	return nil, &UnavailableError{RetryAfter: c.retry, Err: err}
}

func (c *pgConnector) Driver() driver.Driver { return c.inner.Driver() }

// reachable reports whether the last connection attempt succeeded.
func (c *pgConnector) reachable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.down
}
