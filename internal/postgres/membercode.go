package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pointd/pointd/internal/member"
)

// Member codes (internal/member, code.go): sealed code secrets found by
// their reference, the steps merchants spent and the counts of attempts.

// EnsureMemberCode stores c unless the member has a code.
func (db *DB) EnsureMemberCode(ctx context.Context, c member.MemberCode) (member.MemberCode, error) {
	_, err := db.pool.Exec(ctx, `INSERT INTO member_codes (member_id, ref, secret_enc, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (member_id) DO NOTHING`, c.MemberID, c.Ref, db.phoneKey().SealSecret(c.Secret, c.MemberID), ts(c.CreatedAt))
	if code, constraint := pgCode(err); code == uniqueViolation && constraint == "member_codes_ref_key" {
		return member.MemberCode{}, member.ErrCodeRefTaken
	}
	if err != nil {
		return member.MemberCode{}, fmt.Errorf("store a member code: %w", err)
	}
	return db.memberCode(ctx, `member_id = $1`, c.MemberID)
}

// MemberCodeByRef finds a code by its reference.
func (db *DB) MemberCodeByRef(ctx context.Context, ref int64) (member.MemberCode, error) {
	return db.memberCode(ctx, `ref = $1`, ref)
}

func (db *DB) memberCode(ctx context.Context, where string, arg any) (member.MemberCode, error) {
	var c member.MemberCode
	var sealed []byte
	var created pgtype.Timestamptz
	err := db.pool.QueryRow(ctx, `SELECT member_id, ref, secret_enc, created_at FROM member_codes WHERE `+where, arg).
		Scan(&c.MemberID, &c.Ref, &sealed, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, member.ErrNoMemberCode
	}
	if err != nil {
		return c, fmt.Errorf("member code: %w", err)
	}
	c.CreatedAt = timeOf(created)
	if c.Secret, err = db.phoneKey().OpenSecret(sealed, c.MemberID); err != nil {
		return member.MemberCode{}, fmt.Errorf("member %s: %w", c.MemberID, err)
	}
	return c, nil
}

// TakeCodeAttempts counts an attempt for each subject under the limit, or
// none. The rows are locked in subject order, so concurrent takes (on any
// instance) count one after the other and never deadlock.
func (db *DB) TakeCodeAttempts(ctx context.Context, subjects []string, at time.Time, window time.Duration, max int) (bool, time.Time, error) {
	subjects = slices.Sorted(slices.Values(subjects))
	ok := true
	var retryAt time.Time
	errFull := errors.New("full")
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		for _, s := range subjects {
			if _, err := tx.Exec(ctx, `INSERT INTO member_code_attempts (subject, window_start, attempts) VALUES ($1, $2, 0)
				ON CONFLICT (subject) DO NOTHING`, s, ts(at)); err != nil {
				return err
			}
		}
		for _, s := range subjects {
			var start pgtype.Timestamptz
			var n int
			if err := tx.QueryRow(ctx, `SELECT window_start, attempts FROM member_code_attempts WHERE subject = $1 FOR UPDATE`, s).
				Scan(&start, &n); err != nil {
				return err
			}
			ends := timeOf(start).Add(window)
			var err error
			switch {
			case !at.Before(ends):
				_, err = tx.Exec(ctx, `UPDATE member_code_attempts SET window_start = $2, attempts = 1 WHERE subject = $1`, s, ts(at))
			case n >= max:
				ok = false
				if ends.After(retryAt) {
					retryAt = ends
				}
			default:
				_, err = tx.Exec(ctx, `UPDATE member_code_attempts SET attempts = attempts + 1 WHERE subject = $1`, s)
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
		return false, time.Time{}, fmt.Errorf("count member code attempts: %w", err)
	}
	return true, time.Time{}, nil
}

// ReturnCodeAttempts gives back one attempt of each subject.
func (db *DB) ReturnCodeAttempts(ctx context.Context, subjects []string) error {
	_, err := db.pool.Exec(ctx, `UPDATE member_code_attempts SET attempts = attempts - 1 WHERE subject = ANY($1) AND attempts > 0`, subjects)
	if err != nil {
		return fmt.Errorf("give back member code attempts: %w", err)
	}
	return nil
}

// ClaimCodeStep records the first merchant to spend a code step. The
// INSERT waits for a concurrent one of the same step and then does
// nothing; the SELECT, a statement of its own, sees the winner.
func (db *DB) ClaimCodeStep(ctx context.Context, memberID string, step int64, merchantID string, at time.Time) (string, error) {
	if _, err := db.pool.Exec(ctx, `INSERT INTO member_code_uses (member_id, step, merchant_id, used_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (member_id, step) DO NOTHING`, memberID, step, merchantID, ts(at)); err != nil {
		return "", fmt.Errorf("claim a member code: %w", err)
	}
	var holder string
	if err := db.pool.QueryRow(ctx, `SELECT merchant_id FROM member_code_uses WHERE member_id = $1 AND step = $2`, memberID, step).
		Scan(&holder); err != nil {
		return "", fmt.Errorf("claim a member code: %w", err)
	}
	return holder, nil
}
