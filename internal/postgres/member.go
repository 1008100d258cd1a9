package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

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
	err := db.pool.QueryRow(ctx, `SELECT phone_enc FROM members WHERE phone_enc IS NOT NULL LIMIT 1`).Scan(&sample)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("check data key: %w", err)
	}
	if sample != nil {
		if _, err := p.Open(sample); err != nil {
			return errors.New("the data key does not open the phone numbers stored in this database: it is not the key they were sealed with")
		}
	}
	db.phones = p
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, phone FROM members WHERE phone IS NOT NULL FOR UPDATE`)
		if err != nil {
			return err
		}
		type clear struct{ id, phone string }
		todo, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (clear, error) {
			var c clear
			return c, r.Scan(&c.id, &c.phone)
		})
		if err != nil {
			return err
		}
		for _, c := range todo {
			enc, hash := db.sealPhone(c.phone)
			if _, err := tx.Exec(ctx, `UPDATE members SET phone_enc = $1, phone_hash = $2, phone = NULL WHERE id = $3`,
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

// sealPhone returns the sealed phone and its lookup hash, both nil (NULL)
// for no phone.
func (db *DB) sealPhone(phone string) (enc, hash []byte) {
	if phone == "" {
		return nil, nil
	}
	p := db.phoneKey()
	return p.Seal(phone), p.Index(phone)
}

// scanMember reads memberCols and opens the sealed phone.
func (db *DB) scanMember(row pgx.Row) (ledger.Member, error) {
	m, err := scanMember(row)
	if err != nil {
		return m, err
	}
	return m, db.openPhone(&m)
}

// scanMemberForWrite is scanMember for the write path, which never needs
// the number: a tool run without the data key (pointd expire, reconcile)
// must still be able to move points, so a number it cannot open is left out.
func (db *DB) scanMemberForWrite(row pgx.Row) (ledger.Member, error) {
	m, err := scanMember(row)
	if err == nil && db.openPhone(&m) != nil {
		m.Phone = ""
	}
	return m, err
}

func (db *DB) openPhone(m *ledger.Member) error {
	if m.Phone == "" {
		return nil
	}
	b, err := hex.DecodeString(m.Phone)
	if err != nil {
		return fmt.Errorf("member %s: sealed phone: %w", m.ID, err)
	}
	if m.Phone, err = db.phoneKey().Open(b); err != nil {
		return fmt.Errorf("member %s: %w", m.ID, err)
	}
	return nil
}

func tsPtr(t pgtype.Timestamptz) *time.Time {
	if !t.Valid {
		return nil
	}
	v := timeOf(t)
	return &v
}

// Profile returns a member with consents.
func (db *DB) Profile(ctx context.Context, memberID string) (member.Profile, error) {
	var p member.Profile
	var phone pgtype.Text
	var created, consents, withdrawn pgtype.Timestamptz
	err := db.pool.QueryRow(ctx, `SELECT `+memberCols+`, m.marketing_consent, m.analytics_consent,
		m.consents_updated_at, m.withdrawn_at FROM members m WHERE m.id = $1`, memberID,
	).Scan(&p.ID, &p.CardNumber, &phone, &p.Name, &p.Status, &p.AccountID, &created, &p.MergedInto,
		&p.MarketingConsent, &p.AnalyticsConsent, &consents, &withdrawn)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, ledger.Errorf(ledger.CodeMemberNotFound, "no member with id %q", memberID)
	}
	if err != nil {
		return p, fmt.Errorf("member profile: %w", err)
	}
	p.Phone, p.CreatedAt = phone.String, timeOf(created)
	p.ConsentsUpdatedAt, p.WithdrawnAt = tsPtr(consents), tsPtr(withdrawn)
	return p, db.openPhone(&p.Member)
}

// UpdateProfile applies u to an active member.
func (db *DB) UpdateProfile(ctx context.Context, memberID string, u member.ProfileUpdate, at time.Time) (member.Profile, error) {
	tag, err := db.pool.Exec(ctx, `
		UPDATE members SET
			name = coalesce($1, name),
			marketing_consent = coalesce($2, marketing_consent),
			analytics_consent = coalesce($3, analytics_consent),
			consents_updated_at = CASE WHEN $4 THEN $5 ELSE consents_updated_at END
		WHERE id = $6 AND status <> 'withdrawn'`,
		u.Name, u.MarketingConsent, u.AnalyticsConsent,
		u.MarketingConsent != nil || u.AnalyticsConsent != nil, ts(at), memberID)
	if err != nil {
		return member.Profile{}, fmt.Errorf("update member profile: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return member.Profile{}, ledger.Errorf(ledger.CodeMemberNotFound, "no member with id %q", memberID)
	}
	return db.Profile(ctx, memberID)
}

// Withdraw erases a member's personal data and revokes their sessions.
func (db *DB) Withdraw(ctx context.Context, memberID string, at time.Time) error {
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var hash []byte
		err := tx.QueryRow(ctx, `SELECT phone_hash FROM members WHERE id = $1 AND status <> 'withdrawn' FOR UPDATE`, memberID).Scan(&hash)
		if errors.Is(err, pgx.ErrNoRows) {
			return ledger.Errorf(ledger.CodeMemberNotFound, "no member with id %q", memberID)
		}
		if err != nil {
			return fmt.Errorf("withdraw member: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE members SET phone = NULL, phone_enc = NULL, phone_hash = NULL, phone_dup_hash = NULL, name = '',
				marketing_consent = false, analytics_consent = false, status = 'withdrawn', withdrawn_at = $1
			WHERE id = $2`, ts(at), memberID); err != nil {
			return fmt.Errorf("withdraw member: %w", err)
		}
		// The number now finds the oldest member that shared it, if any
		// (its phone_dup_hash), rather than no one.
		if hash != nil {
			if _, err := tx.Exec(ctx, `
				UPDATE members SET phone_hash = phone_dup_hash, phone_dup_hash = NULL
				WHERE id = (SELECT id FROM members WHERE phone_dup_hash = $1 AND status NOT IN ('withdrawn', 'merged')
				            ORDER BY created_at, id LIMIT 1)`, hash); err != nil {
				return fmt.Errorf("withdraw member: %w", err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE member_sessions SET revoked_at = $1 WHERE member_id = $2 AND revoked_at IS NULL`,
			ts(at), memberID)
		return err
	})
}

// CreateOTP stores a login code's hash.
func (db *DB) CreateOTP(ctx context.Context, o member.OTP) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO member_otps (id, phone_hash, code_hash, created_at, expires_at, attempts)
		VALUES ($1, $2, $3, $4, $5, 0)`, o.ID, o.PhoneHash, o.CodeHash, ts(o.CreatedAt), ts(o.ExpiresAt))
	if err != nil {
		return fmt.Errorf("create login code: %w", err)
	}
	return nil
}

// CountOTPs counts the codes of a phone hash since a time.
func (db *DB) CountOTPs(ctx context.Context, phoneHash []byte, since time.Time) (int, time.Time, error) {
	var n int
	var oldest pgtype.Timestamptz
	err := db.pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM member_otps WHERE phone_hash = $1 AND created_at > $2`,
		phoneHash, ts(since)).Scan(&n, &oldest)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("count login codes: %w", err)
	}
	return n, timeOf(oldest), nil
}

// LatestOTP returns the newest code of a phone hash.
func (db *DB) LatestOTP(ctx context.Context, phoneHash []byte) (member.OTP, error) {
	var o member.OTP
	var created, expires, used pgtype.Timestamptz
	err := db.pool.QueryRow(ctx, `SELECT id, phone_hash, code_hash, created_at, expires_at, attempts, used_at
		FROM member_otps WHERE phone_hash = $1 ORDER BY created_at DESC, id DESC LIMIT 1`, phoneHash,
	).Scan(&o.ID, &o.PhoneHash, &o.CodeHash, &created, &expires, &o.Attempts, &used)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, member.ErrNoOTP
	}
	if err != nil {
		return o, fmt.Errorf("login code: %w", err)
	}
	o.CreatedAt, o.ExpiresAt, o.UsedAt = timeOf(created), timeOf(expires), timeOf(used)
	return o, nil
}

// TakeAttempt counts one try against a live code: one atomic update, so
// concurrent guesses cannot all see the count below the limit.
func (db *DB) TakeAttempt(ctx context.Context, id string, at time.Time, maxAttempts int) (bool, error) {
	tag, err := db.pool.Exec(ctx, `UPDATE member_otps SET attempts = attempts + 1
		WHERE id = $1 AND used_at IS NULL AND expires_at > $2 AND attempts < $3`, id, ts(at), maxAttempts)
	if err != nil {
		return false, fmt.Errorf("count a try of a login code: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// UseOTP spends a live code once: the row's update is atomic, so two
// logins racing with one code cannot both see it unused.
func (db *DB) UseOTP(ctx context.Context, id string, at time.Time) (bool, error) {
	tag, err := db.pool.Exec(ctx, `UPDATE member_otps SET used_at = $1
		WHERE id = $2 AND used_at IS NULL AND expires_at > $1`, ts(at), id)
	if err != nil {
		return false, fmt.Errorf("spend a login code: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// CreateSession stores a session (its token's hash).
func (db *DB) CreateSession(ctx context.Context, s member.Session) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO member_sessions (id, hash, prefix, member_id, mode, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, s.ID, s.Hash, s.Prefix, s.MemberID, string(s.Mode), ts(s.CreatedAt), ts(s.ExpiresAt))
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// SessionByHash finds a session by its token's hash.
func (db *DB) SessionByHash(ctx context.Context, hash []byte) (member.Session, error) {
	var s member.Session
	var mode string
	var created, expires, revoked pgtype.Timestamptz
	err := db.pool.QueryRow(ctx, `SELECT id, hash, prefix, member_id, mode, created_at, expires_at, revoked_at
		FROM member_sessions WHERE hash = $1`, hash,
	).Scan(&s.ID, &s.Hash, &s.Prefix, &s.MemberID, &mode, &created, &expires, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, member.ErrNoSession
	}
	if err != nil {
		return s, fmt.Errorf("session: %w", err)
	}
	s.Mode = auth.Mode(mode)
	s.CreatedAt, s.ExpiresAt, s.RevokedAt = timeOf(created), timeOf(expires), timeOf(revoked)
	return s, nil
}

// RevokeSession ends a session.
func (db *DB) RevokeSession(ctx context.Context, id string, at time.Time) error {
	_, err := db.pool.Exec(ctx, `UPDATE member_sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, ts(at), id)
	if err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	return nil
}

// History lists a member's transactions newest first, filtered by type and
// time, through the (member_id, seq) index like MemberTransactions.
func (db *DB) History(ctx context.Context, memberID string, f member.HistoryFilter, beforeSeq int64, limit int) ([]ledger.Transaction, error) {
	if beforeSeq <= 0 {
		beforeSeq = math.MaxInt64
	}
	who, whoArg, err := db.historyOf(ctx, memberID)
	if err != nil {
		return nil, err
	}
	where := []string{who, "t.seq < $2"}
	args := []any{whoArg, beforeSeq}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if len(f.Types) > 0 {
		types := make([]string, len(f.Types))
		for i, t := range f.Types {
			types[i] = string(t)
		}
		where = append(where, "t.type = ANY("+arg(types)+")")
	}
	// A date range is also turned into a range of seq, through the
	// created_at index, so that the walk down the member's (member_id, seq)
	// index starts and stops near the range instead of reading every newer
	// or older row; the created_at conditions keep the answer exact.
	if !f.From.IsZero() {
		where = append(where, "t.created_at >= "+arg(ts(f.From)))
		where = append(where, `t.seq > coalesce((SELECT seq FROM transactions WHERE created_at < `+
			arg(ts(f.From.Add(-member.ClockSkew)))+` ORDER BY created_at DESC, seq DESC LIMIT 1), 0)`)
	}
	if !f.To.IsZero() {
		where = append(where, "t.created_at < "+arg(ts(f.To)))
		where = append(where, `t.seq < coalesce((SELECT seq FROM transactions WHERE created_at >= `+
			arg(ts(f.To.Add(member.ClockSkew)))+` ORDER BY created_at, seq LIMIT 1), 9223372036854775807)`)
	}
	lim := arg(limitArg(limit))
	txns, err := list(ctx, db.pool, scanTxn,
		`SELECT `+txnCols+` FROM `+txnFrom+`
		WHERE `+strings.Join(where, " AND ")+`
		ORDER BY t.seq DESC
		LIMIT `+lim, args...)
	if err != nil {
		return nil, fmt.Errorf("member history: %w", err)
	}
	return txns, nil
}

// Purge deletes old login codes and dead sessions.
func (db *DB) Purge(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		for _, q := range []string{
			`DELETE FROM member_otps WHERE created_at < $1`,
			`DELETE FROM member_sessions WHERE expires_at < $1 OR revoked_at < $1`,
		} {
			tag, err := tx.Exec(ctx, q, ts(before))
			if err != nil {
				return err
			}
			n += tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("purge login codes and sessions: %w", err)
	}
	return n, nil
}
