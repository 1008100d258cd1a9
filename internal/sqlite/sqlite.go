// Package sqlite keeps pointd's ledger and API keys in one SQLite file: the
// embedded default store, an implementation of ledger.Store and
// auth.KeyStore on the pure-Go driver modernc.org/sqlite.
//
// It holds a fixed, small number of connections whatever the load: one
// writer, whose transactions begin IMMEDIATE (the batched ledger writer and
// the directory inserts share it), and a pool of four readers that, in WAL
// mode, never wait for the writer. Every commit is durable
// (synchronous=FULL); batching many operations per commit pays for the fsync.
// Another process (the `pointd keys create` command) may write the same file
// while a server runs: the busy timeout makes each side wait for the other.
//
// The schema is a list of numbered SQL files in migrations/, embedded in the
// binary and applied with goose.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/privacy"
)

// FileName is the database file Open creates in its directory.
const FileName = "pointd.db"

const (
	readConns = 4
	// busyTimeoutMS is how long a connection waits for a lock another
	// connection or process holds before it gives up with SQLITE_BUSY.
	busyTimeoutMS = 10_000
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var (
	_ ledger.Store  = (*DB)(nil)
	_ auth.KeyStore = (*DB)(nil)
)

// DB is a pointd database in one SQLite file.
type DB struct {
	path string
	w    *sql.DB // one connection; BEGIN IMMEDIATE
	r    *sql.DB // readers

	migrations *goose.Provider

	// Statements prepared once per pool (database/sql keeps one per
	// connection and prepares again on a new connection by itself).
	wmu    sync.Mutex
	wstmts map[string]*sql.Stmt // the write path (batch.go)
	rmu    sync.Mutex
	rstmts map[string]*sql.Stmt // reads

	phones *privacy.Phones // set once by UsePhones before use; nil: privacy.ProcessPhones()

	ckOnce sync.Once
	ckMu   sync.Mutex
	ck     *checkpointer // checkpoint.go; nil until the first Write
}

// Open opens the database in dir (creating dir and the file when needed) and
// applies every pending migration.
func Open(ctx context.Context, dir string) (*DB, error) {
	db, err := OpenNoMigrate(ctx, dir)
	if err != nil {
		return nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// OpenNoMigrate opens the database in dir (creating dir and the file when
// needed) and leaves its schema as it is.
func OpenNoMigrate(ctx context.Context, dir string) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create data directory: %w", err)
	}
	file, err := filepath.Abs(filepath.Join(dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	db := &DB{path: file, wstmts: map[string]*sql.Stmt{}, rstmts: map[string]*sql.Stmt{}}

	common := url.Values{}
	common.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	common.Add("_pragma", "foreign_keys(1)")

	wq := cloneValues(common)
	wq.Add("_pragma", "journal_mode(WAL)")
	wq.Add("_pragma", "synchronous(FULL)")
	// Deleted and overwritten content is zeroed, in table and index pages
	// and in pages put on the free list, so that an erased member's name
	// and phone survive nowhere in the file (erase.go). The ledger appends
	// and updates rows in place; what this costs is the writes of freed pages.
	wq.Add("_pragma", "secure_delete(1)")
	wq.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", writerAutoCheckpoint)) // checkpoint.go
	wq.Set("_txlock", "immediate")
	if db.w, err = sql.Open("sqlite", dsn(file, wq)); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", file, err)
	}
	db.w.SetMaxOpenConns(1)
	db.w.SetMaxIdleConns(1)
	db.w.SetConnMaxLifetime(0)
	db.w.SetConnMaxIdleTime(0)
	// The writer connection switches the file to WAL before any reader opens it.
	if err := db.w.PingContext(ctx); err != nil {
		db.w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", file, err)
	}

	rq := cloneValues(common)
	rq.Add("_pragma", "query_only(1)")
	rq.Add("_pragma", "synchronous(FULL)") // the readers run the WAL checkpoints (checkpoint.go)
	if db.r, err = sql.Open("sqlite", dsn(file, rq)); err != nil {
		db.w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", file, err)
	}
	db.r.SetMaxOpenConns(readConns)
	db.r.SetMaxIdleConns(readConns)
	db.r.SetConnMaxLifetime(0)
	db.r.SetConnMaxIdleTime(0)

	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		db.closePools()
		return nil, fmt.Errorf("sqlite: migrations: %w", err)
	}
	db.migrations, err = goose.NewProvider(goose.DialectSQLite3, db.w, sub,
		goose.WithDisableGlobalRegistry(true), goose.WithLogger(goose.NopLogger()),
		goose.WithLocker(&dirLocker{dir: filepath.Dir(file)})) // migratelock.go
	if err != nil {
		db.closePools()
		return nil, fmt.Errorf("sqlite: migrations: %w", err)
	}
	return db, nil
}

// dsn is a modernc.org/sqlite URI for file: the path escaped so that any
// character in it ('?', '#', '%') survives.
func dsn(file string, q url.Values) string {
	p := filepath.ToSlash(file)
	if !path.IsAbs(p) { // a Windows drive path: file:///C:/...
		p = "/" + p
	}
	return "file:" + (&url.URL{Path: p}).EscapedPath() + "?" + q.Encode()
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// Path is the database file.
func (db *DB) Path() string { return db.path }

// Migrate applies every pending migration and returns the names of the files
// it ran.
func (db *DB) Migrate(ctx context.Context) ([]string, error) {
	results, err := db.migrations.Up(ctx)
	applied := make([]string, 0, len(results))
	for _, r := range results {
		if r.Error == nil {
			applied = append(applied, path.Base(r.Source.Path))
		}
	}
	if err != nil {
		return applied, fmt.Errorf("sqlite: migrate: %w", err)
	}
	return applied, nil
}

// PendingMigrations lists the files Migrate would run, without changing the
// database.
func (db *DB) PendingMigrations(ctx context.Context) ([]string, error) {
	// goose creates its version table when it first looks at a database;
	// a check must not, so a database without it has everything pending.
	var n int
	err := db.r.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, goose.DefaultTablename).Scan(&n)
	if err != nil {
		return nil, fmt.Errorf("sqlite: pending migrations: %w", err)
	}
	var pending []string
	if n == 0 {
		for _, s := range db.migrations.ListSources() {
			pending = append(pending, path.Base(s.Path))
		}
		return pending, nil
	}
	status, err := db.migrations.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: pending migrations: %w", err)
	}
	for _, s := range status {
		if s.State == goose.StatePending {
			pending = append(pending, path.Base(s.Source.Path))
		}
	}
	return pending, nil
}

// Exec runs a statement on the writer connection, outside the ledger. It is
// there for tests that damage the data behind the ledger's back to show
// that the audit catches it; nothing else should call it.
func (db *DB) Exec(ctx context.Context, query string, args ...any) error {
	_, err := db.w.ExecContext(ctx, query, args...)
	return err
}

// Stats reports connections in use on the writer and the reader pools, and
// how many connections the database may ever open.
func (db *DB) Stats() (writeConnsInUse, readConnsInUse, maxConns int) {
	ws, rs := db.w.Stats(), db.r.Stats()
	return ws.InUse, rs.InUse, ws.MaxOpenConnections + rs.MaxOpenConnections
}

// PoolWaits reports idle connections and how often a caller waited for one.
func (db *DB) PoolWaits() (idle int, waits int64) {
	ws, rs := db.w.Stats(), db.r.Stats()
	return ws.Idle + rs.Idle, ws.WaitCount + rs.WaitCount
}

// Close closes every connection.
func (db *DB) Close() error {
	db.closeCheckpointer()
	db.wmu.Lock()
	closeStmts(db.wstmts)
	db.wmu.Unlock()
	db.rmu.Lock()
	closeStmts(db.rstmts)
	db.rmu.Unlock()
	return db.closePools()
}

func (db *DB) closePools() error {
	return errors.Join(db.r.Close(), db.w.Close())
}

func closeStmts(m map[string]*sql.Stmt) {
	for q, s := range m {
		s.Close()
		delete(m, q)
	}
}

// readStmt returns query prepared on the reader pool.
func (db *DB) readStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	db.rmu.Lock()
	s, ok := db.rstmts[query]
	db.rmu.Unlock()
	if ok {
		return s, nil
	}
	// Prepared without the lock: it waits for a free reader connection.
	s, err := db.r.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	db.rmu.Lock()
	defer db.rmu.Unlock()
	if prev, ok := db.rstmts[query]; ok { // another goroutine was first
		s.Close()
		return prev, nil
	}
	db.rstmts[query] = s
	return s, nil
}

// queryRow runs a single-row query on the reader pool with a prepared statement.
func (db *DB) queryRow(ctx context.Context, query string, args ...any) (*sql.Row, error) {
	s, err := db.readStmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.QueryRowContext(ctx, args...), nil
}

// query runs a query on the reader pool with a prepared statement.
func (db *DB) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	s, err := db.readStmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, args...)
}

// Times are stored as microseconds since the epoch, UTC; the zero time as NULL.

func timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func timeOf(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

// uniqueViolation reports the columns of a violated UNIQUE or PRIMARY KEY
// constraint ("members.card_number"), or "" when err is something else.
func uniqueViolation(err error) string {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return ""
	}
	if se.Code() != sqlite3.SQLITE_CONSTRAINT_UNIQUE && se.Code() != sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
		return ""
	}
	const marker = "constraint failed: "
	msg := se.Error()
	// "constraint failed: UNIQUE constraint failed: members.card_number (2067)"
	if i := strings.LastIndex(msg, marker); i >= 0 {
		msg = msg[i+len(marker):]
	}
	if i := strings.Index(msg, " ("); i >= 0 {
		msg = msg[:i]
	}
	return msg
}
