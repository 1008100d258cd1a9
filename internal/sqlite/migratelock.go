package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pressly/goose/v3/lock"
)

// Migrations are serialised between processes by an exclusive lock on a
// file beside the database (LockFileName), held from before goose reads its
// version table until after the last migration commits. Without it two
// processes opening one fresh folder at once (a server starting while
// `pointd migrate` runs) both read "nothing applied" and both run the same
// ALTER TABLE: one fails with "duplicate column name" halfway through the
// list. Goose's own locks are for PostgreSQL and MySQL; a transaction held
// across the migrations cannot serve on SQLite either, since the writer
// pool has one connection and goose needs it. The lock is the operating
// system's (flock): the kernel releases it when a process dies, so a crash
// mid-migration never leaves a folder locked, and the file itself, left in
// place, means nothing.
type dirLocker struct {
	dir string
	f   *os.File
}

// LockFileName is the file in the data folder whose lock a process holds
// while it migrates the database.
const LockFileName = "pointd.migrate.lock"

var _ lock.Locker = (*dirLocker)(nil)

// lockPoll is how often a process waiting for another's migrations tries
// the lock again; waiting is rare (only while another process migrates).
const lockPoll = 20 * time.Millisecond

func (l *dirLocker) Lock(ctx context.Context, _ *sql.DB) error {
	f, err := os.OpenFile(filepath.Join(l.dir, LockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("lock %s for migrations: %w", l.dir, err)
	}
	for {
		ok, err := tryLockExclusive(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("lock %s for migrations: %w", l.dir, err)
		}
		if ok {
			l.f = f
			return nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return fmt.Errorf("lock %s for migrations (another process is migrating it): %w", l.dir, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

func (l *dirLocker) Unlock(context.Context, *sql.DB) error {
	if l.f == nil {
		return nil
	}
	err := unlock(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
