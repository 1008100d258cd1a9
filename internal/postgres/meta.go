package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3/lock"
)

// HasLedger reports whether the schema search_path names first holds a
// pointd ledger (its first migration applied).
func (db *DB) HasLedger(ctx context.Context) (bool, error) {
	var ok bool
	if err := db.pool.QueryRow(ctx, `SELECT to_regclass('ledger_head') IS NOT NULL`).Scan(&ok); err != nil {
		return false, fmt.Errorf("postgres: look for the ledger: %w", err)
	}
	return ok, nil
}

// Mode returns the mode the database recorded ("live" or "test"), or ""
// when none is recorded yet (or the schema predates the record).
func (db *DB) Mode(ctx context.Context) (string, error) {
	var ok bool
	if err := db.pool.QueryRow(ctx, `SELECT to_regclass('pointd_meta') IS NOT NULL`).Scan(&ok); err != nil || !ok {
		return "", err
	}
	var mode string
	err := db.pool.QueryRow(ctx, `SELECT value FROM pointd_meta WHERE key = 'mode'`).Scan(&mode)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("postgres: database mode: %w", err)
	}
	return mode, nil
}

// ClaimMode records mode as the database's mode unless one is recorded
// already, and returns the recorded one: of two instances of different
// modes claiming a fresh database at once, exactly one wins.
func (db *DB) ClaimMode(ctx context.Context, mode string) (string, error) {
	if _, err := db.pool.Exec(ctx,
		`INSERT INTO pointd_meta (key, value) VALUES ('mode', $1) ON CONFLICT (key) DO NOTHING`, mode); err != nil {
		return "", fmt.Errorf("postgres: record the database mode: %w", err)
	}
	var recorded string
	if err := db.pool.QueryRow(ctx, `SELECT value FROM pointd_meta WHERE key = 'mode'`).Scan(&recorded); err != nil {
		return "", fmt.Errorf("postgres: database mode: %w", err)
	}
	return recorded, nil
}

// schemaLocker serialises migrations between instances: a session advisory
// lock, on the connection goose migrates with, keyed by the schema so that
// pointd schemas side by side in one database (the tests') do not wait for
// each other. pg_advisory_lock waits in the server (no polling) and the
// server releases it when the session ends, a crashed instance's too. This
// is the one advisory lock pointd takes; on an engine without them the
// retry in Migrate is what remains.
type schemaLocker struct{}

var _ lock.SessionLocker = schemaLocker{}

// migrationLockSpace is the first key of the two-key advisory lock: pointd's
// own space, the second key being the schema's hash.
const migrationLockSpace = 0x706f696e // "poin"

func (schemaLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1, hashtext(coalesce(current_schema(), '')))`, migrationLockSpace); err != nil {
		return fmt.Errorf("lock the schema for migrations: %w", err)
	}
	return nil
}

func (schemaLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1, hashtext(coalesce(current_schema(), '')))`, migrationLockSpace); err != nil {
		return fmt.Errorf("unlock the schema after migrations: %w", err)
	}
	return nil
}
