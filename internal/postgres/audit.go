package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pointd/pointd/internal/ledger"
)

// Audit returns the audit's view of the database. Each scan is one statement,
// so each sees one snapshot; scans do not share one, so an audit that runs
// while pointd writes can see a later scan ahead of an earlier one. To audit
// a live database, use AuditSnapshot.
func (db *DB) Audit() ledger.AuditSource { return &auditSource{q: db.pool} }

// AuditSnapshot runs fn with an AuditSource whose scans all see one snapshot
// of the database: one REPEATABLE READ, READ ONLY transaction on one
// connection, so an audit of a database that pointd is writing to is still
// exact. fn must not call the source again from inside a scan's callback (the
// connection is busy streaming that scan).
//
//	err := db.AuditSnapshot(ctx, func(src ledger.AuditSource) error {
//		report, err = ledger.Verify(ctx, src)
//		return err
//	})
func (db *DB) AuditSnapshot(ctx context.Context, fn func(ledger.AuditSource) error) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin audit snapshot: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read only: nothing to keep
	return fn(&auditSource{q: tx})
}

type auditSource struct {
	q querier
}

// each streams the rows of a query to fn, never holding more than one row.
func each[T any](ctx context.Context, q querier, scan func(pgx.Row) (T, error), fn func(T) error, sql string) error {
	rows, err := q.Query(ctx, sql)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return err
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (a *auditSource) Transactions(ctx context.Context, fn func(ledger.Transaction) error) error {
	return each(ctx, a.q, scanTxn, fn, `SELECT `+txnCols+` FROM `+txnFrom+` ORDER BY t.seq`)
}

func (a *auditSource) Accounts(ctx context.Context, fn func(ledger.Account, string) error) error {
	type row struct {
		a        ledger.Account
		memberID string
	}
	scan := func(r pgx.Row) (row, error) {
		var v row
		err := r.Scan(&v.a.ID, &v.a.Balance, &v.a.Held, &v.memberID)
		return v, err
	}
	// The member an account belongs to is the member row that names it.
	return each(ctx, a.q, scan, func(v row) error { return fn(v.a, v.memberID) }, `
		SELECT a.id, a.balance, a.held, coalesce(m.id, '')
		FROM accounts a LEFT JOIN members m ON m.account_id = a.id
		ORDER BY a.id`)
}

func (a *auditSource) Lots(ctx context.Context, fn func(ledger.Lot) error) error {
	return each(ctx, a.q, scanLot, fn, `SELECT `+lotCols+` FROM lots l ORDER BY l.id`)
}

func (a *auditSource) Holds(ctx context.Context, fn func(ledger.Hold) error) error {
	return each(ctx, a.q, scanHold, fn, `SELECT `+holdCols+` FROM holds h ORDER BY h.id`)
}

func (a *auditSource) OrphanIdempotency(ctx context.Context) ([]ledger.IdemKey, error) {
	return list(ctx, a.q, func(row pgx.Row) (ledger.IdemKey, error) {
		var k ledger.IdemKey
		err := row.Scan(&k.Scope, &k.Key)
		return k, err
	}, `
		SELECT i.scope, i.key FROM idempotency i
		WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.id = i.txn_id)
		ORDER BY i.scope, i.key`)
}

func (a *auditSource) Head(ctx context.Context) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := a.q.QueryRow(ctx, `SELECT seq, hash FROM ledger_head WHERE id = 1`).Scan(&seq, &hash)
	if err != nil {
		return 0, nil, fmt.Errorf("read ledger head: %w", err)
	}
	return seq, hash, nil
}
