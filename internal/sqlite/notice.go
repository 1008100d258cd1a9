package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/notice"
)

// Notices and badges (internal/notice).

var _ notice.Store = (*DB)(nil)

const noticeCols = `id, title, body, image_url, pinned, audience, merchant_id, publish_at, ends_at, ramp_seconds, created_at`

func scanNotice(row interface{ Scan(...any) error }) (notice.Notice, error) {
	var n notice.Notice
	var pinned int64
	var merchant sql.NullString
	var publish, ends, created sql.NullInt64
	err := row.Scan(&n.ID, &n.Title, &n.Body, &n.ImageURL, &pinned, &n.Audience, &merchant, &publish, &ends,
		&n.RampSeconds, &created)
	n.Pinned, n.MerchantID = pinned != 0, merchant.String
	n.PublishAt, n.EndsAt, n.CreatedAt = timeOf(publish), timeOf(ends), timeOf(created)
	return n, err
}

// CreateNotice stores n.
func (db *DB) CreateNotice(ctx context.Context, n notice.Notice) error {
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		if n.MerchantID != "" {
			var k int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM merchants WHERE id = ?`, n.MerchantID).Scan(&k); err != nil {
				return err
			}
			if k == 0 {
				return &ledger.Error{Code: ledger.CodeMerchantNotFound, Field: "merchant_id", Message: fmt.Sprintf("no merchant with id %q", n.MerchantID)}
			}
		}
		pinned := 0
		if n.Pinned {
			pinned = 1
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO notices (`+noticeCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			n.ID, n.Title, n.Body, n.ImageURL, pinned, n.Audience, textArg(n.MerchantID),
			timeArg(n.PublishAt), timeArg(n.EndsAt), n.RampSeconds, timeArg(n.CreatedAt))
		return err
	})
	return conflict(err, "notice", n.ID)
}

// Notice returns the notice id, whatever its state.
func (db *DB) Notice(ctx context.Context, id string) (notice.Notice, error) {
	row, err := db.queryRow(ctx, `SELECT `+noticeCols+` FROM notices WHERE id = ?`, id)
	var n notice.Notice
	if err == nil {
		n, err = scanNotice(row)
	}
	return n, notFound(err, notice.CodeNoticeNotFound, "no notice with id %q", id)
}

// CurrentNotices lists the notices not ended at now.
func (db *DB) CurrentNotices(ctx context.Context, now time.Time, limit int) ([]notice.Notice, error) {
	rows, err := db.query(ctx, `SELECT `+noticeCols+` FROM notices
		WHERE ends_at IS NULL OR ends_at > ? ORDER BY publish_at DESC, id DESC LIMIT ?`, timeArg(now), sqlLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("sqlite: current notices: %w", err)
	}
	defer rows.Close()
	var out []notice.Notice
	for rows.Next() {
		n, err := scanNotice(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: current notices: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func sqlLimit(limit int) int64 {
	if limit <= 0 {
		return -1 // SQLite: no limit
	}
	return int64(limit)
}

// MemberActivity returns the merchants a member has transactions at and
// their active holds.
func (db *DB) MemberActivity(ctx context.Context, memberID string) (notice.Activity, error) {
	a := notice.Activity{Merchants: []string{}, Holds: []notice.Hold{}}
	rows, err := db.query(ctx, `SELECT DISTINCT merchant_id FROM transactions WHERE member_id = ? AND merchant_id <> ''`, memberID)
	if err != nil {
		return a, fmt.Errorf("sqlite: member merchants: %w", err)
	}
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			rows.Close()
			return a, fmt.Errorf("sqlite: member merchants: %w", err)
		}
		a.Merchants = append(a.Merchants, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return a, fmt.Errorf("sqlite: member merchants: %w", err)
	}
	rows, err = db.query(ctx, `SELECT id, points, expires_at FROM holds
		WHERE member_id = ? AND status = 'active' ORDER BY expires_at, id`, memberID)
	if err != nil {
		return a, fmt.Errorf("sqlite: member holds: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var h notice.Hold
		var exp sql.NullInt64
		if err := rows.Scan(&h.ID, &h.Points, &exp); err != nil {
			return a, fmt.Errorf("sqlite: member holds: %w", err)
		}
		h.ExpiresAt = timeOf(exp)
		a.Holds = append(a.Holds, h)
	}
	return a, rows.Err()
}

// BadgesSeen returns when the member last marked their badges seen.
func (db *DB) BadgesSeen(ctx context.Context, memberID string) (time.Time, error) {
	row, err := db.queryRow(ctx, `SELECT seen_at FROM badge_seen WHERE member_id = ?`, memberID)
	if err != nil {
		return time.Time{}, fmt.Errorf("sqlite: badges seen: %w", err)
	}
	var at sql.NullInt64
	switch err := row.Scan(&at); {
	case err == sql.ErrNoRows:
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("sqlite: badges seen: %w", err)
	}
	return timeOf(at), nil
}

// SaveBadgesSeen stores seen times, keeping the later one of each member.
func (db *DB) SaveBadgesSeen(ctx context.Context, seen []notice.Seen) error {
	if len(seen) == 0 {
		return nil
	}
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		for chunk := range chunks(seen, 200) {
			var q strings.Builder
			q.WriteString(`INSERT INTO badge_seen (member_id, seen_at) VALUES `)
			args := make([]any, 0, 2*len(chunk))
			for i, s := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(?, ?)")
				args = append(args, s.MemberID, timeArg(s.At))
			}
			q.WriteString(` ON CONFLICT (member_id) DO UPDATE SET seen_at = max(seen_at, excluded.seen_at)`)
			if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
				return fmt.Errorf("sqlite: save badges seen: %w", err)
			}
		}
		return nil
	})
}

func chunks[T any](s []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}

// textArg stores an empty string as NULL.
func textArg(s string) any {
	if s == "" {
		return nil
	}
	return s
}
