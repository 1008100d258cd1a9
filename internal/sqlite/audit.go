package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/pointd/pointd/internal/ledger"
)

// Audit returns what pointd verify reads. Each scan is one statement on a
// reader connection: it streams its rows and sees one snapshot of the file
// (in WAL mode a statement's read transaction lasts until its last row),
// while the writer goes on.
func (db *DB) Audit() ledger.AuditSource { return audit{db.r} }

// AuditSnapshot runs fn with an AuditSource whose scans all read one
// snapshot: one read transaction on one reader connection, so auditing a
// database that a server is writing to reports no false discrepancies. fn
// must not start another scan from inside a scan's callback.
func (db *DB) AuditSnapshot(ctx context.Context, fn func(ledger.AuditSource) error) error {
	conn, err := db.r.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: audit snapshot: %w", err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: audit snapshot: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read only: nothing to keep
	// In WAL mode the snapshot is taken at the first read, not at BEGIN.
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM ledger_head`).Scan(&n); err != nil {
		return fmt.Errorf("sqlite: audit snapshot: %w", err)
	}
	return fn(audit{tx})
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type audit struct{ q queryer }

// Transactions calls fn for every transaction in seq order, with its postings.
func (a audit) Transactions(ctx context.Context, fn func(ledger.Transaction) error) error {
	// seq is the rowid and postings are keyed by (txn_id, account_id): the
	// join walks both in the order asked for, without sorting.
	rows, err := a.q.QueryContext(ctx, `
		SELECT `+txnCols+`
		FROM transactions t LEFT JOIN postings p ON p.txn_id = t.id
		ORDER BY t.seq, p.account_id`)
	if err != nil {
		return fmt.Errorf("sqlite: audit transactions: %w", err)
	}
	return scanTxns(rows, fn)
}

// Accounts calls fn for every account, with the member's id on member accounts.
func (a audit) Accounts(ctx context.Context, fn func(ledger.Account, string) error) error {
	rows, err := a.q.QueryContext(ctx, `
		SELECT id, balance, held, CASE kind WHEN 'member' THEN owner_id ELSE '' END
		FROM accounts ORDER BY id`)
	if err != nil {
		return fmt.Errorf("sqlite: audit accounts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var acct ledger.Account
		var member string
		if err := rows.Scan(&acct.ID, &acct.Balance, &acct.Held, &member); err != nil {
			return fmt.Errorf("sqlite: audit accounts: %w", err)
		}
		if err := fn(acct, member); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Lots calls fn for every lot.
func (a audit) Lots(ctx context.Context, fn func(ledger.Lot) error) error {
	rows, err := a.q.QueryContext(ctx, `SELECT `+lotCols+` FROM lots l ORDER BY l.id`)
	if err != nil {
		return fmt.Errorf("sqlite: audit lots: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var l ledger.Lot
		if err := scanLot(rows, &l); err != nil {
			return fmt.Errorf("sqlite: audit lots: %w", err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Holds calls fn for every hold.
func (a audit) Holds(ctx context.Context, fn func(ledger.Hold) error) error {
	rows, err := a.q.QueryContext(ctx, `SELECT `+holdCols+` FROM holds h ORDER BY h.id`)
	if err != nil {
		return fmt.Errorf("sqlite: audit holds: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var h ledger.Hold
		if err := scanHold(rows, &h); err != nil {
			return fmt.Errorf("sqlite: audit holds: %w", err)
		}
		if err := fn(h); err != nil {
			return err
		}
	}
	return rows.Err()
}

// OrphanIdempotency lists idempotency records whose transaction is missing.
func (a audit) OrphanIdempotency(ctx context.Context) ([]ledger.IdemKey, error) {
	rows, err := a.q.QueryContext(ctx, `
		SELECT i.scope, i.key FROM idempotency i
		WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.id = i.txn_id)
		ORDER BY i.scope, i.key`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit idempotency: %w", err)
	}
	defer rows.Close()
	var out []ledger.IdemKey
	for rows.Next() {
		var k ledger.IdemKey
		if err := rows.Scan(&k.Scope, &k.Key); err != nil {
			return nil, fmt.Errorf("sqlite: audit idempotency: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// Head returns the stored end of the hash chain.
func (a audit) Head(ctx context.Context) (int64, []byte, error) {
	var seq int64
	var hash []byte
	if err := a.q.QueryRowContext(ctx, `SELECT seq, hash FROM ledger_head WHERE id = 1`).Scan(&seq, &hash); err != nil {
		return 0, nil, fmt.Errorf("sqlite: ledger head: %w", err)
	}
	return seq, hash, nil
}
