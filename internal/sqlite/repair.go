package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/repair"
)

// The reads of repair.Source (pointd incident and pointd reconcile), on the
// reader pool. Windows walk the transactions_created index of migration
// 00002 and stream: one statement, one snapshot, one row in memory at a time.

var _ repair.Source = (*DB)(nil)

// repairCols reads a transaction without postings.
const repairCols = `t.seq, t.id, t.type, t.member_id, t.merchant_id, t.store_id, t.receipt,
	t.purchase_amount, t.points, t.ref_id, t.reason, t.created_at, t.cancelled_points, t.cancelled_amount`

func scanRepairTxn(dest []any, t *ledger.Transaction, created *sql.NullInt64, typ *string) []any {
	return append(dest, &t.Seq, &t.ID, typ, &t.MemberID, &t.MerchantID, &t.StoreID, &t.Receipt,
		&t.PurchaseAmount, &t.Points, &t.RefID, &t.Reason, created, &t.CancelledPoints, &t.CancelledAmount)
}

// TransactionsCreated calls fn for every transaction w selects, in creation
// order (ties by seq), with what its reference and its hold are now.
func (db *DB) TransactionsCreated(ctx context.Context, w repair.Window, fn func(repair.Entry) error) error {
	maxSeq := w.MaxSeq
	if maxSeq <= 0 {
		maxSeq = math.MaxInt64
	}
	// seq is the rowid, the last column of every index: the created_at index
	// yields rows already in (created_at, seq) order.
	rows, err := db.query(ctx, `
		SELECT `+repairCols+`,
		       coalesce(r.type, ''), r.created_at, coalesce(h.status, ''), h.expires_at
		FROM transactions t
		LEFT JOIN transactions r ON t.ref_id <> '' AND r.id = t.ref_id
		LEFT JOIN holds h ON t.type = 'hold' AND h.id = t.id
		WHERE t.created_at >= ? AND t.created_at < ?
		  AND (? = '' OR t.store_id = ?)
		  AND (? = '' OR t.type = ?)
		  AND t.seq <= ?
		ORDER BY t.created_at, t.seq`,
		w.From.UnixMicro(), w.To.UnixMicro(), w.StoreID, w.StoreID, string(w.Type), string(w.Type), maxSeq)
	if err != nil {
		return fmt.Errorf("sqlite: transactions created: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e repair.Entry
		var created, refCreated, holdExpires sql.NullInt64
		var typ, refType, holdStatus string
		dest := scanRepairTxn(nil, &e.Transaction, &created, &typ)
		dest = append(dest, &refType, &refCreated, &holdStatus, &holdExpires)
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("sqlite: transactions created: %w", err)
		}
		e.Type, e.CreatedAt = ledger.TxType(typ), timeOf(created)
		e.RefType, e.RefCreatedAt = ledger.TxType(refType), timeOf(refCreated)
		e.HoldStatus, e.HoldExpiresAt = ledger.HoldStatus(holdStatus), timeOf(holdExpires)
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: transactions created: %w", err)
	}
	return nil
}

// EarnByReceipt returns the earn of the purchase rk, found through the
// unique index that lets a purchase earn only once.
func (db *DB) EarnByReceipt(ctx context.Context, rk ledger.ReceiptKey) (ledger.Transaction, bool, error) {
	var t ledger.Transaction
	var created sql.NullInt64
	var typ string
	row, err := db.queryRow(ctx, `
		SELECT `+repairCols+` FROM transactions t
		WHERE t.merchant_id = ? AND t.store_id = ? AND t.receipt = ? AND t.type = 'earn'`,
		rk.MerchantID, rk.StoreID, rk.Receipt)
	if err == nil {
		err = row.Scan(scanRepairTxn(nil, &t, &created, &typ)...)
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ledger.Transaction{}, false, nil
	case err != nil:
		return ledger.Transaction{}, false, fmt.Errorf("sqlite: earn by receipt: %w", err)
	}
	t.Type, t.CreatedAt = ledger.TxType(typ), timeOf(created)
	return t, true, nil
}

// MemberBalanceAfter sums the member's postings up to transaction seq,
// walking the member's history index.
func (db *DB) MemberBalanceAfter(ctx context.Context, memberID string, seq int64) (int64, error) {
	var sum int64
	row, err := db.queryRow(ctx, `
		SELECT coalesce(sum(p.amount), 0)
		FROM members m
		JOIN transactions t ON t.member_id = m.id
		JOIN postings p ON p.txn_id = t.id AND p.account_id = m.account_id
		WHERE m.id = ? AND t.seq <= ?`, memberID, seq)
	if err == nil {
		err = row.Scan(&sum)
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: member balance after %d: %w", seq, err)
	}
	return sum, nil
}

// AdjustmentsWithReason calls fn for every adjustment whose reason starts
// with prefix, through the partial index of adjustments (migration 00002).
func (db *DB) AdjustmentsWithReason(ctx context.Context, prefix string, fn func(ledger.Transaction) error) error {
	rows, err := db.query(ctx, `
		SELECT `+repairCols+` FROM transactions t
		WHERE t.type = 'adjust' AND substr(t.reason, 1, ?) = ?
		ORDER BY t.seq`, utf8.RuneCountInString(prefix), prefix)
	if err != nil {
		return fmt.Errorf("sqlite: adjustments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t ledger.Transaction
		var created sql.NullInt64
		var typ string
		if err := rows.Scan(scanRepairTxn(nil, &t, &created, &typ)...); err != nil {
			return fmt.Errorf("sqlite: adjustments: %w", err)
		}
		t.Type, t.CreatedAt = ledger.TxType(typ), timeOf(created)
		if err := fn(t); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: adjustments: %w", err)
	}
	return nil
}
