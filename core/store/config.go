package store

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/config"
)

// Drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Config selects and tunes the backend.
type Config struct {
	// Driver is "sqlite" (default) or "postgres".
	Driver string `yaml:"driver"`
	// Path is the SQLite database file. Required for sqlite; the
	// composition root puts it under its data dir.
	Path string `yaml:"path"`
	// DSN is the PostgreSQL connection string (may carry a password, hence a
	// Secret), e.g. postgres://user@host:5432/db?search_path=longlink.
	DSN config.Secret `yaml:"dsn"`
	// MaxBatch caps how many appends share one transaction. Default 512.
	MaxBatch int `yaml:"max_batch"`
	// Committers is the number of concurrent group-commit transactions on
	// PostgreSQL. SQLite always uses one (its single writer). Default 4.
	Committers int `yaml:"committers"`
	// ReadConns is the size of the read pool. Default 4.
	ReadConns int `yaml:"read_conns"`
	// Synchronous is SQLite's synchronous pragma: "full" (default: every
	// commit is fsynced before an ack) or "normal" (survives a process crash,
	// not a power loss).
	Synchronous string `yaml:"synchronous"`
	// BusyTimeout is how long SQLite waits for a lock. Default 5s.
	BusyTimeout config.Duration `yaml:"busy_timeout"`
	// MaxQueueDelay is the latency budget of the group-commit queue beyond
	// two batch times: an append that would wait longer than two batches
	// plus this for the appends ahead of it to commit (at the rate of
	// recent batches) is refused at once with ErrBusy instead of queueing.
	// Negative (the default): never refuse. Off by default: even with the
	// SDK's send window, refusals at 10,000 offered on one SQLite writer
	// idle the clients more than the shorter queue saves (BENCHMARKS.md,
	// session 4); 20ms (the p99 goal of a send) is the value it was
	// designed for.
	MaxQueueDelay config.Duration `yaml:"max_queue_delay"`
	// CommitTimeout bounds one group-commit transaction (its statements and
	// the commit); a stalled database fails the batch instead of holding
	// its appends. Default 10s.
	CommitTimeout config.Duration `yaml:"commit_timeout"`
	// LockTimeout, StatementTimeout and IdleInTransactionTimeout are set on
	// every PostgreSQL session (lock_timeout, statement_timeout,
	// idle_in_transaction_session_timeout) unless the DSN sets them, so
	// that no node's stall holds a lock that stops the others: the server
	// ends the transaction of a node paused in the middle of one (and its
	// row locks with it) after IdleInTransactionTimeout. Defaults 2s, 10s
	// and 1s (a transaction of the store never waits on its client
	// longer than a round trip).
	LockTimeout              config.Duration `yaml:"lock_timeout"`
	StatementTimeout         config.Duration `yaml:"statement_timeout"`
	IdleInTransactionTimeout config.Duration `yaml:"idle_in_transaction_timeout"`
	// ConnectRetry: after a failed attempt to connect to PostgreSQL (no
	// server answered, or none was writable: a failover under way), the
	// store tries again no sooner than this, one attempt at a time, and
	// meanwhile fails what needs a new connection at once with an
	// UnavailableError that says so. Default 250ms.
	ConnectRetry config.Duration `yaml:"connect_retry"`
}

// Default returns the embedded SQLite configuration (Path still to be set).
func Default() Config {
	return Config{
		Driver:        DriverSQLite,
		MaxBatch:      512,
		Committers:    4,
		ReadConns:     4,
		Synchronous:   "full",
		BusyTimeout:   config.Duration(5 * time.Second),
		MaxQueueDelay: -1,

		CommitTimeout:            config.Duration(10 * time.Second),
		LockTimeout:              config.Duration(2 * time.Second),
		StatementTimeout:         config.Duration(10 * time.Second),
		IdleInTransactionTimeout: config.Duration(time.Second),
		ConnectRetry:             config.Duration(250 * time.Millisecond),
	}
}

func (c *Config) applyDefaults() {
	d := Default()
	if c.Driver == "" {
		c.Driver = d.Driver
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = d.MaxBatch
	}
	if c.Committers == 0 {
		c.Committers = d.Committers
	}
	if c.ReadConns == 0 {
		c.ReadConns = d.ReadConns
	}
	if c.Synchronous == "" {
		c.Synchronous = d.Synchronous
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = d.BusyTimeout
	}
	if c.MaxQueueDelay == 0 {
		c.MaxQueueDelay = d.MaxQueueDelay
	}
	for _, x := range []struct{ v, d *config.Duration }{
		{&c.CommitTimeout, &d.CommitTimeout}, {&c.LockTimeout, &d.LockTimeout},
		{&c.StatementTimeout, &d.StatementTimeout}, {&c.IdleInTransactionTimeout, &d.IdleInTransactionTimeout},
		{&c.ConnectRetry, &d.ConnectRetry},
	} {
		if *x.v == 0 {
			*x.v = *x.d
		}
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs config.Errors
	switch c.Driver {
	case DriverSQLite:
		if c.Path == "" {
			errs.Addf("store.path: required for sqlite")
		}
		if c.Synchronous != "full" && c.Synchronous != "normal" {
			errs.Addf("store.synchronous: %q is not full or normal", c.Synchronous)
		}
	case DriverPostgres:
		if !c.DSN.IsSet() {
			errs.Addf("store.dsn: required for postgres")
		}
	default:
		errs.Addf("store.driver: %q is not sqlite or postgres", c.Driver)
	}
	if c.MaxBatch < 1 || c.MaxBatch > 10000 {
		errs.Addf("store.max_batch: %d not in 1..10000", c.MaxBatch)
	}
	if c.Committers < 1 || c.Committers > 64 {
		errs.Addf("store.committers: %d not in 1..64", c.Committers)
	}
	if c.ReadConns < 1 || c.ReadConns > 256 {
		errs.Addf("store.read_conns: %d not in 1..256", c.ReadConns)
	}
	if c.BusyTimeout < 0 {
		errs.Addf("store.busy_timeout: must not be negative")
	}
	if c.CommitTimeout < 0 || c.LockTimeout < 0 || c.StatementTimeout < 0 || c.IdleInTransactionTimeout < 0 || c.ConnectRetry < 0 {
		errs.Addf("store.commit_timeout, lock_timeout, statement_timeout, idle_in_transaction_timeout, connect_retry: must not be negative")
	}
	return errs.Err()
}

// Deps are the store's injected dependencies.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}
