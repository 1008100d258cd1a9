package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/repair"
)

// The reads of repair.Source (pointd incident and pointd reconcile). Windows
// walk the transactions_created index of migration 00002 and stream: one
// statement, one snapshot, rows read from the connection as they are used.

var _ repair.Source = (*DB)(nil)

// repairCols reads a transaction without postings.
const repairCols = `t.seq, t.id, t.type, t.member_id, t.merchant_id, t.store_id, t.receipt,
	t.purchase_amount, t.points, t.ref_id, t.reason, t.created_at, t.cancelled_points, t.cancelled_amount`

func repairDest(t *ledger.Transaction, created *pgtype.Timestamptz, typ *string) []any {
	return []any{&t.Seq, &t.ID, typ, &t.MemberID, &t.MerchantID, &t.StoreID, &t.Receipt,
		&t.PurchaseAmount, &t.Points, &t.RefID, &t.Reason, created, &t.CancelledPoints, &t.CancelledAmount}
}

func scanRepairTxn(row pgx.Row) (ledger.Transaction, error) {
	var t ledger.Transaction
	var created pgtype.Timestamptz
	var typ string
	err := row.Scan(repairDest(&t, &created, &typ)...)
	t.Type, t.CreatedAt = ledger.TxType(typ), timeOf(created)
	return t, err
}

func scanEntry(row pgx.Row) (repair.Entry, error) {
	var e repair.Entry
	var created, refCreated, holdExpires pgtype.Timestamptz
	var typ, refType, holdStatus string
	dest := append(repairDest(&e.Transaction, &created, &typ), &refType, &refCreated, &holdStatus, &holdExpires)
	err := row.Scan(dest...)
	e.Type, e.CreatedAt = ledger.TxType(typ), timeOf(created)
	e.RefType, e.RefCreatedAt = ledger.TxType(refType), timeOf(refCreated)
	e.HoldStatus, e.HoldExpiresAt = ledger.HoldStatus(holdStatus), timeOf(holdExpires)
	return e, err
}

// TransactionsCreated calls fn for every transaction w selects, in creation
// order (ties by seq), with what its reference and its hold are now.
func (db *DB) TransactionsCreated(ctx context.Context, w repair.Window, fn func(repair.Entry) error) error {
	maxSeq := w.MaxSeq
	if maxSeq <= 0 {
		maxSeq = math.MaxInt64
	}
	rows, err := db.pool.Query(ctx, `
		SELECT `+repairCols+`,
		       coalesce(r.type, ''), r.created_at, coalesce(h.status, ''), h.expires_at
		FROM transactions t
		LEFT JOIN transactions r ON t.ref_id <> '' AND r.id = t.ref_id
		LEFT JOIN holds h ON t.type = 'hold' AND h.id = t.id
		WHERE t.created_at >= $1 AND t.created_at < $2
		  AND ($3::text = '' OR t.store_id = $3)
		  AND ($4::text = '' OR t.type = $4)
		  AND t.seq <= $5
		ORDER BY t.created_at, t.seq`,
		ts(w.From), ts(w.To), w.StoreID, string(w.Type), maxSeq)
	if err != nil {
		return fmt.Errorf("postgres: transactions created: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return fmt.Errorf("postgres: transactions created: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: transactions created: %w", err)
	}
	return nil
}

// EarnByReceipt returns the earn of the purchase rk, found through the
// unique index that lets a purchase earn only once.
func (db *DB) EarnByReceipt(ctx context.Context, rk ledger.ReceiptKey) (ledger.Transaction, bool, error) {
	t, err := scanRepairTxn(db.pool.QueryRow(ctx, `
		SELECT `+repairCols+` FROM transactions t
		WHERE t.merchant_id = $1 AND t.store_id = $2 AND t.receipt = $3 AND t.type = 'earn'`,
		rk.MerchantID, rk.StoreID, rk.Receipt))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ledger.Transaction{}, false, nil
	case err != nil:
		return ledger.Transaction{}, false, fmt.Errorf("postgres: earn by receipt: %w", err)
	}
	return t, true, nil
}

// MemberBalanceAfter sums the member's postings up to transaction seq,
// walking the member's history index.
func (db *DB) MemberBalanceAfter(ctx context.Context, memberID string, seq int64) (int64, error) {
	var sum int64
	err := db.pool.QueryRow(ctx, `
		SELECT coalesce(sum(p.amount), 0)::bigint
		FROM members m
		JOIN transactions t ON t.member_id = m.id
		JOIN postings p ON p.txn_id = t.id AND p.account_id = m.account_id
		WHERE m.id = $1 AND t.seq <= $2`, memberID, seq).Scan(&sum)
	if err != nil {
		return 0, fmt.Errorf("postgres: member balance after %d: %w", seq, err)
	}
	return sum, nil
}

// AdjustmentsWithReason calls fn for every adjustment whose reason starts
// with prefix, through the partial index of adjustments (migration 00002).
func (db *DB) AdjustmentsWithReason(ctx context.Context, prefix string, fn func(ledger.Transaction) error) error {
	rows, err := db.pool.Query(ctx, `
		SELECT `+repairCols+` FROM transactions t
		WHERE t.type = 'adjust' AND substr(t.reason, 1, $1) = $2
		ORDER BY t.seq`, utf8.RuneCountInString(prefix), prefix)
	if err != nil {
		return fmt.Errorf("postgres: adjustments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		t, err := scanRepairTxn(rows)
		if err != nil {
			return fmt.Errorf("postgres: adjustments: %w", err)
		}
		if err := fn(t); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: adjustments: %w", err)
	}
	return nil
}
