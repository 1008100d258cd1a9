package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pointd/pointd/internal/ledger"
)

// prefetched is what one pipelined round trip loaded for a batch, and which
// keys it asked for (a key asked and not found is known not to exist).
type prefetched struct {
	idem        map[ledger.IdemKey]ledger.IdemRecord
	idemAsked   map[ledger.IdemKey]bool
	txns        map[string]ledger.Transaction
	txnAsked    map[string]bool
	holds       map[string]ledger.Hold
	holdAsked   map[string]bool
	members     map[string]ledger.Member
	memberAsked map[string]bool
	stores      map[string]ledger.StoreInfo
	storeAsked  map[string]bool
	receipts    map[[2]string]ledger.ReceiptKey // (store, receipt) → the earned receipt
	receiptIDs  map[[2]string]string
	rcptAsked   map[[2]string]bool
	lots        map[string][]ledger.Lot
	lotAsked    map[string]bool
}

func asked[K comparable](keys []K) map[K]bool {
	m := make(map[K]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// Prefetch loads in one pipelined round trip, inside the write transaction:
// the chain head (locked first, which serialises writers), the idempotency
// records, the referenced transactions and holds (locked), the members and
// stores, the receipts already earned, every account those name (locked in
// id order) and the lots of the members that lose points. Without it a batch
// of earns costs nine round trips; with it, four (begin, this, apply,
// commit), and on a busy machine each round trip is a wake-up of the writer.
func (b *batchTx) Prefetch(ctx context.Context, p ledger.Prefetch) error {
	pre := &prefetched{
		idem: map[ledger.IdemKey]ledger.IdemRecord{}, idemAsked: asked(p.IdemKeys),
		txns: map[string]ledger.Transaction{}, txnAsked: asked(p.TransactionIDs),
		holds: map[string]ledger.Hold{}, holdAsked: asked(p.HoldIDs),
		members: map[string]ledger.Member{}, memberAsked: asked(p.MemberIDs),
		stores: map[string]ledger.StoreInfo{}, storeAsked: asked(p.StoreIDs),
		receipts: map[[2]string]ledger.ReceiptKey{}, receiptIDs: map[[2]string]string{}, rcptAsked: map[[2]string]bool{},
		lots: map[string][]ledger.Lot{}, lotAsked: asked(p.LotMemberIDs),
	}
	scopes, keys := make([]string, len(p.IdemKeys)), make([]string, len(p.IdemKeys))
	for i, k := range p.IdemKeys {
		scopes[i], keys[i] = k.Scope, k.Key
	}
	rStores, rReceipts := make([]string, len(p.Receipts)), make([]string, len(p.Receipts))
	for i, r := range p.Receipts {
		rStores[i], rReceipts[i] = r.StoreID, r.Receipt
		pre.rcptAsked[[2]string{r.StoreID, r.Receipt}] = true
	}
	platform := []int64{ledger.AccountExpired, ledger.AccountAdjustments}

	// Only what the batch names is queued: a statement over an empty array
	// is not free (PostgreSQL may plan it as a scan of the whole table).
	var batch pgx.Batch
	var readers []func(pgx.BatchResults) error
	queue := func(read func(pgx.BatchResults) error, sql string, args ...any) {
		batch.Queue(sql, args...)
		readers = append(readers, read)
	}
	queue(func(br pgx.BatchResults) error {
		if err := br.QueryRow().Scan(&b.headSeq, &b.headHash); err != nil {
			return fmt.Errorf("lock ledger head: %w", err)
		}
		b.headRead = true
		return nil
	}, `SELECT seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE`)
	if len(scopes) > 0 {
		queue(func(br pgx.BatchResults) error {
			return fill(br, scanIdem, func(r ledger.IdemRecord) { pre.idem[r.IdemKey] = r })
		}, idemQuery, scopes, keys)
	}
	if len(p.TransactionIDs) > 0 {
		queue(func(br pgx.BatchResults) error {
			return fill(br, scanTxn, func(t ledger.Transaction) { pre.txns[t.ID] = t })
		}, `SELECT `+txnCols+` FROM `+txnFrom+` WHERE t.id = ANY($1) ORDER BY t.id FOR UPDATE OF t`, p.TransactionIDs)
	}
	if len(p.HoldIDs) > 0 {
		queue(func(br pgx.BatchResults) error {
			return fill(br, scanHold, func(h ledger.Hold) { pre.holds[h.ID] = h })
		}, `SELECT `+holdCols+` FROM holds h WHERE h.id = ANY($1) ORDER BY h.id FOR UPDATE`, p.HoldIDs)
	}
	if len(p.MemberIDs) > 0 {
		queue(func(br pgx.BatchResults) error {
			return fill(br, b.db.scanMemberForWrite, func(m ledger.Member) { pre.members[m.ID] = m })
		}, `SELECT `+memberCols+` FROM members m WHERE m.id = ANY($1)`, p.MemberIDs)
	}
	if len(p.StoreIDs) > 0 {
		queue(func(br pgx.BatchResults) error {
			return fill(br, scanStore, func(s ledger.StoreInfo) { pre.stores[s.ID] = s })
		}, `SELECT `+storeCols+` FROM `+storeFrom+` WHERE s.id = ANY($1)`, p.StoreIDs)
	}
	if len(rStores) > 0 {
		// By store and receipt; the store gives the merchant, so the lookup
		// stays a probe of the partial unique index on (merchant, store, receipt).
		queue(func(br pgx.BatchResults) error {
			return fill(br, func(row pgx.Row) (earned, error) {
				var e earned
				err := row.Scan(&e.key.MerchantID, &e.key.StoreID, &e.key.Receipt, &e.id)
				return e, err
			}, func(e earned) {
				k := [2]string{e.key.StoreID, e.key.Receipt}
				pre.receipts[k], pre.receiptIDs[k] = e.key, e.id
			})
		}, `
		SELECT s.merchant_id, r.store_id, r.receipt, e.id
		FROM unnest($1::text[], $2::text[]) AS r(store_id, receipt)
		JOIN stores s ON s.id = r.store_id
		CROSS JOIN LATERAL (
			SELECT t.id FROM transactions t
			WHERE t.merchant_id = s.merchant_id AND t.store_id = r.store_id
				AND t.receipt = r.receipt AND t.type = 'earn'
			LIMIT 1
		) e`, rStores, rReceipts)
	}
	// The ids are gathered once (an init plan), then probed by primary key
	// and locked in id order: two writers never deadlock.
	if b.accounts == nil {
		b.accounts = map[int64]ledger.Account{}
	}
	queue(func(br pgx.BatchResults) error {
		return fill(br, scanAccount, func(a ledger.Account) { b.accounts[a.ID] = a })
	}, `
		SELECT a.id, a.balance, a.held FROM accounts a
		WHERE a.id = ANY(ARRAY(
			SELECT unnest($1::bigint[])
			UNION SELECT m.account_id FROM members m WHERE m.id = ANY($2)
			UNION SELECT x.issued_account FROM stores s JOIN merchants x ON x.id = s.merchant_id WHERE s.id = ANY($3)
			UNION SELECT x.redeemed_account FROM stores s JOIN merchants x ON x.id = s.merchant_id WHERE s.id = ANY($3)))
		ORDER BY a.id FOR UPDATE`, platform, nonNil(p.MemberIDs), nonNil(p.StoreIDs))
	if len(p.LotMemberIDs) > 0 {
		queue(func(br pgx.BatchResults) error {
			if err := fill(br, scanLot, func(l ledger.Lot) { pre.lots[l.MemberID] = append(pre.lots[l.MemberID], l) }); err != nil {
				return err
			}
			for _, list := range pre.lots {
				sortLots(list)
			}
			return nil
		}, lotsQuery, p.LotMemberIDs)
	}

	br := b.tx.SendBatch(ctx, &batch)
	var err error
	for _, read := range readers {
		if err = read(br); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("postgres: prefetch: %w", err)
	}
	b.pre = pre
	return nil
}

type earned struct {
	key ledger.ReceiptKey
	id  string
}

// nonNil keeps an empty list an empty array, not NULL.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// fill reads the next result of a pipeline into put.
func fill[T any](br pgx.BatchResults, scan func(pgx.Row) (T, error), put func(T)) error {
	rows, err := batchList(br, scan)
	for _, v := range rows {
		put(v)
	}
	return err
}

func batchList[T any](br pgx.BatchResults, scan func(pgx.Row) (T, error)) ([]T, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	return collect(rows, scan)
}

func scanAccount(row pgx.Row) (ledger.Account, error) {
	var a ledger.Account
	err := row.Scan(&a.ID, &a.Balance, &a.Held)
	return a, err
}

func sortLots(list []ledger.Lot) {
	slices.SortFunc(list, func(x, y ledger.Lot) int {
		if c := x.ExpiresAt.Compare(y.ExpiresAt); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
}

// missing splits keys into those the prefetch asked for and the rest.
func missing[K comparable](keys []K, asked map[K]bool) []K {
	var out []K
	for _, k := range keys {
		if !asked[k] {
			out = append(out, k)
		}
	}
	return out
}

// The BatchTx loads: from the prefetch where it asked, by query otherwise.

func (b *batchTx) Idempotency(ctx context.Context, keys []ledger.IdemKey) (map[ledger.IdemKey]ledger.IdemRecord, error) {
	if b.pre == nil {
		return b.queryIdempotency(ctx, keys)
	}
	out, err := b.queryIdempotency(ctx, missing(keys, b.pre.idemAsked))
	for _, k := range keys {
		if r, ok := b.pre.idem[k]; ok {
			out[k] = r
		}
	}
	return out, err
}

func (b *batchTx) Transactions(ctx context.Context, ids []string) (map[string]ledger.Transaction, error) {
	if b.pre == nil {
		return b.queryTransactions(ctx, ids)
	}
	out, err := b.queryTransactions(ctx, missing(ids, b.pre.txnAsked))
	for _, id := range ids {
		if t, ok := b.pre.txns[id]; ok {
			out[id] = t
		}
	}
	return out, err
}

func (b *batchTx) Holds(ctx context.Context, ids []string) (map[string]ledger.Hold, error) {
	if b.pre == nil {
		return b.queryHolds(ctx, ids)
	}
	out, err := b.queryHolds(ctx, missing(ids, b.pre.holdAsked))
	for _, id := range ids {
		if h, ok := b.pre.holds[id]; ok {
			out[id] = h
		}
	}
	return out, err
}

func (b *batchTx) Members(ctx context.Context, ids []string) (map[string]ledger.Member, error) {
	if b.pre == nil {
		return b.queryMembers(ctx, ids)
	}
	out, err := b.queryMembers(ctx, missing(ids, b.pre.memberAsked))
	for _, id := range ids {
		if m, ok := b.pre.members[id]; ok {
			out[id] = m
		}
	}
	return out, err
}

func (b *batchTx) Stores(ctx context.Context, ids []string) (map[string]ledger.StoreInfo, error) {
	if b.pre == nil {
		return b.queryStores(ctx, ids)
	}
	out, err := b.queryStores(ctx, missing(ids, b.pre.storeAsked))
	for _, id := range ids {
		if s, ok := b.pre.stores[id]; ok {
			out[id] = s
		}
	}
	return out, err
}

func (b *batchTx) EarnedReceipts(ctx context.Context, receipts []ledger.ReceiptKey) (map[ledger.ReceiptKey]string, error) {
	if b.pre == nil {
		return b.queryEarnedReceipts(ctx, receipts)
	}
	var rest []ledger.ReceiptKey
	for _, r := range receipts {
		if !b.pre.rcptAsked[[2]string{r.StoreID, r.Receipt}] {
			rest = append(rest, r)
		}
	}
	out, err := b.queryEarnedReceipts(ctx, rest)
	for _, r := range receipts {
		k := [2]string{r.StoreID, r.Receipt}
		if got, ok := b.pre.receipts[k]; ok && got.MerchantID == r.MerchantID {
			out[r] = b.pre.receiptIDs[k]
		}
	}
	return out, err
}

func (b *batchTx) Accounts(ctx context.Context, ids []int64) (map[int64]ledger.Account, error) {
	out := make(map[int64]ledger.Account, len(ids))
	var rest []int64
	for _, id := range ids {
		if a, ok := b.accounts[id]; ok && b.pre != nil {
			out[id] = a
			continue
		}
		rest = append(rest, id)
	}
	// The rest (accounts of cancelled transactions' and holds' members) are
	// locked now; the chain head lock already keeps other writers out, so
	// taking them after the others cannot deadlock.
	more, err := b.queryAccounts(ctx, rest)
	for id, a := range more {
		out[id] = a
	}
	return out, err
}

func (b *batchTx) Lots(ctx context.Context, memberIDs []string) (map[string][]ledger.Lot, error) {
	if b.pre == nil {
		return b.queryLots(ctx, memberIDs)
	}
	out, err := b.queryLots(ctx, missing(memberIDs, b.pre.lotAsked))
	for _, m := range memberIDs {
		if l, ok := b.pre.lots[m]; ok {
			out[m] = l
		}
	}
	return out, err
}
