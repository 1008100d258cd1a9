package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pointd/pointd/internal/ledger"
)

// Column lists and their scanners: one of each per row type, shared by the
// reads, the loads of the write transaction and the audit.

const merchantCols = `m.id, m.name, m.earn_rate_bp, m.point_validity_days, m.status,
	m.issued_account, m.redeemed_account, m.created_at, m.max_explicit_points, m.require_member_code`

func scanMerchant(row pgx.Row) (ledger.Merchant, error) {
	var m ledger.Merchant
	var created pgtype.Timestamptz
	err := row.Scan(&m.ID, &m.Name, &m.EarnRateBP, &m.PointValidityDays, &m.Status,
		&m.IssuedAccount, &m.RedeemedAccount, &created, &m.MaxExplicitPoints, &m.RequireMemberCode)
	m.CreatedAt = timeOf(created)
	return m, err
}

// storeCols reads stores s joined to their merchants m.
const storeCols = `s.id, s.merchant_id, s.name, s.status, s.created_at, ` + merchantCols

const storeFrom = `stores s JOIN merchants m ON m.id = s.merchant_id`

func scanStore(row pgx.Row) (ledger.StoreInfo, error) {
	var s ledger.StoreInfo
	var sCreated, mCreated pgtype.Timestamptz
	m := &s.Merchant
	err := row.Scan(&s.ID, &s.MerchantID, &s.Name, &s.Status, &sCreated,
		&m.ID, &m.Name, &m.EarnRateBP, &m.PointValidityDays, &m.Status,
		&m.IssuedAccount, &m.RedeemedAccount, &mCreated, &m.MaxExplicitPoints, &m.RequireMemberCode)
	s.CreatedAt = timeOf(sCreated)
	m.CreatedAt = timeOf(mCreated)
	return s, err
}

// memberCols reads the sealed phone as hex into Member.Phone; DB.scanMember
// opens it.
const memberCols = `m.id, m.card_number, encode(m.phone_enc, 'hex'), m.name, m.status, m.account_id, m.created_at, m.merged_into`

func scanMember(row pgx.Row) (ledger.Member, error) {
	var m ledger.Member
	var phone pgtype.Text
	var created pgtype.Timestamptz
	err := row.Scan(&m.ID, &m.CardNumber, &phone, &m.Name, &m.Status, &m.AccountID, &created, &m.MergedInto)
	m.Phone = phone.String // NULL reads as ""
	m.CreatedAt = timeOf(created)
	return m, err
}

// txnCols reads transactions t with their postings, by account id, as two
// arrays from the lateral join txnFrom.
const txnCols = `t.id, t.seq, t.type, t.member_id, t.merchant_id, t.store_id, t.receipt,
	t.purchase_amount, t.points, t.ref_id, t.reason, t.created_at, t.restore_expires_at,
	t.prev_hash, t.hash, t.cancelled_points, t.cancelled_amount, ps.accounts, ps.amounts`

const txnFrom = `transactions t
	LEFT JOIN LATERAL (
		SELECT array_agg(p.account_id ORDER BY p.account_id) AS accounts,
		       array_agg(p.amount ORDER BY p.account_id) AS amounts
		FROM postings p WHERE p.txn_id = t.id
	) ps ON true`

func scanTxn(row pgx.Row) (ledger.Transaction, error) {
	var t ledger.Transaction
	var typ string
	var created, restore pgtype.Timestamptz
	var accounts, amounts []int64
	err := row.Scan(&t.ID, &t.Seq, &typ, &t.MemberID, &t.MerchantID, &t.StoreID, &t.Receipt,
		&t.PurchaseAmount, &t.Points, &t.RefID, &t.Reason, &created, &restore,
		&t.PrevHash, &t.Hash, &t.CancelledPoints, &t.CancelledAmount, &accounts, &amounts)
	if err != nil {
		return t, err
	}
	t.Type = ledger.TxType(typ)
	t.CreatedAt = timeOf(created)
	t.RestoreExpiresAt = timeOf(restore)
	if len(accounts) != len(amounts) {
		return t, fmt.Errorf("transaction %s: %d posting accounts but %d amounts", t.ID, len(accounts), len(amounts))
	}
	if len(accounts) > 0 {
		t.Postings = make([]ledger.Posting, len(accounts))
		for i := range accounts {
			t.Postings[i] = ledger.Posting{AccountID: accounts[i], Amount: amounts[i]}
		}
	}
	return t, nil
}

const holdCols = `h.id, h.member_id, h.merchant_id, h.store_id, h.points, h.status, h.expires_at, h.created_at`

func scanHold(row pgx.Row) (ledger.Hold, error) {
	var h ledger.Hold
	var status string
	var expires, created pgtype.Timestamptz
	err := row.Scan(&h.ID, &h.MemberID, &h.MerchantID, &h.StoreID, &h.Points, &status, &expires, &created)
	h.Status = ledger.HoldStatus(status)
	h.ExpiresAt = timeOf(expires)
	h.CreatedAt = timeOf(created)
	return h, err
}

const lotCols = `l.id, l.member_id, l.points, l.remaining, l.expires_at`

func scanLot(row pgx.Row) (ledger.Lot, error) {
	var l ledger.Lot
	var expires pgtype.Timestamptz
	err := row.Scan(&l.ID, &l.MemberID, &l.Points, &l.Remaining, &expires)
	l.ExpiresAt = timeOf(expires)
	return l, err
}

const idemCols = `i.scope, i.key, i.request_hash, i.txn_id, i.response, i.created_at`

func scanIdem(row pgx.Row) (ledger.IdemRecord, error) {
	var r ledger.IdemRecord
	var created pgtype.Timestamptz
	err := row.Scan(&r.Scope, &r.Key, &r.RequestHash, &r.TxnID, &r.Response, &created)
	r.CreatedAt = timeOf(created)
	return r, err
}

// one reads a single row, turning "no row" into notFound.
func one[T any](ctx context.Context, q querier, notFound error, scan func(pgx.Row) (T, error), sql string, args ...any) (T, error) {
	v, err := scan(q.QueryRow(ctx, sql, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		var zero T
		return zero, notFound
	}
	return v, err
}

// list reads every row of a query.
func list[T any](ctx context.Context, q querier, scan func(pgx.Row) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scan)
}

// collect scans every row and closes rows.
func collect[T any](rows pgx.Rows, scan func(pgx.Row) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Merchant returns the merchant with id.
func (db *DB) Merchant(ctx context.Context, id string) (ledger.Merchant, error) {
	return one(ctx, db.pool, ledger.Errorf(ledger.CodeMerchantNotFound, "no merchant with id %q", id), scanMerchant,
		`SELECT `+merchantCols+` FROM merchants m WHERE m.id = $1`, id)
}

// StoreInfo returns the store with id and its merchant.
func (db *DB) StoreInfo(ctx context.Context, id string) (ledger.StoreInfo, error) {
	return one(ctx, db.pool, ledger.Errorf(ledger.CodeStoreNotFound, "no store with id %q", id), scanStore,
		`SELECT `+storeCols+` FROM `+storeFrom+` WHERE s.id = $1`, id)
}

// Member returns the member with id.
func (db *DB) Member(ctx context.Context, id string) (ledger.Member, error) {
	return one(ctx, db.pool, ledger.Errorf(ledger.CodeMemberNotFound, "no member with id %q", id), db.scanMember,
		`SELECT `+memberCols+` FROM members m WHERE m.id = $1`, id)
}

// MemberByCard returns the member holding card number cardNumber. A
// withdrawn member's card is disabled: it finds no one.
func (db *DB) MemberByCard(ctx context.Context, cardNumber string) (ledger.Member, error) {
	m, err := one(ctx, db.pool, ledger.Errorf(ledger.CodeMemberNotFound, "no member with card number %q", cardNumber), db.scanMember,
		`SELECT `+memberCols+` FROM members m WHERE m.card_number = $1 AND m.status <> 'withdrawn'`, cardNumber)
	if err != nil || m.Status != ledger.StatusMerged || m.MergedInto == "" {
		return m, err
	}
	// A merged member's card finds the member it went into.
	return one(ctx, db.pool, ledger.Errorf(ledger.CodeMemberNotFound, "no member with card number %q", cardNumber), db.scanMember,
		`SELECT `+memberCols+` FROM members m WHERE m.id = $1 AND m.status <> 'withdrawn'`, m.MergedInto)
}

// MemberByPhone returns the member with phone number phone, found through
// its keyed hash (the number itself is stored sealed).
func (db *DB) MemberByPhone(ctx context.Context, phone string) (ledger.Member, error) {
	if phone == "" {
		return ledger.Member{}, ledger.Errorf(ledger.CodeMemberNotFound, "no member with an empty phone number")
	}
	return one(ctx, db.pool, ledger.Errorf(ledger.CodeMemberNotFound, "no member with this phone number"), db.scanMember,
		`SELECT `+memberCols+` FROM members m WHERE m.phone_hash = $1`, db.phoneKey().Index(phone))
}

// Balance returns what the member with memberID has.
func (db *DB) Balance(ctx context.Context, memberID string) (ledger.Balance, error) {
	scan := func(row pgx.Row) (ledger.Account, error) {
		var a ledger.Account
		err := row.Scan(&a.ID, &a.Balance, &a.Held)
		return a, err
	}
	a, err := one(ctx, db.pool, ledger.Errorf(ledger.CodeMemberNotFound, "no member with id %q", memberID), scan,
		`SELECT a.id, a.balance, a.held FROM members m JOIN accounts a ON a.id = m.account_id WHERE m.id = $1`, memberID)
	if err != nil {
		return ledger.Balance{}, err
	}
	return ledger.NewBalance(memberID, a), nil
}

// Transaction returns the transaction with id and its postings.
func (db *DB) Transaction(ctx context.Context, id string) (ledger.Transaction, error) {
	return one(ctx, db.pool, ledger.Errorf(ledger.CodeTransactionNotFound, "no transaction with id %q", id), scanTxn,
		`SELECT `+txnCols+` FROM `+txnFrom+` WHERE t.id = $1`, id)
}

// MemberTransactions lists a member's transactions newest first: those with
// Seq below beforeSeq (all when beforeSeq is 0), at most limit (all when
// limit is 0). An unknown member has no transactions.
func (db *DB) MemberTransactions(ctx context.Context, memberID string, beforeSeq int64, limit int) ([]ledger.Transaction, error) {
	if beforeSeq <= 0 {
		beforeSeq = math.MaxInt64
	}
	who, arg, err := db.historyOf(ctx, memberID)
	if err != nil {
		return nil, err
	}
	return list(ctx, db.pool, scanTxn,
		`SELECT `+txnCols+` FROM `+txnFrom+`
		WHERE `+who+` AND t.seq < $2
		ORDER BY t.seq DESC
		LIMIT $3`, arg, beforeSeq, limitArg(limit))
}

// historyOf is the SQL condition on $1 and its argument that select a
// member's transactions (t) with those of the members merged into it. A
// member nothing was merged into (nearly all) keeps the plain condition,
// which walks the (member_id, seq) index without sorting.
func (db *DB) historyOf(ctx context.Context, memberID string) (string, any, error) {
	var merged []string
	err := db.pool.QueryRow(ctx, `SELECT coalesce(array_agg(id), '{}') FROM members WHERE merged_into = $1 AND merged_into <> ''`,
		memberID).Scan(&merged)
	if err != nil {
		return "", nil, fmt.Errorf("members merged into %s: %w", memberID, err)
	}
	if len(merged) == 0 {
		return "t.member_id = $1", memberID, nil
	}
	return "t.member_id = ANY($1)", append([]string{memberID}, merged...), nil
}

// Hold returns the hold with id.
func (db *DB) Hold(ctx context.Context, id string) (ledger.Hold, error) {
	return one(ctx, db.pool, ledger.Errorf(ledger.CodeHoldNotFound, "no hold with id %q", id), scanHold,
		`SELECT `+holdCols+` FROM holds h WHERE h.id = $1`, id)
}

// MemberLots lists a member's lots with points remaining, earliest expiry
// first (ties by id). An unknown member has none.
func (db *DB) MemberLots(ctx context.Context, memberID string) ([]ledger.Lot, error) {
	return list(ctx, db.pool, func(row pgx.Row) (ledger.Lot, error) {
		var l ledger.Lot
		var expires pgtype.Timestamptz
		err := row.Scan(&l.ID, &l.MemberID, &l.Points, &l.Remaining, &expires, &l.MerchantID)
		l.ExpiresAt = timeOf(expires)
		return l, err
	},
		`SELECT `+lotCols+`, COALESCE(t.merchant_id, '') FROM lots l
		LEFT JOIN transactions t ON t.id = l.id
		WHERE l.member_id = $1 AND l.remaining > 0
		ORDER BY l.expires_at, l.id`, memberID)
}

// Idempotency returns the record stored under scope and key, if any.
func (db *DB) Idempotency(ctx context.Context, scope, key string) (ledger.IdemRecord, bool, error) {
	r, err := scanIdem(db.pool.QueryRow(ctx, `SELECT `+idemCols+` FROM idempotency i WHERE i.scope = $1 AND i.key = $2`, scope, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.IdemRecord{}, false, nil
	}
	if err != nil {
		return ledger.IdemRecord{}, false, err
	}
	return r, true, nil
}

// DueLotMembers lists members with lots that have points remaining and
// expire at or before now, those whose lots expired first first, at most
// limit (all when 0). Members whose points are all reserved by holds are left
// out: nothing of theirs can expire now, and listing them on every pass would
// crowd out the others.
func (db *DB) DueLotMembers(ctx context.Context, now time.Time, limit int) ([]string, error) {
	return list(ctx, db.pool, scanString,
		`SELECT l.member_id FROM lots l
		JOIN members m ON m.id = l.member_id
		JOIN accounts a ON a.id = m.account_id
		WHERE l.remaining > 0 AND l.expires_at <= $1 AND a.balance > a.held
		GROUP BY l.member_id
		ORDER BY min(l.expires_at), l.member_id
		LIMIT $2`, ts(now), limitArg(limit))
}

// DueHolds lists active holds that expire at or before now, earliest first,
// at most limit (all when 0).
func (db *DB) DueHolds(ctx context.Context, now time.Time, limit int) ([]string, error) {
	return list(ctx, db.pool, scanString,
		`SELECT h.id FROM holds h
		WHERE h.status = 'active' AND h.expires_at <= $1
		ORDER BY h.expires_at, h.id
		LIMIT $2`, ts(now), limitArg(limit))
}

func scanString(row pgx.Row) (string, error) {
	var s string
	err := row.Scan(&s)
	return s, err
}
