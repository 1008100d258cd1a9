package sqlite

import (
	"database/sql"
	"encoding/json"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

// The columns each row type is read with, and the functions that read them:
// every query of a kind of row selects the same list so one scan fits all.

type scanner interface {
	Scan(dest ...any) error
}

const merchantCols = `m.id, m.name, m.earn_rate_bp, m.point_validity_days, m.status,
	m.issued_account, m.redeemed_account, m.created_at, m.max_explicit_points, m.require_member_code`

func scanMerchant(s scanner, m *ledger.Merchant) error {
	var created sql.NullInt64
	err := s.Scan(&m.ID, &m.Name, &m.EarnRateBP, &m.PointValidityDays, &m.Status,
		&m.IssuedAccount, &m.RedeemedAccount, &created, &m.MaxExplicitPoints, &m.RequireMemberCode)
	m.CreatedAt = timeOf(created)
	return err
}

// storeCols reads a store with its merchant (stores s JOIN merchants m).
const storeCols = `s.id, s.merchant_id, s.name, s.status, s.created_at, ` + merchantCols

func scanStoreInfo(s scanner, si *ledger.StoreInfo) error {
	var created, mCreated sql.NullInt64
	m := &si.Merchant
	err := s.Scan(&si.ID, &si.MerchantID, &si.Name, &si.Status, &created,
		&m.ID, &m.Name, &m.EarnRateBP, &m.PointValidityDays, &m.Status,
		&m.IssuedAccount, &m.RedeemedAccount, &mCreated, &m.MaxExplicitPoints, &m.RequireMemberCode)
	si.CreatedAt, m.CreatedAt = timeOf(created), timeOf(mCreated)
	return err
}

// memberCols reads the sealed phone as hex into Member.Phone: every
// caller of scanMember opens it then (DB.openPhone).
const memberCols = `m.id, m.card_number, hex(m.phone_enc), m.name, m.status, m.account_id, m.created_at, m.merged_into`

func scanMember(s scanner, m *ledger.Member) error {
	var phone sql.NullString
	var created sql.NullInt64
	err := s.Scan(&m.ID, &m.CardNumber, &phone, &m.Name, &m.Status, &m.AccountID, &created, &m.MergedInto)
	m.Phone, m.CreatedAt = phone.String, timeOf(created)
	return err
}

// txnCols reads a transaction and one of its postings
// (transactions t LEFT JOIN postings p): a transaction without postings (a
// hold) comes as one row with NULL posting columns. Queries order by t.seq,
// then p.account_id, and scanTxns folds the rows back into transactions.
const txnCols = `t.seq, t.id, t.type, t.member_id, t.merchant_id, t.store_id, t.receipt,
	t.purchase_amount, t.points, t.ref_id, t.reason, t.created_at, t.restore_expires_at,
	t.prev_hash, t.hash, t.cancelled_points, t.cancelled_amount, p.account_id, p.amount`

// scanTxns calls fn for each transaction of rows, with its postings, and
// closes rows.
func scanTxns(rows *sql.Rows, fn func(ledger.Transaction) error) error {
	defer rows.Close()
	var cur ledger.Transaction
	have := false
	for rows.Next() {
		var t ledger.Transaction
		var created, restore, acct, amount sql.NullInt64
		var typ string
		if err := rows.Scan(&t.Seq, &t.ID, &typ, &t.MemberID, &t.MerchantID, &t.StoreID, &t.Receipt,
			&t.PurchaseAmount, &t.Points, &t.RefID, &t.Reason, &created, &restore,
			&t.PrevHash, &t.Hash, &t.CancelledPoints, &t.CancelledAmount, &acct, &amount); err != nil {
			return err
		}
		if have && t.Seq != cur.Seq {
			if err := fn(cur); err != nil {
				return err
			}
			have = false
		}
		if !have {
			t.Type = ledger.TxType(typ)
			t.CreatedAt, t.RestoreExpiresAt = timeOf(created), timeOf(restore)
			cur, have = t, true
		}
		if acct.Valid {
			cur.Postings = append(cur.Postings, ledger.Posting{AccountID: acct.Int64, Amount: amount.Int64})
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if have {
		return fn(cur)
	}
	return nil
}

const holdCols = `h.id, h.member_id, h.merchant_id, h.store_id, h.points, h.status, h.expires_at, h.created_at`

func scanHold(s scanner, h *ledger.Hold) error {
	var status string
	var expires, created sql.NullInt64
	err := s.Scan(&h.ID, &h.MemberID, &h.MerchantID, &h.StoreID, &h.Points, &status, &expires, &created)
	h.Status, h.ExpiresAt, h.CreatedAt = ledger.HoldStatus(status), timeOf(expires), timeOf(created)
	return err
}

const lotCols = `l.id, l.member_id, l.points, l.remaining, l.expires_at`

func scanLot(s scanner, l *ledger.Lot) error {
	var expires sql.NullInt64
	err := s.Scan(&l.ID, &l.MemberID, &l.Points, &l.Remaining, &expires)
	l.ExpiresAt = timeOf(expires)
	return err
}

const idemCols = `i.scope, i.key, i.request_hash, i.txn_id, i.response, i.created_at`

func scanIdem(s scanner, r *ledger.IdemRecord) error {
	var created sql.NullInt64
	err := s.Scan(&r.Scope, &r.Key, &r.RequestHash, &r.TxnID, &r.Response, &created)
	r.CreatedAt = timeOf(created)
	return err
}

const keyCols = `k.id, k.prefix, k.hash, k.role, k.mode, k.merchant_id, k.store_id, k.name, k.created_at, k.revoked_at,
	k.expires_at, k.last_used_at, k.rate_limit_per_second, k.rate_limit_burst, k.lineage`

func scanKey(s scanner, k *auth.Key) error {
	var role, mode string
	var created, revoked, expires, used sql.NullInt64
	err := s.Scan(&k.ID, &k.Prefix, &k.Hash, &role, &mode, &k.MerchantID, &k.StoreID, &k.Name, &created, &revoked,
		&expires, &used, &k.RateLimitPerSecond, &k.RateLimitBurst, &k.Lineage)
	k.Role, k.Mode, k.CreatedAt, k.RevokedAt = auth.Role(role), auth.Mode(mode), timeOf(created), timeOf(revoked)
	k.ExpiresAt, k.LastUsedAt = timeOf(expires), timeOf(used)
	return err
}

// jsonArg passes a list of keys as one JSON array parameter, which queries
// unpack with json_each: one statement, prepared once, for any number of
// keys, and no limit on bound variables.
func jsonArg(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
