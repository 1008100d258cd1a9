package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
)

// The back office (backoffice.Store): each update locks its row (SELECT …
// FOR UPDATE), so two operators changing one merchant at once are applied
// one after the other and each audit entry's "before" is what its change
// really replaced; the entry is written in the same transaction.

var _ backoffice.Store = (*DB)(nil)

const shopCols = `s.id, s.merchant_id, s.name, s.status, s.created_at`

func scanShop(row pgx.Row) (ledger.Shop, error) {
	var s ledger.Shop
	var created pgtype.Timestamptz
	err := row.Scan(&s.ID, &s.MerchantID, &s.Name, &s.Status, &created)
	s.CreatedAt = timeOf(created)
	return s, err
}

// update reads and locks one row, lets change alter it, and writes it back
// with the audit entry change returns (nothing when nil).
func update[T any](ctx context.Context, db *DB, notFound error, scan func(pgx.Row) (T, error), query, id string,
	change backoffice.Change[T], write func(pgx.Tx, T) error) (T, error) {
	var row T
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var err error
		if row, err = one(ctx, tx, notFound, scan, query+` FOR UPDATE`, id); err != nil {
			return err
		}
		e, err := change(&row)
		if err != nil || e == nil {
			return err
		}
		if err := write(tx, row); err != nil {
			return err
		}
		return appendAudit(ctx, tx, *e)
	})
	return row, wrap(err)
}

// UpdateMerchant changes a merchant's name, earn rate, point validity and
// status with its audit entry.
func (db *DB) UpdateMerchant(ctx context.Context, id string, change backoffice.Change[ledger.Merchant]) (ledger.Merchant, error) {
	return update(ctx, db, ledger.Errorf(ledger.CodeMerchantNotFound, "no merchant with id %q", id), scanMerchant,
		`SELECT `+merchantCols+` FROM merchants m WHERE m.id = $1`, id, change,
		func(tx pgx.Tx, m ledger.Merchant) error {
			_, err := tx.Exec(ctx, `UPDATE merchants SET name = $1, earn_rate_bp = $2, point_validity_days = $3, status = $4,
				max_explicit_points = $5, require_member_code = $6 WHERE id = $7`,
				m.Name, m.EarnRateBP, m.PointValidityDays, m.Status, m.MaxExplicitPoints, m.RequireMemberCode, id)
			return err
		})
}

// UpdateStore changes a store's name and status with its audit entry.
func (db *DB) UpdateStore(ctx context.Context, id string, change backoffice.Change[ledger.Shop]) (ledger.Shop, error) {
	return update(ctx, db, ledger.Errorf(ledger.CodeStoreNotFound, "no store with id %q", id), scanShop,
		`SELECT `+shopCols+` FROM stores s WHERE s.id = $1`, id, change,
		func(tx pgx.Tx, s ledger.Shop) error {
			_, err := tx.Exec(ctx, `UPDATE stores SET name = $1, status = $2 WHERE id = $3`, s.Name, s.Status, id)
			return err
		})
}

// UpdateMemberStatus changes a member's status with its audit entry.
func (db *DB) UpdateMemberStatus(ctx context.Context, id string, change backoffice.Change[ledger.Member]) (ledger.Member, error) {
	return update(ctx, db, ledger.Errorf(ledger.CodeMemberNotFound, "no member with id %q", id), db.scanOpenMember,
		`SELECT `+memberCols+` FROM members m WHERE m.id = $1`, id, change,
		func(tx pgx.Tx, m ledger.Member) error {
			_, err := tx.Exec(ctx, `UPDATE members SET status = $1 WHERE id = $2`, m.Status, id)
			return err
		})
}

// scanOpenMember scans a member and opens its sealed phone.
func (db *DB) scanOpenMember(row pgx.Row) (ledger.Member, error) {
	m, err := scanMember(row)
	if err != nil {
		return m, err
	}
	return m, db.openPhone(&m)
}

// pgLimit is a LIMIT for PostgreSQL, where NULL means none.
func pgLimit(limit int) pgtype.Int8 {
	return pgtype.Int8{Int64: int64(limit), Valid: limit > 0}
}

// ListMerchants lists merchants by id after the id after.
func (db *DB) ListMerchants(ctx context.Context, after string, limit int) ([]ledger.Merchant, error) {
	out, err := list(ctx, db.pool, scanMerchant,
		`SELECT `+merchantCols+` FROM merchants m WHERE m.id > $1 ORDER BY m.id LIMIT $2`, after, pgLimit(limit))
	return out, wrap(err)
}

// ListStores lists a merchant's stores by id after the id after.
func (db *DB) ListStores(ctx context.Context, merchantID, after string, limit int) ([]ledger.Shop, error) {
	out, err := list(ctx, db.pool, scanShop,
		`SELECT `+shopCols+` FROM stores s WHERE s.merchant_id = $1 AND s.id > $2 ORDER BY s.id LIMIT $3`,
		merchantID, after, pgLimit(limit))
	return out, wrap(err)
}

// SearchMembers lists by id the members whose name contains name, ignoring
// case (ILIKE folds every letter, not only ASCII).
func (db *DB) SearchMembers(ctx context.Context, name, after string, limit int) ([]ledger.Member, error) {
	out, err := list(ctx, db.pool, db.scanOpenMember,
		`SELECT `+memberCols+` FROM members m WHERE m.name ILIKE $1 AND m.id > $2 ORDER BY m.id LIMIT $3`,
		"%"+escapeLike(name)+"%", after, pgLimit(limit))
	return out, wrap(err)
}

// escapeLike makes s match itself literally in a LIKE pattern (whose escape
// character is \ by default).
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// ListKeys lists API keys by id after the id after.
func (db *DB) ListKeys(ctx context.Context, after string, limit int) ([]auth.Key, error) {
	out, err := list(ctx, db.pool, scanKey,
		`SELECT `+keyCols+` FROM api_keys k WHERE k.id > $1 ORDER BY k.id LIMIT $2`, after, pgLimit(limit))
	return out, wrap(err)
}

// Key returns the API key id.
func (db *DB) Key(ctx context.Context, id string) (auth.Key, error) {
	k, err := one(ctx, db.pool, ledger.Errorf(ledger.CodeNotFound, "no API key with id %q", id), scanKey,
		`SELECT `+keyCols+` FROM api_keys k WHERE k.id = $1`, id)
	return k, wrap(err)
}

// UpdateKey changes a key's revocation, expiry and name with its audit
// entry, creating add in the same transaction when it is not nil.
func (db *DB) UpdateKey(ctx context.Context, id string, add *auth.Key, change backoffice.Change[auth.Key]) (auth.Key, error) {
	return update(ctx, db, ledger.Errorf(ledger.CodeNotFound, "no API key with id %q", id), scanKey,
		`SELECT `+keyCols+` FROM api_keys k WHERE k.id = $1`, id, change,
		func(tx pgx.Tx, k auth.Key) error {
			if add != nil {
				if err := insertKey(ctx, tx, *add); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = $1, expires_at = $2, name = $3 WHERE id = $4`,
				ts(k.RevokedAt), ts(k.ExpiresAt), k.Name, id)
			return err
		})
}

// TouchKeys records last use times in one statement, never moving one
// backwards.
func (db *DB) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	ids := make([]string, 0, len(used))
	ats := make([]time.Time, 0, len(used))
	for id, at := range used {
		ids = append(ids, id)
		ats = append(ats, ledger.MicroTime(at))
	}
	_, err := db.pool.Exec(ctx, `
		UPDATE api_keys k SET last_used_at = u.at
		FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
		WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`, ids, ats)
	return wrap(err)
}

// AppendAudit writes e unless an entry with its id exists.
func (db *DB) AppendAudit(ctx context.Context, e backoffice.Entry) error {
	return wrap(appendAudit(ctx, db.pool, e))
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func appendAudit(ctx context.Context, q execer, e backoffice.Entry) error {
	_, err := q.Exec(ctx, `
		INSERT INTO audit_log (id, at, actor_key_id, actor_prefix, action, target_type, target_id, txn_id, reason, before, after)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (id) DO NOTHING`,
		e.ID, ts(e.At), e.ActorKeyID, e.ActorPrefix, e.Action, e.TargetType, e.TargetID,
		e.TxnID, e.Reason, string(e.Before), string(e.After))
	return err
}

// AuditLog lists audit entries newest first.
func (db *DB) AuditLog(ctx context.Context, f backoffice.AuditFilter) ([]backoffice.Entry, error) {
	before := f.BeforeSeq
	if before <= 0 {
		before = 1 << 62
	}
	out, err := list(ctx, db.pool, func(row pgx.Row) (backoffice.Entry, error) {
		var e backoffice.Entry
		var at pgtype.Timestamptz
		var before, after string
		err := row.Scan(&e.Seq, &e.ID, &at, &e.ActorKeyID, &e.ActorPrefix, &e.Action, &e.TargetType, &e.TargetID,
			&e.TxnID, &e.Reason, &before, &after)
		e.At = timeOf(at)
		if before != "" {
			e.Before = []byte(before)
		}
		if after != "" {
			e.After = []byte(after)
		}
		return e, err
	}, `
		SELECT seq, id, at, actor_key_id, actor_prefix, action, target_type, target_id, txn_id, reason, before, after
		FROM audit_log
		WHERE seq < $1 AND ($2 = '' OR target_id = $2) AND ($3 = '' OR actor_key_id = $3)
		ORDER BY seq DESC LIMIT $4`, before, f.TargetID, f.ActorKeyID, pgLimit(f.Limit))
	return out, wrap(err)
}

// wrap adds context to a storage failure and lets domain errors through.
func wrap(err error) error {
	var le *ledger.Error
	if err == nil || errors.As(err, &le) {
		return err
	}
	return fmt.Errorf("postgres: back office: %w", err)
}
