package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
)

// The back office (backoffice.Store): updates with their audit entry in one
// transaction on the writer connection, lists on the reader pool.

var _ backoffice.Store = (*DB)(nil)

const shopCols = `s.id, s.merchant_id, s.name, s.status, s.created_at`

func scanShop(s scanner, sh *ledger.Shop) error {
	var created sql.NullInt64
	err := s.Scan(&sh.ID, &sh.MerchantID, &sh.Name, &sh.Status, &created)
	sh.CreatedAt = timeOf(created)
	return err
}

// update reads one row in a write transaction, lets change alter it, and
// writes it back with the audit entry change returns (nothing when nil).
func update[T any](ctx context.Context, db *DB, row *T, read func(*sql.Tx) error, change backoffice.Change[T],
	write func(*sql.Tx) error) error {
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		if err := read(tx); err != nil {
			return err
		}
		e, err := change(row)
		if err != nil || e == nil {
			return err
		}
		if err := write(tx); err != nil {
			return err
		}
		return appendAudit(ctx, tx, *e)
	})
}

// UpdateMerchant changes a merchant's name, earn rate, point validity and
// status with its audit entry.
func (db *DB) UpdateMerchant(ctx context.Context, id string, change backoffice.Change[ledger.Merchant]) (ledger.Merchant, error) {
	var m ledger.Merchant
	err := update(ctx, db, &m, func(tx *sql.Tx) error {
		err := scanMerchant(tx.QueryRowContext(ctx, `SELECT `+merchantCols+` FROM merchants m WHERE m.id = ?`, id), &m)
		return notFound(err, ledger.CodeMerchantNotFound, "no merchant with id %q", id)
	}, change, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE merchants SET name = ?, earn_rate_bp = ?, point_validity_days = ?, status = ?,
			max_explicit_points = ?, require_member_code = ? WHERE id = ?`,
			m.Name, m.EarnRateBP, m.PointValidityDays, m.Status, m.MaxExplicitPoints, m.RequireMemberCode, id)
		return err
	})
	return m, wrap(err, "update merchant")
}

// UpdateStore changes a store's name and status with its audit entry.
func (db *DB) UpdateStore(ctx context.Context, id string, change backoffice.Change[ledger.Shop]) (ledger.Shop, error) {
	var s ledger.Shop
	err := update(ctx, db, &s, func(tx *sql.Tx) error {
		err := scanShop(tx.QueryRowContext(ctx, `SELECT `+shopCols+` FROM stores s WHERE s.id = ?`, id), &s)
		return notFound(err, ledger.CodeStoreNotFound, "no store with id %q", id)
	}, change, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE stores SET name = ?, status = ? WHERE id = ?`, s.Name, s.Status, id)
		return err
	})
	return s, wrap(err, "update store")
}

// UpdateMemberStatus changes a member's status with its audit entry.
func (db *DB) UpdateMemberStatus(ctx context.Context, id string, change backoffice.Change[ledger.Member]) (ledger.Member, error) {
	var m ledger.Member
	err := update(ctx, db, &m, func(tx *sql.Tx) error {
		err := scanMember(tx.QueryRowContext(ctx, `SELECT `+memberCols+` FROM members m WHERE m.id = ?`, id), &m)
		if err := notFound(err, ledger.CodeMemberNotFound, "no member with id %q", id); err != nil {
			return err
		}
		return db.openPhone(&m)
	}, change, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE members SET status = ? WHERE id = ?`, m.Status, id)
		return err
	})
	return m, wrap(err, "update member")
}

// sqliteLimit is a LIMIT for SQLite, where -1 means none.
func sqliteLimit(limit int) int {
	if limit <= 0 {
		return -1
	}
	return limit
}

// ListMerchants lists merchants by id after the id after.
func (db *DB) ListMerchants(ctx context.Context, after string, limit int) ([]ledger.Merchant, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+merchantCols+` FROM merchants m WHERE m.id > ? ORDER BY m.id LIMIT ?`,
		after, sqliteLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list merchants: %w", err)
	}
	return collectRows(rows, func(s scanner) (ledger.Merchant, error) {
		var m ledger.Merchant
		return m, scanMerchant(s, &m)
	})
}

// ListStores lists a merchant's stores by id after the id after.
func (db *DB) ListStores(ctx context.Context, merchantID, after string, limit int) ([]ledger.Shop, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+shopCols+` FROM stores s WHERE s.merchant_id = ? AND s.id > ? ORDER BY s.id LIMIT ?`,
		merchantID, after, sqliteLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list stores: %w", err)
	}
	return collectRows(rows, func(s scanner) (ledger.Shop, error) {
		var sh ledger.Shop
		return sh, scanShop(s, &sh)
	})
}

// SearchMembers lists by id the members whose name contains name. SQLite's
// LIKE folds the case of ASCII letters only.
func (db *DB) SearchMembers(ctx context.Context, name, after string, limit int) ([]ledger.Member, error) {
	rows, err := db.r.QueryContext(ctx, `
		SELECT `+memberCols+` FROM members m
		WHERE m.name LIKE ? ESCAPE '\' AND m.id > ? ORDER BY m.id LIMIT ?`,
		"%"+escapeLike(name)+"%", after, sqliteLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("sqlite: search members: %w", err)
	}
	return collectRows(rows, func(s scanner) (ledger.Member, error) {
		var m ledger.Member
		if err := scanMember(s, &m); err != nil {
			return m, err
		}
		return m, db.openPhone(&m)
	})
}

// escapeLike makes s match itself literally in a LIKE pattern with ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// ListKeys lists API keys by id after the id after.
func (db *DB) ListKeys(ctx context.Context, after string, limit int) ([]auth.Key, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+keyCols+` FROM api_keys k WHERE k.id > ? ORDER BY k.id LIMIT ?`,
		after, sqliteLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list keys: %w", err)
	}
	return collectRows(rows, func(s scanner) (auth.Key, error) {
		var k auth.Key
		return k, scanKey(s, &k)
	})
}

// Key returns the API key id.
func (db *DB) Key(ctx context.Context, id string) (auth.Key, error) {
	var k auth.Key
	err := scanKey(db.r.QueryRowContext(ctx, `SELECT `+keyCols+` FROM api_keys k WHERE k.id = ?`, id), &k)
	return k, notFound(err, ledger.CodeNotFound, "no API key with id %q", id)
}

// UpdateKey changes a key's revocation, expiry and name with its audit
// entry, creating add in the same transaction when it is not nil.
func (db *DB) UpdateKey(ctx context.Context, id string, add *auth.Key, change backoffice.Change[auth.Key]) (auth.Key, error) {
	var k auth.Key
	err := update(ctx, db, &k, func(tx *sql.Tx) error {
		err := scanKey(tx.QueryRowContext(ctx, `SELECT `+keyCols+` FROM api_keys k WHERE k.id = ?`, id), &k)
		return notFound(err, ledger.CodeNotFound, "no API key with id %q", id)
	}, change, func(tx *sql.Tx) error {
		if add != nil {
			if err := insertKey(ctx, tx, *add); err != nil {
				return conflict(err, "api key", add.ID)
			}
		}
		_, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ?, expires_at = ?, name = ? WHERE id = ?`,
			timeArg(k.RevokedAt), timeArg(k.ExpiresAt), k.Name, id)
		return err
	})
	return k, wrap(err, "update api key")
}

// TouchKeys records last use times, never moving one backwards.
func (db *DB) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		for id, at := range used {
			if _, err := tx.ExecContext(ctx, `
				UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`,
				timeArg(at), id, timeArg(at)); err != nil {
				return err
			}
		}
		return nil
	})
	return wrap(err, "touch api keys")
}

// AppendAudit writes e unless an entry with its id exists.
func (db *DB) AppendAudit(ctx context.Context, e backoffice.Entry) error {
	return wrap(db.writeTx(ctx, func(tx *sql.Tx) error { return appendAudit(ctx, tx, e) }), "append audit")
}

func appendAudit(ctx context.Context, tx *sql.Tx, e backoffice.Entry) error {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO audit_log (id, at, actor_key_id, actor_prefix, action, target_type, target_id, txn_id, reason, before, after)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`,
		e.ID, ledger.MicroTime(e.At).UnixMicro(), e.ActorKeyID, e.ActorPrefix, e.Action, e.TargetType, e.TargetID,
		e.TxnID, e.Reason, string(e.Before), string(e.After))
	return err
}

// AuditLog lists audit entries newest first.
func (db *DB) AuditLog(ctx context.Context, f backoffice.AuditFilter) ([]backoffice.Entry, error) {
	before := f.BeforeSeq
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := db.r.QueryContext(ctx, `
		SELECT seq, id, at, actor_key_id, actor_prefix, action, target_type, target_id, txn_id, reason, before, after
		FROM audit_log
		WHERE seq < ? AND (? = '' OR target_id = ?) AND (? = '' OR actor_key_id = ?)
		ORDER BY seq DESC LIMIT ?`,
		before, f.TargetID, f.TargetID, f.ActorKeyID, f.ActorKeyID, sqliteLimit(f.Limit))
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit log: %w", err)
	}
	return collectRows(rows, func(s scanner) (backoffice.Entry, error) {
		var e backoffice.Entry
		var at int64
		var before, after string
		err := s.Scan(&e.Seq, &e.ID, &at, &e.ActorKeyID, &e.ActorPrefix, &e.Action, &e.TargetType, &e.TargetID,
			&e.TxnID, &e.Reason, &before, &after)
		e.At = time.UnixMicro(at).UTC()
		if before != "" {
			e.Before = []byte(before)
		}
		if after != "" {
			e.After = []byte(after)
		}
		return e, err
	})
}

func collectRows[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
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

// wrap adds context to a storage failure and lets domain errors through.
func wrap(err error, what string) error {
	var le *ledger.Error
	if err == nil || errors.As(err, &le) {
		return err
	}
	return fmt.Errorf("sqlite: %s: %w", what, err)
}
