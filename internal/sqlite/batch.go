package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/pointd/pointd/internal/ledger"
)

// The write path: one BEGIN IMMEDIATE transaction per batch of the ledger
// writer. SQLite locks the whole database for the writer, so the loads need
// no row locks; every statement is prepared once on the writer connection
// and reused by every batch.

// Loads. Lists of keys come as one JSON array parameter. Single-column keys
// are matched with IN (a set: a key given twice is read once); composite keys
// drive the join from json_each (CROSS JOIN keeps it the outer loop), each
// key one lookup in the table's unique index.
const (
	qHead = `SELECT seq, hash FROM ledger_head WHERE id = 1`

	qIdempotency = `
		SELECT ` + idemCols + `
		FROM json_each(?) AS k
		CROSS JOIN idempotency AS i ON i.scope = k.value ->> 0 AND i.key = k.value ->> 1`

	qTransactions = `
		SELECT ` + txnCols + `
		FROM transactions t LEFT JOIN postings p ON p.txn_id = t.id
		WHERE t.id IN (SELECT value FROM json_each(?))
		ORDER BY t.seq, p.account_id`

	qHolds = `SELECT ` + holdCols + ` FROM holds h WHERE h.id IN (SELECT value FROM json_each(?))`

	qMembers = `SELECT ` + memberCols + ` FROM members m WHERE m.id IN (SELECT value FROM json_each(?))`

	qStores = `
		SELECT ` + storeCols + `
		FROM stores s JOIN merchants m ON m.id = s.merchant_id
		WHERE s.id IN (SELECT value FROM json_each(?))`

	qEarnedReceipts = `
		SELECT t.merchant_id, t.store_id, t.receipt, t.id
		FROM json_each(?) AS k
		CROSS JOIN transactions AS t
		    ON t.merchant_id = k.value ->> 0 AND t.store_id = k.value ->> 1 AND t.receipt = k.value ->> 2
		WHERE t.type = 'earn'`

	qAccounts = `
		SELECT id, balance, held FROM accounts
		WHERE id IN (SELECT value FROM json_each(?))
		ORDER BY id`

	qLots = `
		SELECT ` + lotCols + ` FROM lots l
		WHERE l.member_id IN (SELECT value FROM json_each(?)) AND l.remaining > 0
		ORDER BY l.member_id, l.expires_at, l.id`
)

// Writes, one row each.
const (
	qInsertTxn = `
		INSERT INTO transactions (seq, id, type, member_id, merchant_id, store_id, receipt,
			purchase_amount, points, ref_id, reason, created_at, restore_expires_at,
			prev_hash, hash, cancelled_points, cancelled_amount)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qInsertPosting = `INSERT INTO postings (txn_id, account_id, amount) VALUES (?, ?, ?)`
	qAccountDelta  = `UPDATE accounts SET balance = balance + ?, held = held + ? WHERE id = ?`
	qInsertLot     = `INSERT INTO lots (id, member_id, points, remaining, expires_at) VALUES (?, ?, ?, ?, ?)`
	qLotRemaining  = `UPDATE lots SET remaining = ? WHERE id = ?`
	qInsertHold    = `
		INSERT INTO holds (id, member_id, merchant_id, store_id, points, status, expires_at, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	qHoldStatus    = `UPDATE holds SET status = ? WHERE id = ?`
	qCancelCounter = `UPDATE transactions SET cancelled_points = ?, cancelled_amount = ? WHERE id = ?`
	qInsertIdem    = `
		INSERT INTO idempotency (scope, key, request_hash, txn_id, response, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`
	qSetHead = `UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1`

	// A merge: the lots it moved, the member it merged, the members merged
	// into that one (re-pointed, so merged_into never names a merged
	// member), and the merged member's sessions.
	qLotMember      = `UPDATE lots SET member_id = ? WHERE id = ?`
	qMemberMerged   = `UPDATE members SET status = 'merged', merged_into = ? WHERE id = ?`
	qRepointMerged  = `UPDATE members SET merged_into = ? WHERE merged_into = ?`
	qRevokeSessions = `UPDATE member_sessions SET revoked_at = ? WHERE member_id = ? AND revoked_at IS NULL`
)

var writeQueries = []string{
	qHead, qIdempotency, qTransactions, qHolds, qMembers, qStores, qEarnedReceipts, qAccounts, qLots,
	qInsertTxn, qInsertPosting, qAccountDelta, qInsertLot, qLotRemaining, qInsertHold, qHoldStatus,
	qCancelCounter, qInsertIdem, qSetHead, qLotMember, qMemberMerged, qRepointMerged, qRevokeSessions,
}

// Write runs fn in one write transaction and commits when it returns nil.
// A lock held past the busy timeout or a failing disk is returned as
// ledger.DatabaseUnavailable (see classify).
func (db *DB) Write(ctx context.Context, fn func(ledger.BatchTx) error) (err error) {
	if err := db.prepareWrites(ctx); err != nil {
		return classify(err, false)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return classify(fmt.Errorf("sqlite: begin: %w", err), false)
	}
	done := false
	defer func() {
		if !done {
			tx.Rollback()
		}
	}()
	// The statements run without the batch's deadline: with a context that
	// can end, the driver starts a goroutine per statement to interrupt it,
	// which cost the writer about a tenth of its earns per second
	// (BenchmarkWriterEarns: 12.3k → 13.6k without them). The transaction
	// keeps the deadline (database/sql rolls it back when it passes, and the
	// next statement fails), and busy_timeout bounds a wait for a lock, so a
	// batch still cannot hang.
	b := &batchTx{tx: tx, db: db, ctx: context.WithoutCancel(ctx), stmts: make(map[string]*sql.Stmt, len(writeQueries))}
	if err := fn(b); err != nil {
		return classify(err, false)
	}
	done = true
	if err := tx.Commit(); err != nil {
		return classify(fmt.Errorf("sqlite: commit: %w", err), true)
	}
	if ck := db.checkpoints(); ck != nil {
		ck.committed()
	}
	return nil
}

// prepareWrites prepares the statements of the write path on the writer
// connection, the first time. It runs before the batch's transaction begins:
// preparing on the pool needs its one connection.
func (db *DB) prepareWrites(ctx context.Context) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	for _, q := range writeQueries {
		if _, ok := db.wstmts[q]; ok {
			continue
		}
		s, err := db.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
		db.wstmts[q] = s
	}
	return nil
}

// batchTx is ledger.BatchTx on the writer's transaction.
type batchTx struct {
	tx    *sql.Tx
	db    *DB
	ctx   context.Context      // the batch's, without its deadline: see Write
	stmts map[string]*sql.Stmt // the writer's statements bound to tx

	headLoaded bool
	headSeq    int64
	headHash   []byte
}

func (b *batchTx) stmt(q string) *sql.Stmt {
	if s, ok := b.stmts[q]; ok {
		return s
	}
	b.db.wmu.Lock()
	parent := b.db.wstmts[q]
	b.db.wmu.Unlock()
	s := b.tx.StmtContext(b.ctx, parent)
	b.stmts[q] = s
	return s
}

func (b *batchTx) query(ctx context.Context, q string, keys any) (*sql.Rows, error) {
	arg, err := jsonArg(keys)
	if err != nil {
		return nil, err
	}
	return b.stmt(q).QueryContext(b.ctx, arg)
}

// Head returns the end of the hash chain; the transaction's write lock is
// already held.
func (b *batchTx) Head(ctx context.Context) (int64, []byte, error) {
	var seq int64
	var hash []byte
	if err := b.stmt(qHead).QueryRowContext(b.ctx).Scan(&seq, &hash); err != nil {
		return 0, nil, fmt.Errorf("sqlite: ledger head: %w", err)
	}
	b.headLoaded, b.headSeq, b.headHash = true, seq, hash
	return seq, hash, nil
}

// Idempotency returns the stored records of keys.
func (b *batchTx) Idempotency(ctx context.Context, keys []ledger.IdemKey) (map[ledger.IdemKey]ledger.IdemRecord, error) {
	out := make(map[ledger.IdemKey]ledger.IdemRecord, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	arg := make([][2]string, len(keys))
	for i, k := range keys {
		arg[i] = [2]string{k.Scope, k.Key}
	}
	rows, err := b.query(ctx, qIdempotency, arg)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r ledger.IdemRecord
		if err := scanIdem(rows, &r); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		out[r.IdemKey] = r
	}
	return out, rows.Err()
}

// Transactions returns the transactions ids, with their postings.
func (b *batchTx) Transactions(ctx context.Context, ids []string) (map[string]ledger.Transaction, error) {
	out := make(map[string]ledger.Transaction, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := b.query(ctx, qTransactions, ids)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	err = scanTxns(rows, func(t ledger.Transaction) error {
		out[t.ID] = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return out, nil
}

// Holds returns the holds ids.
func (b *batchTx) Holds(ctx context.Context, ids []string) (map[string]ledger.Hold, error) {
	out := make(map[string]ledger.Hold, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := b.query(ctx, qHolds, ids)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var h ledger.Hold
		if err := scanHold(rows, &h); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		out[h.ID] = h
	}
	return out, rows.Err()
}

// Members returns the members ids.
func (b *batchTx) Members(ctx context.Context, ids []string) (map[string]ledger.Member, error) {
	out := make(map[string]ledger.Member, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := b.query(ctx, qMembers, ids)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m ledger.Member
		if err := scanMember(rows, &m); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		b.db.openPhoneIfAble(&m)
		out[m.ID] = m
	}
	return out, rows.Err()
}

// Stores returns the stores ids, each with its merchant.
func (b *batchTx) Stores(ctx context.Context, ids []string) (map[string]ledger.StoreInfo, error) {
	out := make(map[string]ledger.StoreInfo, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := b.query(ctx, qStores, ids)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s ledger.StoreInfo
		if err := scanStoreInfo(rows, &s); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		out[s.ID] = s
	}
	return out, rows.Err()
}

// EarnedReceipts returns, of receipts, those an earn already used, with the
// id of that earn.
func (b *batchTx) EarnedReceipts(ctx context.Context, receipts []ledger.ReceiptKey) (map[ledger.ReceiptKey]string, error) {
	out := make(map[ledger.ReceiptKey]string)
	if len(receipts) == 0 {
		return out, nil
	}
	arg := make([][3]string, len(receipts))
	for i, r := range receipts {
		arg[i] = [3]string{r.MerchantID, r.StoreID, r.Receipt}
	}
	rows, err := b.query(ctx, qEarnedReceipts, arg)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k ledger.ReceiptKey
		var id string
		if err := rows.Scan(&k.MerchantID, &k.StoreID, &k.Receipt, &id); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		out[k] = id
	}
	return out, rows.Err()
}

// Accounts returns the accounts ids. The transaction already holds the
// database's only write lock, so there is nothing more to lock.
func (b *batchTx) Accounts(ctx context.Context, ids []int64) (map[int64]ledger.Account, error) {
	out := make(map[int64]ledger.Account, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := b.query(ctx, qAccounts, ids)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a ledger.Account
		if err := rows.Scan(&a.ID, &a.Balance, &a.Held); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		out[a.ID] = a
	}
	return out, rows.Err()
}

// Lots returns the lots with points remaining of the members, each member's
// earliest expiry first (ties by id).
func (b *batchTx) Lots(ctx context.Context, memberIDs []string) (map[string][]ledger.Lot, error) {
	out := make(map[string][]ledger.Lot, len(memberIDs))
	if len(memberIDs) == 0 {
		return out, nil
	}
	rows, err := b.query(ctx, qLots, memberIDs)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var l ledger.Lot
		if err := scanLot(rows, &l); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		out[l.MemberID] = append(out[l.MemberID], l)
	}
	return out, rows.Err()
}

// Apply writes everything the batch changed, in the order of the WriteSet.
func (b *batchTx) Apply(ctx context.Context, w *ledger.WriteSet) error {
	if err := b.apply(ctx, w); err != nil {
		return fmt.Errorf("sqlite: apply batch: %w", err)
	}
	return nil
}

func (b *batchTx) apply(ctx context.Context, w *ledger.WriteSet) error {
	if len(w.Transactions) > 0 {
		insTxn, insPosting := b.stmt(qInsertTxn), b.stmt(qInsertPosting)
		for i := range w.Transactions {
			t := &w.Transactions[i]
			_, err := insTxn.ExecContext(b.ctx, t.Seq, t.ID, string(t.Type), t.MemberID, t.MerchantID, t.StoreID,
				t.Receipt, t.PurchaseAmount, t.Points, t.RefID, t.Reason, timeArg(t.CreatedAt),
				timeArg(t.RestoreExpiresAt), blobArg(t.PrevHash), t.Hash, t.CancelledPoints, t.CancelledAmount)
			if err != nil {
				return fmt.Errorf("transaction %s (seq %d): %w", t.ID, t.Seq, err)
			}
			for _, p := range t.Postings {
				if _, err := insPosting.ExecContext(b.ctx, t.ID, p.AccountID, p.Amount); err != nil {
					return fmt.Errorf("posting of transaction %s to account %d: %w", t.ID, p.AccountID, err)
				}
			}
		}
	}
	for _, a := range w.Accounts {
		if err := execOne(b.ctx, b.stmt(qAccountDelta), a.BalanceDelta, a.HeldDelta, a.ID); err != nil {
			return fmt.Errorf("account %d: %w", a.ID, err)
		}
	}
	for _, l := range w.NewLots {
		if _, err := b.stmt(qInsertLot).ExecContext(b.ctx, l.ID, l.MemberID, l.Points, l.Remaining, timeArg(l.ExpiresAt)); err != nil {
			return fmt.Errorf("lot %s: %w", l.ID, err)
		}
	}
	for _, l := range w.LotUpdates {
		if err := execOne(b.ctx, b.stmt(qLotRemaining), l.Remaining, l.ID); err != nil {
			return fmt.Errorf("lot %s: %w", l.ID, err)
		}
	}
	for _, l := range w.LotMoves {
		if err := execOne(b.ctx, b.stmt(qLotMember), l.MemberID, l.ID); err != nil {
			return fmt.Errorf("lot %s moved to member %s: %w", l.ID, l.MemberID, err)
		}
	}
	for _, m := range w.Merges {
		if err := execOne(b.ctx, b.stmt(qMemberMerged), m.Into, m.From); err != nil {
			return fmt.Errorf("member %s merged into %s: %w", m.From, m.Into, err)
		}
		if _, err := b.stmt(qRepointMerged).ExecContext(b.ctx, m.Into, m.From); err != nil {
			return fmt.Errorf("members merged into %s: %w", m.From, err)
		}
		if _, err := b.stmt(qRevokeSessions).ExecContext(b.ctx, timeArg(m.At), m.From); err != nil {
			return fmt.Errorf("sessions of merged member %s: %w", m.From, err)
		}
	}
	for _, h := range w.NewHolds {
		_, err := b.stmt(qInsertHold).ExecContext(b.ctx, h.ID, h.MemberID, h.MerchantID, h.StoreID, h.Points,
			string(h.Status), timeArg(h.ExpiresAt), timeArg(h.CreatedAt))
		if err != nil {
			return fmt.Errorf("hold %s: %w", h.ID, err)
		}
	}
	for _, h := range w.HoldUpdates {
		if err := execOne(b.ctx, b.stmt(qHoldStatus), string(h.Status), h.ID); err != nil {
			return fmt.Errorf("hold %s: %w", h.ID, err)
		}
	}
	for _, c := range w.Cancels {
		if err := execOne(b.ctx, b.stmt(qCancelCounter), c.CancelledPoints, c.CancelledAmount, c.ID); err != nil {
			return fmt.Errorf("cancel counters of transaction %s: %w", c.ID, err)
		}
	}
	for _, r := range w.Idempotency {
		_, err := b.stmt(qInsertIdem).ExecContext(b.ctx, r.Scope, r.Key, r.RequestHash, r.TxnID, r.Response, timeArg(r.CreatedAt))
		if err != nil {
			return fmt.Errorf("idempotency key %q of %s: %w", r.Key, r.Scope, err)
		}
	}
	if !b.headLoaded || w.HeadSeq != b.headSeq || !bytes.Equal(w.HeadHash, b.headHash) {
		if err := execOne(b.ctx, b.stmt(qSetHead), w.HeadSeq, blobArg(w.HeadHash)); err != nil {
			return fmt.Errorf("ledger head: %w", err)
		}
		b.headLoaded, b.headSeq, b.headHash = true, w.HeadSeq, w.HeadHash
	}
	return nil
}

var errNoRow = errors.New("no such row")

// execOne runs an UPDATE that must change exactly one row.
func execOne(ctx context.Context, s *sql.Stmt, args ...any) error {
	res, err := s.ExecContext(ctx, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n != 1 {
		return errNoRow
	}
	return nil
}

// blobArg stores an empty hash as NULL.
func blobArg(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
