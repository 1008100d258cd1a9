package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/pointd/pointd/internal/member"
)

// Member codes (internal/member, code.go): sealed code secrets found by
// their reference, the steps merchants spent and the counts of attempts.

// EnsureMemberCode stores c unless the member has a code.
func (db *DB) EnsureMemberCode(ctx context.Context, c member.MemberCode) (member.MemberCode, error) {
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO member_codes (member_id, ref, secret_enc, created_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (member_id) DO NOTHING`, c.MemberID, c.Ref, db.phoneKey().SealSecret(c.Secret, c.MemberID), timeArg(c.CreatedAt))
		return err
	})
	if uniqueViolation(err) == "member_codes.ref" {
		return member.MemberCode{}, member.ErrCodeRefTaken
	}
	if err != nil {
		return member.MemberCode{}, fmt.Errorf("sqlite: store a member code: %w", err)
	}
	return db.memberCode(ctx, `member_id = ?`, c.MemberID)
}

// MemberCodeByRef finds a code by its reference.
func (db *DB) MemberCodeByRef(ctx context.Context, ref int64) (member.MemberCode, error) {
	return db.memberCode(ctx, `ref = ?`, ref)
}

func (db *DB) memberCode(ctx context.Context, where string, arg any) (member.MemberCode, error) {
	var c member.MemberCode
	var sealed []byte
	var created sql.NullInt64
	row, err := db.queryRow(ctx, `SELECT member_id, ref, secret_enc, created_at FROM member_codes WHERE `+where, arg)
	if err == nil {
		err = row.Scan(&c.MemberID, &c.Ref, &sealed, &created)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return c, member.ErrNoMemberCode
	}
	if err != nil {
		return c, fmt.Errorf("sqlite: member code: %w", err)
	}
	c.CreatedAt = timeOf(created)
	if c.Secret, err = db.phoneKey().OpenSecret(sealed, c.MemberID); err != nil {
		return member.MemberCode{}, fmt.Errorf("sqlite: member %s: %w", c.MemberID, err)
	}
	return c, nil
}

// TakeCodeAttempts counts an attempt for each subject under the limit, or
// none.
func (db *DB) TakeCodeAttempts(ctx context.Context, subjects []string, at time.Time, window time.Duration, max int) (bool, time.Time, error) {
	var ok = true
	var retryAt time.Time
	errFull := errors.New("full")
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		for _, s := range subjects {
			var start sql.NullInt64
			var n int
			err := tx.QueryRowContext(ctx, `SELECT window_start, attempts FROM member_code_attempts WHERE subject = ?`, s).Scan(&start, &n)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			ends := timeOf(start).Add(window)
			switch {
			case errors.Is(err, sql.ErrNoRows) || !at.Before(ends):
				_, err = tx.ExecContext(ctx, `INSERT INTO member_code_attempts (subject, window_start, attempts) VALUES (?, ?, 1)
					ON CONFLICT (subject) DO UPDATE SET window_start = excluded.window_start, attempts = 1`, s, timeArg(at))
			case n >= max:
				ok = false
				if ends.After(retryAt) {
					retryAt = ends
				}
				continue
			default:
				_, err = tx.ExecContext(ctx, `UPDATE member_code_attempts SET attempts = attempts + 1 WHERE subject = ?`, s)
			}
			if err != nil {
				return err
			}
		}
		if !ok {
			return errFull // count none
		}
		return nil
	})
	if errors.Is(err, errFull) {
		return false, retryAt, nil
	}
	if err != nil {
		return false, time.Time{}, fmt.Errorf("sqlite: count member code attempts: %w", err)
	}
	return true, time.Time{}, nil
}

// ReturnCodeAttempts gives back one attempt of each subject.
func (db *DB) ReturnCodeAttempts(ctx context.Context, subjects []string) error {
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		for _, s := range subjects {
			if _, err := tx.ExecContext(ctx, `UPDATE member_code_attempts SET attempts = attempts - 1 WHERE subject = ? AND attempts > 0`, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: give back member code attempts: %w", err)
	}
	return nil
}

// ClaimCodeStep records the first merchant to spend a code step.
func (db *DB) ClaimCodeStep(ctx context.Context, memberID string, step int64, merchantID string, at time.Time) (string, error) {
	var holder string
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO member_code_uses (member_id, step, merchant_id, used_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (member_id, step) DO NOTHING`, memberID, step, merchantID, timeArg(at))
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT merchant_id FROM member_code_uses WHERE member_id = ? AND step = ?`, memberID, step).Scan(&holder)
	})
	if err != nil {
		return "", fmt.Errorf("sqlite: claim a member code: %w", err)
	}
	return holder, nil
}
