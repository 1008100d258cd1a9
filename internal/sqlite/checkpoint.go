package sqlite

import (
	"context"
	"database/sql"
	"sync/atomic"
	"time"
)

// The WAL checkpoint runs beside the writer, not inside it.
//
// By default SQLite checkpoints in the connection whose commit made the WAL
// longer than wal_autocheckpoint pages: the batched ledger writer, the one
// serial part of the write path, would then copy pages into the database file
// and wait for that file's fsync before it could answer its batch or start
// the next one. A profile under earn load put about a tenth of the writer's
// time there. So the writer's own automatic checkpoint is pushed far out (a
// backstop that bounds the WAL if this goroutine ever falls behind) and a
// goroutine runs PASSIVE checkpoints shortly after commits, on a connection
// of the reader pool (query_only does not forbid checkpoints), so the number
// of connections stays what it was. PASSIVE never blocks the writer or a
// reader; durability is unchanged: a commit is durable once its WAL frames
// are synced (synchronous=FULL on the writer), and the checkpoint syncs the
// database file before the WAL may be reused (the readers run with
// synchronous=FULL too, for that: with OFF a checkpoint would not sync).
const (
	// writerAutoCheckpoint is the writer connection's wal_autocheckpoint
	// (pages): reached only if the background checkpoints stall.
	writerAutoCheckpoint = 10_000
	// checkpointEvery is the least time between two background checkpoints.
	checkpointEvery = 100 * time.Millisecond
)

// checkpointer runs PASSIVE checkpoints on a reader connection after commits.
type checkpointer struct {
	db *sql.DB // the reader pool
	// truncate asks for TRUNCATE checkpoints until one completes: an
	// erasure's old pages are still in the WAL (erase.go).
	truncate atomic.Bool
	kick     chan struct{}
	stop     chan struct{}
	done     chan struct{}
}

func startCheckpointer(pool *sql.DB) *checkpointer {
	c := &checkpointer{db: pool, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

// committed tells the checkpointer the WAL grew. It never blocks.
func (c *checkpointer) committed() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *checkpointer) loop() {
	defer close(c.done)
	var last time.Time
	for {
		select {
		case <-c.stop:
			return
		case <-c.kick:
		}
		if wait := checkpointEvery - time.Since(last); wait > 0 {
			select {
			case <-c.stop:
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if c.truncate.Swap(false) {
			if ok, _ := truncateWAL(ctx, c.db); !ok {
				c.truncate.Store(true)
				c.committed() // again after checkpointEvery
			}
		} else {
			// A failure (say, the file is busy with another process's
			// checkpoint) only means this checkpoint is left for the next one.
			_, _ = c.db.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
		}
		cancel()
	}
}

func (c *checkpointer) close() {
	close(c.stop)
	<-c.done
}

// checkpoints returns the database's checkpointer, started on the first
// write: a process that never writes the ledger (pointd verify) runs none.
func (db *DB) checkpoints() *checkpointer {
	db.ckOnce.Do(func() {
		db.ckMu.Lock()
		db.ck = startCheckpointer(db.r)
		db.ckMu.Unlock()
	})
	db.ckMu.Lock()
	defer db.ckMu.Unlock()
	return db.ck
}

func (db *DB) closeCheckpointer() {
	db.ckMu.Lock()
	c := db.ck
	db.ck = nil
	db.ckMu.Unlock()
	if c != nil {
		c.close()
	}
}
