// Package postgres is pointd's storage on PostgreSQL (15 and later): it
// implements ledger.Store and auth.KeyStore with pgx, and carries its schema
// as numbered SQL migrations applied with goose.
//
// Everything lives in the schema the connection's search_path names first,
// goose's version table included, so one database can hold several pointd
// schemas (the tests use one per test).
//
// The SQL stays within what distributed engines that speak the PostgreSQL
// protocol support: row locks (SELECT … FOR UPDATE), array parameters and
// unnest, no LISTEN, and one advisory lock only around migrations
// (meta.go).
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/privacy"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// DefaultMaxConns is the pool size when Open is given 0.
const DefaultMaxConns = 8

// DB is a pointd database on PostgreSQL: a fixed number of connections, one
// of them reserved for the batched writer so that no surge of reads can make
// ledger writes wait for a connection.
type DB struct {
	pool  *pgxpool.Pool // reads, directory writes, migrations
	write *pgxpool.Pool // the writer's connections (writeConns)

	writeConns int

	phones *privacy.Phones // set once by UsePhones before use; nil: privacy.ProcessPhones()
}

var (
	_ ledger.Store       = (*DB)(nil)
	_ auth.KeyStore      = (*DB)(nil)
	_ ledger.BatchTx     = (*batchTx)(nil)
	_ ledger.AuditSource = (*auditSource)(nil)
)

// Open connects to the database dsn names with a pool of maxConns
// connections (DefaultMaxConns when 0) and applies pending migrations.
func Open(ctx context.Context, dsn string, maxConns int) (*DB, error) {
	db, err := OpenNoMigrate(ctx, dsn, maxConns)
	if err != nil {
		return nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// OpenNoMigrate connects like Open but leaves the schema as it is.
func OpenNoMigrate(ctx context.Context, dsn string, maxConns int) (*DB, error) {
	if maxConns < 0 {
		return nil, fmt.Errorf("postgres: maxConns must not be negative, got %d", maxConns)
	}
	if maxConns == 0 {
		maxConns = DefaultMaxConns
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse dsn: %w", err)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "pointd" // in pg_stat_activity
	}
	// No JIT compilation: pointd's queries are short index lookups, and when
	// statistics lag behind a fast-growing table (a launch, a bulk load,
	// autovacuum not yet there) the planner's cost estimates can pass
	// jit_above_cost, and a 5 ms history page then spends 300 ms compiling
	// itself (bench/history measured exactly that). A DSN that sets jit wins.
	if _, ok := cfg.ConnConfig.RuntimeParams["jit"]; !ok {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	if maxConns < 2 {
		return nil, fmt.Errorf("postgres: maxConns must be at least 2 (one is the writer's), got %d", maxConns)
	}
	// Small fixed pools: the batched writer has its own connections whatever
	// the load, reads share the rest; neither grows nor shrinks. Two writer
	// connections (when the pool has room) let the next batch's BEGIN and
	// loads wait in PostgreSQL for the current batch's COMMIT instead of
	// being sent after it (ledger.ConcurrentStore).
	writeConns := 1
	if maxConns >= 4 {
		writeConns = 2
	}
	wcfg := cfg.Copy()
	wcfg.MaxConns, wcfg.MinConns = int32(writeConns), int32(writeConns)
	cfg.MaxConns = int32(maxConns - writeConns)
	cfg.MinConns = cfg.MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	write, err := pgxpool.NewWithConfig(ctx, wcfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		write.Close()
		return nil, fmt.Errorf("postgres: connect to %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	return &DB{pool: pool, write: write, writeConns: writeConns}, nil
}

// WriteConcurrency is how many write transactions may run at once: the
// writer's connections. The chain head lock, taken first in each, makes them
// commit one after the other (ledger.ConcurrentStore).
func (db *DB) WriteConcurrency() int { return db.writeConns }

// Close closes every connection.
func (db *DB) Close() error {
	db.pool.Close()
	db.write.Close()
	return nil
}

// Stats reports the connections: in use, idle, and the fixed maximum
// (the writer's included).
func (db *DB) Stats() (inUse, idle, max int) {
	r, w := db.pool.Stat(), db.write.Stat()
	return int(r.AcquiredConns() + w.AcquiredConns()), int(r.IdleConns() + w.IdleConns()), int(r.MaxConns() + w.MaxConns())
}

// PoolWaits reports idle connections and how often an acquire had to wait
// for one (the writer's own connection included).
func (db *DB) PoolWaits() (idle int, waits int64) {
	r, w := db.pool.Stat(), db.write.Stat()
	return int(r.IdleConns() + w.IdleConns()), r.EmptyAcquireCount() + w.EmptyAcquireCount()
}

// Exec runs a statement outside the ledger. Only tests use it, to damage rows
// behind the ledger's back and check the audit notices.
func (db *DB) Exec(ctx context.Context, query string, args ...any) error {
	_, err := db.pool.Exec(ctx, query, args...)
	return err
}

// Migrate applies the pending migrations and returns the names of those it
// applied. Instances starting together wait for each other's migrations
// (schemaLocker). Where the engine ignores advisory locks, two may still
// race to apply the same migration: the loser's attempt fails and rolls
// back, and it tries again, finding the migration applied.
func (db *DB) Migrate(ctx context.Context) (applied []string, err error) {
	err = db.withProvider(func(p *goose.Provider) error {
		const attempts = 3
		for attempt := 1; ; attempt++ {
			res, err := p.Up(ctx)
			for _, r := range res {
				if r.Error == nil {
					applied = append(applied, path.Base(r.Source.Path))
				}
			}
			if err == nil || attempt == attempts {
				return err
			}
			select {
			case <-ctx.Done():
				return err
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		}
	})
	if err != nil {
		return applied, fmt.Errorf("postgres: migrate: %w", err)
	}
	return applied, nil
}

// PendingMigrations lists the migrations Migrate would apply, by file name.
// It changes nothing, not even on a database never migrated.
func (db *DB) PendingMigrations(ctx context.Context) ([]string, error) {
	var versioned bool
	if err := db.pool.QueryRow(ctx, `SELECT to_regclass('goose_db_version') IS NOT NULL`).Scan(&versioned); err != nil {
		return nil, fmt.Errorf("postgres: migration status: %w", err)
	}
	var pending []string
	if !versioned { // goose would create its table to answer: all are pending
		names, err := fs.Glob(migrationFiles, "migrations/*.sql")
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			pending = append(pending, path.Base(n))
		}
		slices.Sort(pending)
		return pending, nil
	}
	err := db.withProvider(func(p *goose.Provider) error {
		st, err := p.Status(ctx)
		if err != nil {
			return err
		}
		for _, s := range st {
			if s.State == goose.StatePending {
				pending = append(pending, path.Base(s.Source.Path))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: migration status: %w", err)
	}
	return pending, nil
}

// withProvider runs fn with a goose provider over the pool's connections, so
// the version table goes where search_path says; Up and Down hold the
// migration lock.
func (db *DB) withProvider(fn func(*goose.Provider) error) error {
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	sqlDB := stdlib.OpenDBFromPool(db.pool)
	defer sqlDB.Close() // leaves the pool open
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, fsys, goose.WithDisableGlobalRegistry(true),
		goose.WithSessionLocker(schemaLocker{}))
	if err != nil {
		return err
	}
	return fn(p)
}

// querier is what the pool, a connection and a transaction have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ts is how a time is written: to the microsecond, in UTC, NULL when zero.
func ts(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: ledger.MicroTime(t), Valid: true}
}

// timeOf is how a time is read back: UTC, zero when NULL.
func timeOf(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// pgCode returns the SQLSTATE of err and the constraint it names, if any.
func pgCode(err error) (code, constraint string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.ConstraintName
	}
	return "", ""
}

const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// limitArg turns "0 or less: no limit" into SQL's LIMIT NULL.
func limitArg(limit int) *int64 {
	if limit <= 0 {
		return nil
	}
	n := int64(limit)
	return &n
}
