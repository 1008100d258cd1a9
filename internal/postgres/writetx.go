package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// writeTx is the writer's transaction with its BEGIN and COMMIT folded into
// the pipelines it sends anyway, so that a batch costs two round trips
// (BEGIN + prefetch, writes + COMMIT) instead of four. On a busy machine
// every round trip is also a wake-up of the writer goroutine and of the
// PostgreSQL backend, and the writer is the one serial part of the write path.
//
//   - BEGIN is sent with the first statement or pipeline of the batch.
//   - Apply's writes are held back (pending) and sent with the COMMIT; any
//     other statement sent before the commit sends them first, so every
//     statement still sees what was applied before it.
//   - The commit counts only when PostgreSQL answers "COMMIT" (a failed
//     transaction answers "ROLLBACK" to a COMMIT without an error).
//
// Nothing is acknowledged before the COMMIT's answer: Write returns nil only
// then.
type writeTx struct {
	conn    *pgxpool.Conn
	began   bool
	done    bool      // committed or rolled back
	pending *pipeline // Apply's writes, not yet sent
}

const beginSQL = `BEGIN ISOLATION LEVEL READ COMMITTED`

func (t *writeTx) begin(ctx context.Context) error {
	if t.began {
		return nil
	}
	if _, err := t.conn.Exec(ctx, beginSQL); err != nil {
		return fmt.Errorf("begin write: %w", err)
	}
	t.began = true
	return nil
}

// flush sends the pending writes, if any.
func (t *writeTx) flush(ctx context.Context) error {
	if t.pending == nil {
		return nil
	}
	p := t.pending
	t.pending = nil
	return p.run(ctx, t.sender())
}

func (t *writeTx) ready(ctx context.Context) error {
	if err := t.begin(ctx); err != nil {
		return err
	}
	return t.flush(ctx)
}

func (t *writeTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.ready(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.conn.Exec(ctx, sql, args...)
}

func (t *writeTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.ready(ctx); err != nil {
		return nil, err
	}
	return t.conn.Query(ctx, sql, args...)
}

func (t *writeTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.ready(ctx); err != nil {
		return errRow{err}
	}
	return t.conn.QueryRow(ctx, sql, args...)
}

// SendBatch sends b, preceded by BEGIN when the transaction has not begun
// (its result is read here) and by the pending writes (sent first).
func (t *writeTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.flush(ctx); err != nil {
		return errBatch{err}
	}
	if t.began {
		return t.conn.SendBatch(ctx, b)
	}
	var withBegin pgx.Batch
	withBegin.Queue(beginSQL)
	withBegin.QueuedQueries = append(withBegin.QueuedQueries, b.QueuedQueries...)
	br := t.conn.SendBatch(ctx, &withBegin)
	t.began = true // or failed, and then the connection is not reused (Release)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return errBatch{fmt.Errorf("begin write: %w", err)}
	}
	return br
}

// commit sends the pending writes and COMMIT in one pipeline.
func (t *writeTx) commit(ctx context.Context) error {
	if err := t.begin(ctx); err != nil {
		return err
	}
	p := t.pending
	t.pending = nil
	if p == nil {
		p = &pipeline{}
	}
	p.commit()
	err := p.run(ctx, t.sender())
	if err == nil {
		t.done = true
	}
	return err
}

// rollback ends a transaction that did not commit. A connection it cannot
// bring back to idle is closed by Release rather than reused.
func (t *writeTx) rollback() {
	if t.done || !t.began {
		return
	}
	t.done = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = t.conn.Exec(ctx, `ROLLBACK`)
}

func (t *writeTx) sender() batchSender { return t.conn }

// batchSender sends a pipeline.
type batchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// errRow and errBatch carry an error to where a row or batch result is read.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRow(b) }
func (b errBatch) Close() error                     { return b.err }
func (b errBatch) Tx() pgx.Tx                       { return nil }

var (
	errNotCommitted = errors.New("the transaction was rolled back")
	errRowCount     = errors.New("a row to update is missing, or changed behind the batch's lock (nothing was written)")
)
