package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

// The directory: merchants, stores, members and API keys. Each insert is one
// short transaction on the writer connection.

// CreateMerchant stores m and creates its two accounts, filling in
// m.IssuedAccount and m.RedeemedAccount.
func (db *DB) CreateMerchant(ctx context.Context, m *ledger.Merchant) error {
	var issued, redeemed int64
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		if issued, err = newAccount(ctx, tx, "merchant_issued", m.ID); err != nil {
			return err
		}
		if redeemed, err = newAccount(ctx, tx, "merchant_redeemed", m.ID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO merchants (id, name, earn_rate_bp, point_validity_days, status,
			                       issued_account, redeemed_account, created_at, max_explicit_points, require_member_code)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			m.ID, m.Name, m.EarnRateBP, m.PointValidityDays, m.Status, issued, redeemed, timeArg(m.CreatedAt), m.MaxExplicitPoints, m.RequireMemberCode)
		return err
	})
	if err != nil {
		return conflict(err, "merchant", m.ID)
	}
	m.IssuedAccount, m.RedeemedAccount = issued, redeemed
	return nil
}

// CreateStore stores s, a store of an existing merchant.
func (db *DB) CreateStore(ctx context.Context, s ledger.Shop) error {
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM merchants WHERE id = ?`, s.MerchantID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return ledger.Errorf(ledger.CodeMerchantNotFound, "no merchant with id %q", s.MerchantID)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO stores (id, merchant_id, name, status, created_at) VALUES (?, ?, ?, ?, ?)`,
			s.ID, s.MerchantID, s.Name, storeStatus(s.Status), timeArg(s.CreatedAt))
		return err
	})
	return conflict(err, "store", s.ID)
}

// CreateMember stores m and creates its account, filling in m.AccountID. A
// card number or phone already taken is a ledger.CodeConflict error whose
// Field names it; an empty phone is no phone and never collides.
func (db *DB) CreateMember(ctx context.Context, m *ledger.Member) error {
	var acct int64
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		if acct, err = newAccount(ctx, tx, "member", m.ID); err != nil {
			return err
		}
		enc, hash := db.sealPhone(m.Phone)
		_, err = tx.ExecContext(ctx, `
			INSERT INTO members (id, card_number, phone_enc, phone_hash, name, status, account_id, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			m.ID, m.CardNumber, enc, hash, m.Name, m.Status, acct, timeArg(m.CreatedAt))
		return err
	})
	if err != nil {
		return conflict(err, "member", m.ID)
	}
	m.AccountID = acct
	return nil
}

// newAccount creates an empty account of kind for owner and returns its id.
func newAccount(ctx context.Context, tx *sql.Tx, kind, owner string) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `INSERT INTO accounts (kind, owner_id) VALUES (?, ?) RETURNING id`, kind, owner).Scan(&id)
	return id, err
}

// CreateKey stores k.
func (db *DB) CreateKey(ctx context.Context, k auth.Key) error {
	err := db.writeTx(ctx, func(tx *sql.Tx) error { return insertKey(ctx, tx, k) })
	return conflict(err, "api key", k.ID)
}

// insertKey is the one INSERT of an API key: created, or made by a rotation.
func insertKey(ctx context.Context, tx *sql.Tx, k auth.Key) error {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO api_keys (id, prefix, hash, role, mode, merchant_id, store_id, name, created_at, revoked_at, expires_at,
			rate_limit_per_second, rate_limit_burst, lineage)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Prefix, k.Hash, string(k.Role), string(k.Mode), k.MerchantID, k.StoreID, k.Name,
		timeArg(k.CreatedAt), timeArg(k.RevokedAt), timeArg(k.ExpiresAt), k.RateLimitPerSecond, k.RateLimitBurst, k.Lineage)
	return err
}

// KeyByHash returns the key whose SHA-256 is hash, revoked or not, or
// auth.ErrKeyNotFound.
func (db *DB) KeyByHash(ctx context.Context, hash []byte) (auth.Key, error) {
	var k auth.Key
	row, err := db.queryRow(ctx, `SELECT `+keyCols+` FROM api_keys k WHERE k.hash = ?`, hash)
	if err == nil {
		err = scanKey(row, &k)
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return auth.Key{}, auth.ErrKeyNotFound
	case err != nil:
		return auth.Key{}, fmt.Errorf("sqlite: api key: %w", err)
	}
	return k, nil
}

// writeTx runs fn in one transaction on the writer connection.
func (db *DB) writeTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// conflict turns the violation of a UNIQUE constraint into a ledger
// CodeConflict error naming the field taken; other errors pass through.
func conflict(err error, what, id string) error {
	if err == nil {
		return nil
	}
	var le *ledger.Error
	if errors.As(err, &le) {
		return err
	}
	cols := uniqueViolation(err)
	if cols == "" {
		return fmt.Errorf("sqlite: create %s %s: %w", what, id, err)
	}
	switch cols {
	case "members.card_number":
		return &ledger.Error{Code: ledger.CodeConflict, Field: "card_number", Message: "this card number belongs to another member"}
	case "members.phone", "members.phone_hash":
		return &ledger.Error{Code: ledger.CodeConflict, Field: "phone", Message: "this phone number belongs to another member"}
	case "api_keys.hash":
		return &ledger.Error{Code: ledger.CodeConflict, Field: "hash", Message: "an API key with this hash already exists"}
	}
	// A taken id shows as the primary key of the table or, since the owner's
	// accounts are created first, as accounts (owner_id, kind).
	if strings.HasSuffix(cols, ".id") || strings.HasPrefix(cols, "accounts.owner_id") {
		return &ledger.Error{Code: ledger.CodeConflict, Field: "id", Message: fmt.Sprintf("id %q is taken by another %s", id, what)}
	}
	return &ledger.Error{Code: ledger.CodeConflict, Message: fmt.Sprintf("create %s %s: %s already taken", what, id, cols)}
}

// storeStatus is the status a new store is stored with: active unless the
// caller says otherwise.
func storeStatus(s string) string {
	if s == "" {
		return ledger.StatusActive
	}
	return s
}
