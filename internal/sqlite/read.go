package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// The reads of ledger.Store, on the reader pool: each is one statement, so
// it sees one consistent snapshot of the file.

// Merchant returns the merchant id.
func (db *DB) Merchant(ctx context.Context, id string) (ledger.Merchant, error) {
	var m ledger.Merchant
	row, err := db.queryRow(ctx, `SELECT `+merchantCols+` FROM merchants m WHERE m.id = ?`, id)
	if err == nil {
		err = scanMerchant(row, &m)
	}
	return m, notFound(err, ledger.CodeMerchantNotFound, "no merchant with id %q", id)
}

// StoreInfo returns the store id with its merchant.
func (db *DB) StoreInfo(ctx context.Context, id string) (ledger.StoreInfo, error) {
	var s ledger.StoreInfo
	row, err := db.queryRow(ctx,
		`SELECT `+storeCols+` FROM stores s JOIN merchants m ON m.id = s.merchant_id WHERE s.id = ?`, id)
	if err == nil {
		err = scanStoreInfo(row, &s)
	}
	return s, notFound(err, ledger.CodeStoreNotFound, "no store with id %q", id)
}

// Member returns the member id.
func (db *DB) Member(ctx context.Context, id string) (ledger.Member, error) {
	return db.member(ctx, `m.id = ?`, id, "no member with id %q")
}

// MemberByCard returns the member with the card number. A withdrawn
// member's card is disabled: it finds no one. A merged member's card finds
// the member it went into.
func (db *DB) MemberByCard(ctx context.Context, cardNumber string) (ledger.Member, error) {
	m, err := db.member(ctx, `m.card_number = ? AND m.status <> 'withdrawn'`, cardNumber, "no member with card number %q")
	if err != nil || m.Status != ledger.StatusMerged || m.MergedInto == "" {
		return m, err
	}
	into, err := db.member(ctx, `m.id = ? AND m.status <> 'withdrawn'`, m.MergedInto, "no member with id %q")
	if ledger.ErrorCode(err) == ledger.CodeMemberNotFound {
		return into, ledger.Errorf(ledger.CodeMemberNotFound, "no member with card number %q", cardNumber)
	}
	return into, err
}

// historyOf is the SQL condition and argument that select a member's
// transactions with those of the members merged into it. A member nothing
// was merged into (nearly all) keeps the plain condition, which walks the
// (member_id, seq) index without sorting.
func (db *DB) historyOf(ctx context.Context, memberID string) (string, any, error) {
	rows, err := db.query(ctx, `SELECT id FROM members WHERE merged_into = ? AND merged_into <> ''`, memberID)
	if err != nil {
		return "", nil, fmt.Errorf("members merged into %s: %w", memberID, err)
	}
	merged, err := scanStrings(rows)
	if err != nil {
		return "", nil, fmt.Errorf("members merged into %s: %w", memberID, err)
	}
	if len(merged) == 0 {
		return "member_id = ?", memberID, nil
	}
	arg, err := jsonArg(append([]string{memberID}, merged...))
	if err != nil {
		return "", nil, err
	}
	return "member_id IN (SELECT value FROM json_each(?))", arg, nil
}

// MemberByPhone returns the member with the phone number, found through its
// keyed hash (the number itself is stored sealed).
func (db *DB) MemberByPhone(ctx context.Context, phone string) (ledger.Member, error) {
	if phone == "" { // no phone is no one's phone
		return ledger.Member{}, ledger.Errorf(ledger.CodeMemberNotFound, "no member with this phone number")
	}
	var m ledger.Member
	row, err := db.queryRow(ctx, `SELECT `+memberCols+` FROM members m WHERE m.phone_hash = ?`, db.phoneKey().Index(phone))
	if err == nil {
		err = scanMember(row, &m)
	}
	if errors.Is(err, sql.ErrNoRows) {
		// The message must not carry the number: messages end up in logs.
		return m, ledger.Errorf(ledger.CodeMemberNotFound, "no member with this phone number")
	}
	if err != nil {
		return m, fmt.Errorf("sqlite: %w", err)
	}
	return m, db.openPhone(&m)
}

func (db *DB) member(ctx context.Context, where, arg, msg string) (ledger.Member, error) {
	var m ledger.Member
	row, err := db.queryRow(ctx, `SELECT `+memberCols+` FROM members m WHERE `+where, arg)
	if err == nil {
		err = scanMember(row, &m)
	}
	if err := notFound(err, ledger.CodeMemberNotFound, msg, arg); err != nil {
		return m, err
	}
	return m, db.openPhone(&m)
}

// Balance returns what the member has.
func (db *DB) Balance(ctx context.Context, memberID string) (ledger.Balance, error) {
	var a ledger.Account
	row, err := db.queryRow(ctx, `
		SELECT a.id, a.balance, a.held
		FROM members m JOIN accounts a ON a.id = m.account_id
		WHERE m.id = ?`, memberID)
	if err == nil {
		err = row.Scan(&a.ID, &a.Balance, &a.Held)
	}
	if err != nil {
		return ledger.Balance{}, notFound(err, ledger.CodeMemberNotFound, "no member with id %q", memberID)
	}
	return ledger.NewBalance(memberID, a), nil
}

// Transaction returns the transaction id with its postings.
func (db *DB) Transaction(ctx context.Context, id string) (ledger.Transaction, error) {
	rows, err := db.query(ctx, `
		SELECT `+txnCols+`
		FROM transactions t LEFT JOIN postings p ON p.txn_id = t.id
		WHERE t.id = ?
		ORDER BY p.account_id`, id)
	if err != nil {
		return ledger.Transaction{}, err
	}
	var t ledger.Transaction
	found := false
	err = scanTxns(rows, func(x ledger.Transaction) error {
		t, found = x, true
		return nil
	})
	if err == nil && !found {
		err = sql.ErrNoRows
	}
	return t, notFound(err, ledger.CodeTransactionNotFound, "no transaction with id %q", id)
}

// MemberTransactions lists the member's transactions newest first, with
// those of the members merged into it (docs/api.md, "Merging members"), with
// their postings: those below beforeSeq (all when it is 0), at most limit.
func (db *DB) MemberTransactions(ctx context.Context, memberID string, beforeSeq int64, limit int) ([]ledger.Transaction, error) {
	if limit <= 0 {
		limit = -1 // SQLite's "no limit"
	}
	if beforeSeq <= 0 {
		beforeSeq = math.MaxInt64
	}
	who, arg, err := db.historyOf(ctx, memberID)
	if err != nil {
		return nil, err
	}
	rows, err := db.query(ctx, `
		SELECT `+txnCols+`
		FROM (SELECT * FROM transactions
		      WHERE `+who+` AND seq < ?
		      ORDER BY seq DESC LIMIT ?) AS t
		LEFT JOIN postings p ON p.txn_id = t.id
		ORDER BY t.seq DESC, p.account_id`, arg, beforeSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("member transactions: %w", err)
	}
	var out []ledger.Transaction
	err = scanTxns(rows, func(t ledger.Transaction) error {
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("member transactions: %w", err)
	}
	return out, nil
}

// Hold returns the hold id.
func (db *DB) Hold(ctx context.Context, id string) (ledger.Hold, error) {
	var h ledger.Hold
	row, err := db.queryRow(ctx, `SELECT `+holdCols+` FROM holds h WHERE h.id = ?`, id)
	if err == nil {
		err = scanHold(row, &h)
	}
	return h, notFound(err, ledger.CodeHoldNotFound, "no hold with id %q", id)
}

// MemberLots lists the member's lots with points remaining, earliest expiry
// first (ties by id).
func (db *DB) MemberLots(ctx context.Context, memberID string) ([]ledger.Lot, error) {
	rows, err := db.query(ctx, `
		SELECT `+lotCols+`, COALESCE(t.merchant_id, '') FROM lots l
		LEFT JOIN transactions t ON t.id = l.id
		WHERE l.member_id = ? AND l.remaining > 0
		ORDER BY l.expires_at, l.id`, memberID)
	if err != nil {
		return nil, fmt.Errorf("member lots: %w", err)
	}
	defer rows.Close()
	var out []ledger.Lot
	for rows.Next() {
		var l ledger.Lot
		var expires sql.NullInt64
		if err := rows.Scan(&l.ID, &l.MemberID, &l.Points, &l.Remaining, &expires, &l.MerchantID); err != nil {
			return nil, fmt.Errorf("member lots: %w", err)
		}
		l.ExpiresAt = timeOf(expires)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("member lots: %w", err)
	}
	return out, nil
}

// Idempotency returns the stored outcome of the request scope sent with key.
func (db *DB) Idempotency(ctx context.Context, scope, key string) (ledger.IdemRecord, bool, error) {
	var r ledger.IdemRecord
	row, err := db.queryRow(ctx, `SELECT `+idemCols+` FROM idempotency i WHERE i.scope = ? AND i.key = ?`, scope, key)
	if err == nil {
		err = scanIdem(row, &r)
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ledger.IdemRecord{}, false, nil
	case err != nil:
		return ledger.IdemRecord{}, false, fmt.Errorf("idempotency record: %w", err)
	}
	return r, true, nil
}

// DueLotMembers lists members that have lots with points remaining that
// expire at or before now, at most limit of them. Members whose points are
// all reserved by holds are left out: nothing of theirs can expire now, and
// listing them again on every pass would crowd out the others.
func (db *DB) DueLotMembers(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		limit = -1 // SQLite's "no limit"
	}
	rows, err := db.query(ctx, `
		SELECT DISTINCT l.member_id FROM lots l
		JOIN members m ON m.id = l.member_id
		JOIN accounts a ON a.id = m.account_id
		WHERE l.remaining > 0 AND l.expires_at <= ? AND a.balance > a.held
		LIMIT ?`, now.UnixMicro(), limit)
	if err != nil {
		return nil, fmt.Errorf("due lots: %w", err)
	}
	return scanStrings(rows)
}

// DueHolds lists active holds that expire at or before now, the longest
// expired first, at most limit of them.
func (db *DB) DueHolds(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		limit = -1 // SQLite's "no limit"
	}
	rows, err := db.query(ctx, `
		SELECT id FROM holds
		WHERE status = 'active' AND expires_at <= ?
		ORDER BY expires_at, id
		LIMIT ?`, now.UnixMicro(), limit)
	if err != nil {
		return nil, fmt.Errorf("due holds: %w", err)
	}
	return scanStrings(rows)
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// notFound turns sql.ErrNoRows into a ledger error with code and the message
// format (one %q for arg); other errors pass through.
func notFound(err error, code, format string, arg string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return ledger.Errorf(code, format, arg)
	}
	return fmt.Errorf("sqlite: %w", err)
}
