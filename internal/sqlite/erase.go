package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// Erasure and the files of the data folder.
//
// An UPDATE that blanks a member's name and phone leaves the old bytes in
// three places unless something removes them: the free space of the page
// the row lived in (and of the members_phone_hash index page), pages put
// on the free list when a b-tree rebalances, and the WAL, which keeps
// every earlier image of those pages until it is reset. The writer runs
// with secure_delete on (sqlite.go), which zeroes the first two as the
// erasing transaction writes; the WAL is emptied by a TRUNCATE checkpoint
// right after that transaction commits: it copies the new, zeroed pages
// into the database file and truncates the WAL to nothing.

// eraseTimeout bounds the checkpoint an erasure waits for; a TRUNCATE
// checkpoint waits for readers of older snapshots (another process's too).
const eraseTimeout = 5 * time.Second

// eraseWAL empties the WAL after an erasing transaction. When it cannot now
// (a reader in another process holds an old snapshot), the background
// checkpointer tries again after each commit until it succeeds.
func (db *DB) eraseWAL(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eraseTimeout)
	defer cancel()
	if ok, _ := truncateWAL(ctx, db.r); ok {
		return
	}
	c := db.checkpoints()
	c.truncate.Store(true)
	c.committed()
}

// truncateWAL runs a TRUNCATE checkpoint on pool and reports whether it
// completed: every frame copied into the database file and the WAL reset.
func truncateWAL(ctx context.Context, pool *sql.DB) (bool, error) {
	var busy, walFrames, checkpointed int
	err := pool.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &walFrames, &checkpointed)
	if err != nil {
		return false, err
	}
	return busy == 0, nil
}
