package sqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
	"github.com/pointd/pointd/internal/privacy"
)

// The member side (internal/member): sealed phone numbers, profiles,
// login codes and sessions.

var _ member.Store = (*DB)(nil)

// UsePhones sets the data key that seals phone numbers and then seals the
// rows a database from before migration 00030 still holds in clear (and
// clears them), in one transaction. It refuses a key that does not open the
// numbers already sealed. Call it once, right after opening, before use.
func (db *DB) UsePhones(ctx context.Context, p *privacy.Phones) error {
	var sample []byte
	err := db.r.QueryRowContext(ctx, `SELECT phone_enc FROM members WHERE phone_enc IS NOT NULL LIMIT 1`).Scan(&sample)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: check data key: %w", err)
	}
	if sample != nil {
		if _, err := p.Open(sample); err != nil {
			return errors.New("the data key does not open the phone numbers stored in this database: it is not the key they were sealed with")
		}
	}
	db.phones = p
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, phone FROM members WHERE phone IS NOT NULL`)
		if err != nil {
			return err
		}
		type clear struct{ id, phone string }
		var todo []clear
		for rows.Next() {
			var c clear
			if err := rows.Scan(&c.id, &c.phone); err != nil {
				rows.Close()
				return err
			}
			todo = append(todo, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, c := range todo {
			enc, hash := db.sealPhone(c.phone)
			if _, err := tx.ExecContext(ctx, `UPDATE members SET phone_enc = ?, phone_hash = ?, phone = NULL WHERE id = ?`,
				enc, hash, c.id); err != nil {
				return fmt.Errorf("seal the phone of member %s: %w", c.id, err)
			}
		}
		return nil
	})
}

func (db *DB) phoneKey() *privacy.Phones {
	if db.phones != nil {
		return db.phones
	}
	return privacy.ProcessPhones()
}

// sealPhone returns the sealed phone and its lookup hash, both nil for no
// phone (NULLs never collide under the unique index).
func (db *DB) sealPhone(phone string) (enc, hash []byte) {
	if phone == "" {
		return nil, nil
	}
	p := db.phoneKey()
	return p.Seal(phone), p.Index(phone)
}

// openPhoneIfAble is openPhone for the write path, which never needs the
// number: a tool run without the data key (pointd expire, reconcile) must
// still be able to move points, so a number it cannot open is left out.
func (db *DB) openPhoneIfAble(m *ledger.Member) {
	if db.openPhone(m) != nil {
		m.Phone = ""
	}
}

// openPhone turns the hex of the sealed phone that memberCols read into
// the number.
func (db *DB) openPhone(m *ledger.Member) error {
	if m.Phone == "" {
		return nil
	}
	b, err := hex.DecodeString(m.Phone)
	if err != nil {
		return fmt.Errorf("sqlite: member %s: sealed phone: %w", m.ID, err)
	}
	if m.Phone, err = db.phoneKey().Open(b); err != nil {
		return fmt.Errorf("sqlite: member %s: %w", m.ID, err)
	}
	return nil
}

// Profile returns a member with consents.
func (db *DB) Profile(ctx context.Context, memberID string) (member.Profile, error) {
	var p member.Profile
	var phone sql.NullString
	var created, consents, withdrawn sql.NullInt64
	row, err := db.queryRow(ctx, `SELECT `+memberCols+`, m.marketing_consent, m.analytics_consent,
		m.consents_updated_at, m.withdrawn_at FROM members m WHERE m.id = ?`, memberID)
	if err == nil {
		err = row.Scan(&p.ID, &p.CardNumber, &phone, &p.Name, &p.Status, &p.AccountID, &created, &p.MergedInto,
			&p.MarketingConsent, &p.AnalyticsConsent, &consents, &withdrawn)
	}
	if err := notFound(err, ledger.CodeMemberNotFound, "no member with id %q", memberID); err != nil {
		return p, err
	}
	p.Phone, p.CreatedAt = phone.String, timeOf(created)
	p.ConsentsUpdatedAt, p.WithdrawnAt = timePtr(consents), timePtr(withdrawn)
	return p, db.openPhone(&p.Member)
}

func timePtr(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := timeOf(v)
	return &t
}

// UpdateProfile applies u to an active member.
func (db *DB) UpdateProfile(ctx context.Context, memberID string, u member.ProfileUpdate, at time.Time) (member.Profile, error) {
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE members SET
				name = coalesce(?, name),
				marketing_consent = coalesce(?, marketing_consent),
				analytics_consent = coalesce(?, analytics_consent),
				consents_updated_at = CASE WHEN ? THEN ? ELSE consents_updated_at END
			WHERE id = ? AND status <> 'withdrawn'`,
			strPtrArg(u.Name), boolPtrArg(u.MarketingConsent), boolPtrArg(u.AnalyticsConsent),
			u.MarketingConsent != nil || u.AnalyticsConsent != nil, timeArg(at), memberID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ledger.Errorf(ledger.CodeMemberNotFound, "no member with id %q", memberID)
		}
		return nil
	})
	if err != nil {
		return member.Profile{}, err
	}
	return db.Profile(ctx, memberID)
}

func strPtrArg(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func boolPtrArg(p *bool) any {
	if p == nil {
		return nil
	}
	if *p {
		return 1
	}
	return 0
}

// Withdraw erases a member's personal data and revokes their sessions.
func (db *DB) Withdraw(ctx context.Context, memberID string, at time.Time) error {
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		var hash []byte
		err := tx.QueryRowContext(ctx, `SELECT phone_hash FROM members WHERE id = ? AND status <> 'withdrawn'`, memberID).Scan(&hash)
		if errors.Is(err, sql.ErrNoRows) {
			return ledger.Errorf(ledger.CodeMemberNotFound, "no member with id %q", memberID)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE members SET phone = NULL, phone_enc = NULL, phone_hash = NULL, phone_dup_hash = NULL, name = '',
				marketing_consent = 0, analytics_consent = 0, status = 'withdrawn', withdrawn_at = ?
			WHERE id = ?`, timeArg(at), memberID); err != nil {
			return err
		}
		// The number now finds the oldest member that shared it, if any
		// (its phone_dup_hash), rather than no one.
		if hash != nil {
			if _, err := tx.ExecContext(ctx, `
				UPDATE members SET phone_hash = phone_dup_hash, phone_dup_hash = NULL
				WHERE id = (SELECT id FROM members WHERE phone_dup_hash = ? AND status NOT IN ('withdrawn', 'merged')
				            ORDER BY created_at, id LIMIT 1)`, hash); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE member_sessions SET revoked_at = ? WHERE member_id = ? AND revoked_at IS NULL`,
			timeArg(at), memberID)
		return err
	})
}

// CreateOTP stores a login code's hash.
func (db *DB) CreateOTP(ctx context.Context, o member.OTP) error {
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO member_otps (id, phone_hash, code_hash, created_at, expires_at, attempts)
			VALUES (?, ?, ?, ?, ?, 0)`, o.ID, o.PhoneHash, o.CodeHash, timeArg(o.CreatedAt), timeArg(o.ExpiresAt))
		return err
	})
}

// CountOTPs counts the codes of a phone hash since a time.
func (db *DB) CountOTPs(ctx context.Context, phoneHash []byte, since time.Time) (int, time.Time, error) {
	var n int
	var oldest sql.NullInt64
	row, err := db.queryRow(ctx, `SELECT count(*), min(created_at) FROM member_otps WHERE phone_hash = ? AND created_at > ?`,
		phoneHash, timeArg(since))
	if err == nil {
		err = row.Scan(&n, &oldest)
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("sqlite: count login codes: %w", err)
	}
	return n, timeOf(oldest), nil
}

// LatestOTP returns the newest code of a phone hash.
func (db *DB) LatestOTP(ctx context.Context, phoneHash []byte) (member.OTP, error) {
	var o member.OTP
	var created, expires, used sql.NullInt64
	row, err := db.queryRow(ctx, `SELECT id, phone_hash, code_hash, created_at, expires_at, attempts, used_at
		FROM member_otps WHERE phone_hash = ? ORDER BY created_at DESC, id DESC LIMIT 1`, phoneHash)
	if err == nil {
		err = row.Scan(&o.ID, &o.PhoneHash, &o.CodeHash, &created, &expires, &o.Attempts, &used)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return o, member.ErrNoOTP
	}
	if err != nil {
		return o, fmt.Errorf("sqlite: login code: %w", err)
	}
	o.CreatedAt, o.ExpiresAt, o.UsedAt = timeOf(created), timeOf(expires), timeOf(used)
	return o, nil
}

// TakeAttempt counts one try against a live code.
func (db *DB) TakeAttempt(ctx context.Context, id string, at time.Time, maxAttempts int) (bool, error) {
	var n int64
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE member_otps SET attempts = attempts + 1
			WHERE id = ? AND used_at IS NULL AND expires_at > ? AND attempts < ?`, id, timeArg(at), maxAttempts)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("sqlite: count a try of a login code: %w", err)
	}
	return n == 1, nil
}

// UseOTP spends a live code once.
func (db *DB) UseOTP(ctx context.Context, id string, at time.Time) (bool, error) {
	var n int64
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE member_otps SET used_at = ?
			WHERE id = ? AND used_at IS NULL AND expires_at > ?`, timeArg(at), id, timeArg(at))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("sqlite: spend a login code: %w", err)
	}
	return n == 1, nil
}

// CreateSession stores a session (its token's hash).
func (db *DB) CreateSession(ctx context.Context, s member.Session) error {
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO member_sessions (id, hash, prefix, member_id, mode, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, s.ID, s.Hash, s.Prefix, s.MemberID, string(s.Mode), timeArg(s.CreatedAt), timeArg(s.ExpiresAt))
		return err
	})
}

// SessionByHash finds a session by its token's hash.
func (db *DB) SessionByHash(ctx context.Context, hash []byte) (member.Session, error) {
	var s member.Session
	var mode string
	var created, expires, revoked sql.NullInt64
	row, err := db.queryRow(ctx, `SELECT id, hash, prefix, member_id, mode, created_at, expires_at, revoked_at
		FROM member_sessions WHERE hash = ?`, hash)
	if err == nil {
		err = row.Scan(&s.ID, &s.Hash, &s.Prefix, &s.MemberID, &mode, &created, &expires, &revoked)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return s, member.ErrNoSession
	}
	if err != nil {
		return s, fmt.Errorf("sqlite: session: %w", err)
	}
	s.Mode = auth.Mode(mode)
	s.CreatedAt, s.ExpiresAt, s.RevokedAt = timeOf(created), timeOf(expires), timeOf(revoked)
	return s, nil
}

// RevokeSession ends a session.
func (db *DB) RevokeSession(ctx context.Context, id string, at time.Time) error {
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE member_sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, timeArg(at), id)
		return err
	})
}

// History lists a member's transactions newest first, filtered by type and
// time. It reads through the (member_id, seq) order like
// MemberTransactions, so a deep page costs what a first page does.
func (db *DB) History(ctx context.Context, memberID string, f member.HistoryFilter, beforeSeq int64, limit int) ([]ledger.Transaction, error) {
	if limit <= 0 {
		limit = -1
	}
	if beforeSeq <= 0 {
		beforeSeq = math.MaxInt64
	}
	who, arg, err := db.historyOf(ctx, memberID)
	if err != nil {
		return nil, err
	}
	where := []string{who, "seq < ?"}
	args := []any{arg, beforeSeq}
	if len(f.Types) > 0 {
		where = append(where, "type IN (?"+strings.Repeat(", ?", len(f.Types)-1)+")")
		for _, t := range f.Types {
			args = append(args, string(t))
		}
	}
	// A date range is also turned into a range of seq, through the
	// created_at index, so that the walk down the member's (member_id, seq)
	// index starts and stops near the range instead of reading every newer
	// or older row; the created_at conditions keep the answer exact.
	if !f.From.IsZero() {
		where, args = append(where, "created_at >= ?"), append(args, timeArg(f.From))
		var lo sql.NullInt64
		err := db.r.QueryRowContext(ctx, `SELECT seq FROM transactions WHERE created_at < ? ORDER BY created_at DESC, seq DESC LIMIT 1`,
			timeArg(f.From.Add(-member.ClockSkew))).Scan(&lo)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("member history: %w", err)
		}
		if lo.Valid {
			where, args = append(where, "seq > ?"), append(args, lo.Int64)
		}
	}
	if !f.To.IsZero() {
		where, args = append(where, "created_at < ?"), append(args, timeArg(f.To))
		var hi sql.NullInt64
		err := db.r.QueryRowContext(ctx, `SELECT seq FROM transactions WHERE created_at >= ? ORDER BY created_at, seq LIMIT 1`,
			timeArg(f.To.Add(member.ClockSkew))).Scan(&hi)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("member history: %w", err)
		}
		if hi.Valid {
			where, args = append(where, "seq < ?"), append(args, hi.Int64)
		}
	}
	args = append(args, limit)
	rows, err := db.r.QueryContext(ctx, `
		SELECT `+txnCols+`
		FROM (SELECT * FROM transactions
		      WHERE `+strings.Join(where, " AND ")+`
		      ORDER BY seq DESC LIMIT ?) AS t
		LEFT JOIN postings p ON p.txn_id = t.id
		ORDER BY t.seq DESC, p.account_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("member history: %w", err)
	}
	var out []ledger.Transaction
	err = scanTxns(rows, func(t ledger.Transaction) error {
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("member history: %w", err)
	}
	return out, nil
}

// Purge deletes old login codes and dead sessions.
func (db *DB) Purge(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM member_otps WHERE created_at < ?`,
			`DELETE FROM member_sessions WHERE expires_at < ?1 OR revoked_at < ?1`,
		} {
			res, err := tx.ExecContext(ctx, q, timeArg(before))
			if err != nil {
				return err
			}
			k, _ := res.RowsAffected()
			n += k
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: purge login codes and sessions: %w", err)
	}
	return n, nil
}
