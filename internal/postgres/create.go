package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

// The creations below are each one statement (accounts and their owner in
// one data-modifying WITH), hence atomic without an explicit transaction.

// CreateMerchant stores m with its two accounts and fills in their ids.
func (db *DB) CreateMerchant(ctx context.Context, m *ledger.Merchant) error {
	err := db.pool.QueryRow(ctx, `
		WITH a AS (
			INSERT INTO accounts (kind, owner_id)
			VALUES ('merchant_issued', $1), ('merchant_redeemed', $1)
			RETURNING id, kind
		)
		INSERT INTO merchants (id, name, earn_rate_bp, point_validity_days, status,
			issued_account, redeemed_account, created_at, max_explicit_points, require_member_code)
		VALUES ($1, $2, $3, $4, $5,
			(SELECT id FROM a WHERE kind = 'merchant_issued'),
			(SELECT id FROM a WHERE kind = 'merchant_redeemed'), $6, $7, $8)
		RETURNING issued_account, redeemed_account`,
		m.ID, m.Name, m.EarnRateBP, m.PointValidityDays, m.Status, ts(m.CreatedAt), m.MaxExplicitPoints, m.RequireMemberCode,
	).Scan(&m.IssuedAccount, &m.RedeemedAccount)
	if code, _ := pgCode(err); code == uniqueViolation {
		return &ledger.Error{Code: ledger.CodeConflict, Field: "id", Message: fmt.Sprintf("a merchant with id %q already exists", m.ID)}
	}
	if err != nil {
		return fmt.Errorf("create merchant %s: %w", m.ID, err)
	}
	return nil
}

// CreateStore stores s; its merchant must exist.
func (db *DB) CreateStore(ctx context.Context, s ledger.Shop) error {
	_, err := db.pool.Exec(ctx, `
		INSERT INTO stores (id, merchant_id, name, status, created_at) VALUES ($1, $2, $3, $4, $5)`,
		s.ID, s.MerchantID, s.Name, storeStatus(s.Status), ts(s.CreatedAt))
	switch code, _ := pgCode(err); code {
	case "":
	case uniqueViolation:
		return &ledger.Error{Code: ledger.CodeConflict, Field: "id", Message: fmt.Sprintf("a store with id %q already exists", s.ID)}
	case foreignKeyViolation:
		return &ledger.Error{Code: ledger.CodeMerchantNotFound, Field: "merchant_id", Message: fmt.Sprintf("no merchant with id %q", s.MerchantID)}
	}
	if err != nil {
		return fmt.Errorf("create store %s: %w", s.ID, err)
	}
	return nil
}

// CreateMember stores m with its account and fills in the account's id. An
// empty phone is stored as NULL: any number of members may have none.
func (db *DB) CreateMember(ctx context.Context, m *ledger.Member) error {
	enc, hash := db.sealPhone(m.Phone)
	err := db.pool.QueryRow(ctx, `
		WITH a AS (
			INSERT INTO accounts (kind, owner_id) VALUES ('member', $1) RETURNING id
		)
		INSERT INTO members (id, card_number, phone_enc, phone_hash, name, status, account_id, created_at)
		SELECT $1, $2, $3, $4, $5, $6, a.id, $7 FROM a
		RETURNING account_id`,
		m.ID, m.CardNumber, enc, hash, m.Name, m.Status, ts(m.CreatedAt),
	).Scan(&m.AccountID)
	if code, constraint := pgCode(err); code == uniqueViolation {
		switch constraint {
		case "members_card_number_key":
			return &ledger.Error{Code: ledger.CodeConflict, Field: "card_number", Message: "this card number is already registered to another member"}
		case "members_phone_key", "members_phone_hash_key":
			return &ledger.Error{Code: ledger.CodeConflict, Field: "phone", Message: "this phone number is already registered to another member"}
		default: // members_pkey, or the account of a member with this id
			return &ledger.Error{Code: ledger.CodeConflict, Field: "id", Message: fmt.Sprintf("a member with id %q already exists", m.ID)}
		}
	}
	if err != nil {
		return fmt.Errorf("create member %s: %w", m.ID, err)
	}
	return nil
}

// CreateKey stores an API key (its hash, never the key).
func (db *DB) CreateKey(ctx context.Context, k auth.Key) error {
	if err := insertKey(ctx, db.pool, k); err != nil {
		return fmt.Errorf("create api key %s: %w", k.ID, err)
	}
	return nil
}

// insertKey is the one INSERT of an API key: created, or made by a
// rotation. A taken id or hash is a CodeConflict error.
func insertKey(ctx context.Context, db interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, k auth.Key) error {
	_, err := db.Exec(ctx, `
		INSERT INTO api_keys (id, prefix, hash, role, mode, merchant_id, store_id, name, created_at, revoked_at, expires_at,
			rate_limit_per_second, rate_limit_burst, lineage)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		k.ID, k.Prefix, k.Hash, string(k.Role), string(k.Mode), k.MerchantID, k.StoreID, k.Name,
		ts(k.CreatedAt), ts(k.RevokedAt), ts(k.ExpiresAt), k.RateLimitPerSecond, k.RateLimitBurst, k.Lineage)
	if code, _ := pgCode(err); code == uniqueViolation {
		return &ledger.Error{Code: ledger.CodeConflict, Field: "id", Message: "an API key with this id or hash already exists"}
	}
	return err
}

// KeyByHash returns the key whose hash is hash, revoked or not, or
// auth.ErrKeyNotFound.
func (db *DB) KeyByHash(ctx context.Context, hash []byte) (auth.Key, error) {
	k, err := scanKey(db.pool.QueryRow(ctx, `SELECT `+keyCols+` FROM api_keys k WHERE k.hash = $1`, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return auth.Key{}, auth.ErrKeyNotFound
	}
	if err != nil {
		return auth.Key{}, fmt.Errorf("look up api key: %w", err)
	}
	return k, nil
}

const keyCols = `k.id, k.prefix, k.hash, k.role, k.mode, k.merchant_id, k.store_id, k.name, k.created_at, k.revoked_at,
	k.expires_at, k.last_used_at, k.rate_limit_per_second, k.rate_limit_burst, k.lineage`

func scanKey(row pgx.Row) (auth.Key, error) {
	var k auth.Key
	var role, mode string
	var created, revoked, expires, used pgtype.Timestamptz
	err := row.Scan(&k.ID, &k.Prefix, &k.Hash, &role, &mode, &k.MerchantID, &k.StoreID, &k.Name, &created, &revoked,
		&expires, &used, &k.RateLimitPerSecond, &k.RateLimitBurst, &k.Lineage)
	k.Role, k.Mode = auth.Role(role), auth.Mode(mode)
	k.CreatedAt, k.RevokedAt, k.ExpiresAt, k.LastUsedAt = timeOf(created), timeOf(revoked), timeOf(expires), timeOf(used)
	return k, err
}

// storeStatus is the status a new store is stored with: active unless the
// caller says otherwise.
func storeStatus(s string) string {
	if s == "" {
		return ledger.StatusActive
	}
	return s
}
