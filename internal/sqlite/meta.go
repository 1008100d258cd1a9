package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Exists reports whether dir holds a database file, without creating
// anything: the commands that must not make a ledger ask first.
func Exists(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, FileName))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// HasLedger reports whether the file holds a pointd ledger (its first
// migration applied), and not merely an empty file.
func (db *DB) HasLedger(ctx context.Context) (bool, error) {
	var n int
	err := db.r.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'ledger_head'`).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("sqlite: look for the ledger: %w", err)
	}
	return n > 0, nil
}

// Mode returns the mode the database recorded ("live" or "test"), or ""
// when none is recorded yet (or the schema predates the record).
func (db *DB) Mode(ctx context.Context) (string, error) {
	var n int
	err := db.r.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'pointd_meta'`).Scan(&n)
	if err != nil || n == 0 {
		return "", err
	}
	var mode string
	err = db.r.QueryRowContext(ctx, `SELECT value FROM pointd_meta WHERE key = 'mode'`).Scan(&mode)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: database mode: %w", err)
	}
	return mode, nil
}

// ClaimMode records mode as the database's mode unless one is recorded
// already, and returns the recorded one: of two processes of different
// modes claiming a fresh database at once, exactly one wins.
func (db *DB) ClaimMode(ctx context.Context, mode string) (string, error) {
	var recorded string
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO pointd_meta (key, value) VALUES ('mode', ?) ON CONFLICT (key) DO NOTHING`, mode); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM pointd_meta WHERE key = 'mode'`).Scan(&recorded)
	})
	if err != nil {
		return "", fmt.Errorf("sqlite: record the database mode: %w", err)
	}
	return recorded, nil
}
