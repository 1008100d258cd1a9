package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pointd/pointd/internal/ledger"
)

// writeAttempts is how many times Write runs a batch that lost a
// serialization conflict or a deadlock before it gives up.
const writeAttempts = 4

// Write runs fn in one transaction on one connection and commits when fn
// returns nil. READ COMMITTED is enough: fn's first load locks the chain
// head, which makes every writer on the database (one per pointd instance)
// wait for the one before it, and each later statement sees what that one
// committed. A serialization failure or deadlock (which a distributed engine
// may report where PostgreSQL would wait) runs fn again from the start.
//
// An error that means the database is out of reach is returned as
// ledger.DatabaseUnavailable (see classify).
func (db *DB) Write(ctx context.Context, fn func(ledger.BatchTx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = db.writeOnce(ctx, fn)
		if err == nil || !retryable(err) || attempt == writeAttempts {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt*attempt) * 5 * time.Millisecond):
		}
	}
}

func (db *DB) writeOnce(ctx context.Context, fn func(ledger.BatchTx) error) error {
	conn, err := db.write.Acquire(ctx)
	if err != nil {
		return classify(fmt.Errorf("begin write: %w", err), false)
	}
	defer conn.Release()
	tx := &writeTx{conn: conn}
	defer tx.rollback() // a no-op after the commit
	if err := fn(&batchTx{tx: tx, db: db}); err != nil {
		return classify(err, false)
	}
	if err := tx.commit(ctx); err != nil {
		return classify(fmt.Errorf("commit write: %w", err), true)
	}
	return nil
}

// idemQuery looks idempotency records up by scope and key arrays: a lateral
// probe per key, one index lookup each whatever the planner's statistics say.
const idemQuery = `
	SELECT ` + idemCols + `
	FROM unnest($1::text[], $2::text[]) AS k(scope, key)
	CROSS JOIN LATERAL (
		SELECT * FROM idempotency i WHERE i.scope = k.scope AND i.key = k.key
		LIMIT 1
	) i`

// lotsQuery loads the open lots of an array of members: one index range per
// member (lateral).
const lotsQuery = `
	SELECT ` + lotCols + `
	FROM unnest($1::text[]) AS m(id)
	CROSS JOIN LATERAL (
		SELECT * FROM lots l
		WHERE l.member_id = m.id AND l.remaining > 0
		ORDER BY l.expires_at, l.id
	) l`

// retryable reports a serialization failure or a deadlock.
func retryable(err error) bool {
	code, _ := pgCode(err)
	return code == "40001" || code == "40P01"
}

// batchTx is the write transaction the batched writer fills. It remembers the
// head and the accounts it loaded so that Apply can check that nothing
// changed them behind its locks.
type batchTx struct {
	tx       *writeTx
	db       *DB
	headSeq  int64
	headHash []byte
	headRead bool
	accounts map[int64]ledger.Account
	pre      *prefetched // what Prefetch loaded; nil without it
}

func (b *batchTx) Head(ctx context.Context) (int64, []byte, error) {
	if b.headRead {
		return b.headSeq, b.headHash, nil // locked by Prefetch
	}
	var seq int64
	var hash []byte
	err := b.tx.QueryRow(ctx, `SELECT seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE`).Scan(&seq, &hash)
	if err != nil {
		return 0, nil, fmt.Errorf("lock ledger head: %w", err)
	}
	b.headSeq, b.headHash, b.headRead = seq, hash, true
	return seq, hash, nil
}

func (b *batchTx) queryIdempotency(ctx context.Context, keys []ledger.IdemKey) (map[ledger.IdemKey]ledger.IdemRecord, error) {
	out := make(map[ledger.IdemKey]ledger.IdemRecord, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	scopes, ks := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		scopes[i], ks[i] = k.Scope, k.Key
	}
	// A lateral lookup per key: one index probe each, whatever the
	// planner's statistics say about the table.
	recs, err := list(ctx, b.tx, scanIdem, idemQuery, scopes, ks)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		out[r.IdemKey] = r
	}
	return out, nil
}

func (b *batchTx) queryTransactions(ctx context.Context, ids []string) (map[string]ledger.Transaction, error) {
	out := make(map[string]ledger.Transaction, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	// Locked: a cancellation changes the original's counters.
	txns, err := list(ctx, b.tx, scanTxn, `
		SELECT `+txnCols+` FROM `+txnFrom+`
		WHERE t.id = ANY($1)
		ORDER BY t.id
		FOR UPDATE OF t`, ids)
	if err != nil {
		return nil, err
	}
	for _, t := range txns {
		out[t.ID] = t
	}
	return out, nil
}

func (b *batchTx) queryHolds(ctx context.Context, ids []string) (map[string]ledger.Hold, error) {
	out := make(map[string]ledger.Hold, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	holds, err := list(ctx, b.tx, scanHold, `
		SELECT `+holdCols+` FROM holds h
		WHERE h.id = ANY($1)
		ORDER BY h.id
		FOR UPDATE`, ids)
	if err != nil {
		return nil, err
	}
	for _, h := range holds {
		out[h.ID] = h
	}
	return out, nil
}

func (b *batchTx) queryMembers(ctx context.Context, ids []string) (map[string]ledger.Member, error) {
	out := make(map[string]ledger.Member, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	members, err := list(ctx, b.tx, b.db.scanMemberForWrite, `SELECT `+memberCols+` FROM members m WHERE m.id = ANY($1)`, ids)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		out[m.ID] = m
	}
	return out, nil
}

func (b *batchTx) queryStores(ctx context.Context, ids []string) (map[string]ledger.StoreInfo, error) {
	out := make(map[string]ledger.StoreInfo, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	stores, err := list(ctx, b.tx, scanStore, `SELECT `+storeCols+` FROM `+storeFrom+` WHERE s.id = ANY($1)`, ids)
	if err != nil {
		return nil, err
	}
	for _, s := range stores {
		out[s.ID] = s
	}
	return out, nil
}

func (b *batchTx) queryEarnedReceipts(ctx context.Context, receipts []ledger.ReceiptKey) (map[ledger.ReceiptKey]string, error) {
	out := make(map[ledger.ReceiptKey]string)
	if len(receipts) == 0 {
		return out, nil
	}
	merchants, stores, recs := make([]string, len(receipts)), make([]string, len(receipts)), make([]string, len(receipts))
	for i, r := range receipts {
		merchants[i], stores[i], recs[i] = r.MerchantID, r.StoreID, r.Receipt
	}
	// A lateral lookup per receipt, in the partial unique index: a plain
	// join may hash the whole table when its statistics are stale, and a
	// batch would then cost as much as the ledger is long.
	type earned struct {
		key ledger.ReceiptKey
		id  string
	}
	rows, err := list(ctx, b.tx, func(row pgx.Row) (earned, error) {
		var e earned
		err := row.Scan(&e.key.MerchantID, &e.key.StoreID, &e.key.Receipt, &e.id)
		return e, err
	}, `
		SELECT r.merchant_id, r.store_id, r.receipt, e.id
		FROM unnest($1::text[], $2::text[], $3::text[]) AS r(merchant_id, store_id, receipt)
		CROSS JOIN LATERAL (
			SELECT t.id FROM transactions t
			WHERE t.merchant_id = r.merchant_id AND t.store_id = r.store_id
				AND t.receipt = r.receipt AND t.type = 'earn'
			LIMIT 1
		) e`, merchants, stores, recs)
	if err != nil {
		return nil, err
	}
	for _, e := range rows {
		out[e.key] = e.id
	}
	return out, nil
}

func (b *batchTx) queryAccounts(ctx context.Context, ids []int64) (map[int64]ledger.Account, error) {
	out := make(map[int64]ledger.Account, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	// ORDER BY under FOR UPDATE locks in id order: two writers never deadlock.
	accounts, err := list(ctx, b.tx, func(row pgx.Row) (ledger.Account, error) {
		var a ledger.Account
		err := row.Scan(&a.ID, &a.Balance, &a.Held)
		return a, err
	}, `SELECT id, balance, held FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids)
	if err != nil {
		return nil, err
	}
	if b.accounts == nil {
		b.accounts = make(map[int64]ledger.Account, len(accounts))
	}
	for _, a := range accounts {
		out[a.ID] = a
		b.accounts[a.ID] = a
	}
	return out, nil
}

func (b *batchTx) queryLots(ctx context.Context, memberIDs []string) (map[string][]ledger.Lot, error) {
	out := make(map[string][]ledger.Lot, len(memberIDs))
	if len(memberIDs) == 0 {
		return out, nil
	}
	// Not locked: most of the lots loaded will not change, and the lock on
	// the chain head already keeps every other writer out. One index range
	// per member (lateral), whatever the statistics say.
	lots, err := list(ctx, b.tx, scanLot, lotsQuery, memberIDs)
	if err != nil {
		return nil, err
	}
	for _, l := range lots {
		out[l.MemberID] = append(out[l.MemberID], l)
	}
	for _, list := range out {
		slices.SortFunc(list, func(x, y ledger.Lot) int {
			if c := x.ExpiresAt.Compare(y.ExpiresAt); c != 0 {
				return c
			}
			return strings.Compare(x.ID, y.ID)
		})
	}
	return out, nil
}

// Apply writes a batch: a pipeline of multi-row statements, each fed by
// arrays, none for what did not change. The pipeline is sent with the COMMIT
// (writetx.go), or before the next statement of the transaction if there is
// one; an error of the writes is then that statement's or the commit's.
func (b *batchTx) Apply(ctx context.Context, w *ledger.WriteSet) error {
	if err := checkUnique(w); err != nil {
		return err
	}
	var pb pipeline

	if n := len(w.Transactions); n > 0 {
		var (
			ids, types, members, merchants, stores, receipts, refs, reasons []string
			seqs, amounts, points, cPoints, cAmounts                        []int64
			created, restore                                                []pgtype.Timestamptz
			prev, hash                                                      [][]byte
			pTxn                                                            []string
			pAcct, pAmount                                                  []int64
		)
		for _, t := range w.Transactions {
			ids = append(ids, t.ID)
			seqs = append(seqs, t.Seq)
			types = append(types, string(t.Type))
			members = append(members, t.MemberID)
			merchants = append(merchants, t.MerchantID)
			stores = append(stores, t.StoreID)
			receipts = append(receipts, t.Receipt)
			amounts = append(amounts, t.PurchaseAmount)
			points = append(points, t.Points)
			refs = append(refs, t.RefID)
			reasons = append(reasons, t.Reason)
			created = append(created, ts(t.CreatedAt))
			restore = append(restore, ts(t.RestoreExpiresAt))
			prev = append(prev, t.PrevHash)
			hash = append(hash, t.Hash)
			cPoints = append(cPoints, t.CancelledPoints)
			cAmounts = append(cAmounts, t.CancelledAmount)
			for _, p := range t.Postings {
				pTxn = append(pTxn, t.ID)
				pAcct = append(pAcct, p.AccountID)
				pAmount = append(pAmount, p.Amount)
			}
		}
		pb.exec("insert transactions", n, `
			INSERT INTO transactions (id, seq, type, member_id, merchant_id, store_id, receipt,
				purchase_amount, points, ref_id, reason, created_at, restore_expires_at,
				prev_hash, hash, cancelled_points, cancelled_amount)
			SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
				$8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[],
				$14::bytea[], $15::bytea[], $16::bigint[], $17::bigint[])`,
			ids, seqs, types, members, merchants, stores, receipts, amounts, points, refs, reasons,
			created, restore, prev, hash, cPoints, cAmounts)
		if len(pTxn) > 0 {
			pb.exec("insert postings", len(pTxn), `
				INSERT INTO postings (txn_id, account_id, amount)
				SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])`, pTxn, pAcct, pAmount)
		}
	}

	if n := len(w.Accounts); n > 0 {
		ids, bal, held := make([]int64, n), make([]int64, n), make([]int64, n)
		loaded, lBal, lHeld := make([]bool, n), make([]int64, n), make([]int64, n)
		for i, a := range w.Accounts {
			ids[i], bal[i], held[i] = a.ID, a.BalanceDelta, a.HeldDelta
			// An account Accounts loaded (and locked) must still be as it
			// was loaded: PostgreSQL checks it, before the COMMIT. Accounts
			// the batch did not load are not checked.
			if before, ok := b.accounts[a.ID]; ok {
				loaded[i], lBal[i], lHeld[i] = true, before.Balance, before.Held
			}
		}
		// The rows are locked already (Accounts); RETURNING lets Apply check
		// each against what it loaded plus the batch's delta.
		pb.counted("update accounts", n, `
			UPDATE accounts AS a SET balance = a.balance + v.d, held = a.held + v.h
			FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bool[], $5::bigint[], $6::bigint[])
				AS v(id, d, h, loaded, balance, held)
			WHERE a.id = v.id AND (NOT v.loaded OR (a.balance = v.balance AND a.held = v.held))`,
			ids, bal, held, loaded, lBal, lHeld)
		// A second Apply in this transaction starts from here.
		for _, a := range w.Accounts {
			if before, ok := b.accounts[a.ID]; ok {
				before.Balance += a.BalanceDelta
				before.Held += a.HeldDelta
				b.accounts[a.ID] = before
			}
		}
	}

	if n := len(w.NewLots); n > 0 {
		ids, members := make([]string, n), make([]string, n)
		points, remaining := make([]int64, n), make([]int64, n)
		expires := make([]pgtype.Timestamptz, n)
		for i, l := range w.NewLots {
			ids[i], members[i], points[i], remaining[i], expires[i] = l.ID, l.MemberID, l.Points, l.Remaining, ts(l.ExpiresAt)
		}
		pb.exec("insert lots", n, `
			INSERT INTO lots (id, member_id, points, remaining, expires_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[])`,
			ids, members, points, remaining, expires)
	}
	if n := len(w.LotUpdates); n > 0 {
		ids, remaining := make([]string, n), make([]int64, n)
		for i, l := range w.LotUpdates {
			ids[i], remaining[i] = l.ID, l.Remaining
		}
		pb.counted("update lots", n, `
			UPDATE lots AS l SET remaining = v.remaining
			FROM unnest($1::text[], $2::bigint[]) AS v(id, remaining)
			WHERE l.id = v.id`, ids, remaining)
	}

	if n := len(w.LotMoves); n > 0 {
		ids, members := make([]string, n), make([]string, n)
		for i, l := range w.LotMoves {
			ids[i], members[i] = l.ID, l.MemberID
		}
		pb.counted("move lots", n, `
			UPDATE lots AS l SET member_id = v.member_id
			FROM unnest($1::text[], $2::text[]) AS v(id, member_id)
			WHERE l.id = v.id`, ids, members)
	}
	// A merge: the member it merged, the members merged into that one
	// (re-pointed, so merged_into never names a merged member), and the
	// merged member's sessions. Merges are rare: a statement each.
	for _, m := range w.Merges {
		pb.counted("merge member", 1, `UPDATE members SET status = 'merged', merged_into = $1 WHERE id = $2`, m.Into, m.From)
		pb.exec("re-point merged members", 0, `UPDATE members SET merged_into = $1 WHERE merged_into = $2`, m.Into, m.From)
		pb.exec("revoke merged sessions", 0, `UPDATE member_sessions SET revoked_at = $1 WHERE member_id = $2 AND revoked_at IS NULL`,
			ts(m.At), m.From)
	}

	if n := len(w.NewHolds); n > 0 {
		ids, members, merchants, stores, statuses := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		points := make([]int64, n)
		expires, created := make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
		for i, h := range w.NewHolds {
			ids[i], members[i], merchants[i], stores[i], statuses[i] = h.ID, h.MemberID, h.MerchantID, h.StoreID, string(h.Status)
			points[i], expires[i], created[i] = h.Points, ts(h.ExpiresAt), ts(h.CreatedAt)
		}
		pb.exec("insert holds", n, `
			INSERT INTO holds (id, member_id, merchant_id, store_id, points, status, expires_at, created_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
				$7::timestamptz[], $8::timestamptz[])`,
			ids, members, merchants, stores, points, statuses, expires, created)
	}
	if n := len(w.HoldUpdates); n > 0 {
		ids, statuses := make([]string, n), make([]string, n)
		for i, h := range w.HoldUpdates {
			ids[i], statuses[i] = h.ID, string(h.Status)
		}
		pb.counted("update holds", n, `
			UPDATE holds AS h SET status = v.status
			FROM unnest($1::text[], $2::text[]) AS v(id, status)
			WHERE h.id = v.id`, ids, statuses)
	}

	if n := len(w.Cancels); n > 0 {
		ids, cPoints, cAmounts := make([]string, n), make([]int64, n), make([]int64, n)
		for i, c := range w.Cancels {
			ids[i], cPoints[i], cAmounts[i] = c.ID, c.CancelledPoints, c.CancelledAmount
		}
		pb.counted("update cancel counters", n, `
			UPDATE transactions AS t SET cancelled_points = v.p, cancelled_amount = v.a
			FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(id, p, a)
			WHERE t.id = v.id`, ids, cPoints, cAmounts)
	}

	if n := len(w.Idempotency); n > 0 {
		scopes, keys, txns := make([]string, n), make([]string, n), make([]string, n)
		reqs, resps := make([][]byte, n), make([][]byte, n)
		created := make([]pgtype.Timestamptz, n)
		for i, r := range w.Idempotency {
			scopes[i], keys[i], txns[i] = r.Scope, r.Key, r.TxnID
			reqs[i], resps[i], created[i] = r.RequestHash, r.Response, ts(r.CreatedAt)
		}
		pb.exec("insert idempotency", n, `
			INSERT INTO idempotency (scope, key, request_hash, txn_id, response, created_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::bytea[], $6::timestamptz[])`,
			scopes, keys, reqs, txns, resps, created)
	}

	if !b.headRead || w.HeadSeq != b.headSeq || !bytesEqual(w.HeadHash, b.headHash) {
		pb.counted("update ledger head", 1, `UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1`, w.HeadSeq, w.HeadHash)
	}

	if len(pb.steps) > 0 {
		if err := b.tx.flush(ctx); err != nil { // an earlier Apply of this transaction
			return err
		}
		b.tx.pending = &pb
	}
	b.headSeq, b.headHash, b.headRead = w.HeadSeq, w.HeadHash, true
	return nil
}

// checkUnique refuses a write set that names a row twice among the updates
// (an UPDATE … FROM would apply only one of the two, silently), or whose
// postings are not in account order (the order they are read back in).
func checkUnique(w *ledger.WriteSet) error {
	for _, t := range w.Transactions {
		for i := 1; i < len(t.Postings); i++ {
			if t.Postings[i].AccountID <= t.Postings[i-1].AccountID {
				// Read back in account order, they would no longer hash the same.
				return fmt.Errorf("postings of transaction %s are not in strictly increasing account order", t.ID)
			}
		}
	}
	dup := func(what string, ids []string) error {
		s := slices.Clone(ids)
		slices.Sort(s)
		for i := 1; i < len(s); i++ {
			if s[i] == s[i-1] {
				return fmt.Errorf("write set names %s %s twice", what, s[i])
			}
		}
		return nil
	}
	ids := func(n int, id func(int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = id(i)
		}
		return out
	}
	return errors.Join(
		dup("account", ids(len(w.Accounts), func(i int) string { return fmt.Sprint(w.Accounts[i].ID) })),
		dup("lot update", ids(len(w.LotUpdates), func(i int) string { return w.LotUpdates[i].ID })),
		dup("lot move", ids(len(w.LotMoves), func(i int) string { return w.LotMoves[i].ID })),
		dup("hold update", ids(len(w.HoldUpdates), func(i int) string { return w.HoldUpdates[i].ID })),
		dup("cancellation of", ids(len(w.Cancels), func(i int) string { return w.Cancels[i].ID })),
	)
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// pipeline is a pgx.Batch whose statements each say what they are and how
// many rows they must touch.
type pipeline struct {
	batch pgx.Batch
	steps []step
}

type step struct {
	what    string
	tag     string // when set, the command tag the statement must answer
	counted bool   // a counted statement: its error is a row count PostgreSQL found wrong
}

// commit ends the pipeline with COMMIT, which must answer "COMMIT": a
// transaction that failed answers "ROLLBACK" without an error.
func (p *pipeline) commit() {
	p.batch.Queue(`COMMIT`)
	p.steps = append(p.steps, step{what: "commit", tag: "COMMIT"})
}

// exec queues an INSERT … SELECT FROM unnest(…): it inserts a row per array
// element or fails, so its count needs no check.
func (p *pipeline) exec(what string, _ int, sql string, args ...any) {
	p.batch.Queue(sql, args...)
	p.steps = append(p.steps, step{what: what})
}

// counted queues an UPDATE that must change exactly n rows, checked by
// PostgreSQL itself: the statement fails (a division by zero) when the count
// differs, which aborts the transaction. A check made here, on the answers,
// would come too late: the COMMIT sent in the same pipeline would already
// have run.
func (p *pipeline) counted(what string, n int, update string, args ...any) {
	sql := `WITH u AS (` + update + ` RETURNING 1)
		SELECT 1 / (CASE WHEN count(*) = $` + strconv.Itoa(len(args)+1) + ` THEN 1 ELSE 0 END) FROM u`
	p.batch.Queue(sql, append(args, int64(n))...)
	p.steps = append(p.steps, step{what: what, counted: true})
}

// run sends every statement at once and reads every result: one round trip.
func (p *pipeline) run(ctx context.Context, tx batchSender) (err error) {
	if len(p.steps) == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, &p.batch)
	defer func() {
		if cerr := br.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("apply batch: %w", cerr)
		}
	}()
	for _, s := range p.steps {
		tag, err := br.Exec()
		if err != nil {
			if code, _ := pgCode(err); s.counted && code == "22012" {
				return fmt.Errorf("%s: %w", s.what, errRowCount)
			}
			return fmt.Errorf("%s: %w", s.what, err)
		}
		if s.tag != "" && tag.String() != s.tag {
			return fmt.Errorf("%s: %w (%q)", s.what, errNotCommitted, tag.String())
		}
	}
	return nil
}
