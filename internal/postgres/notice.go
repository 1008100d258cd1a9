package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/notice"
)

// Notices and badges (internal/notice).

var _ notice.Store = (*DB)(nil)

const noticeCols = `id, title, body, image_url, pinned, audience, merchant_id, publish_at, ends_at, ramp_seconds, created_at`

func scanNotice(row pgx.Row) (notice.Notice, error) {
	var n notice.Notice
	var merchant pgtype.Text
	var publish, ends, created pgtype.Timestamptz
	var ramp int32
	err := row.Scan(&n.ID, &n.Title, &n.Body, &n.ImageURL, &n.Pinned, &n.Audience, &merchant, &publish, &ends,
		&ramp, &created)
	n.MerchantID, n.RampSeconds = merchant.String, int64(ramp)
	n.PublishAt, n.EndsAt, n.CreatedAt = timeOf(publish), timeOf(ends), timeOf(created)
	return n, err
}

// CreateNotice stores n.
func (db *DB) CreateNotice(ctx context.Context, n notice.Notice) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO notices (`+noticeCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		n.ID, n.Title, n.Body, n.ImageURL, n.Pinned, n.Audience, nullText(n.MerchantID),
		ts(n.PublishAt), ts(n.EndsAt), int32(n.RampSeconds), ts(n.CreatedAt))
	switch code, _ := pgCode(err); code {
	case "":
	case uniqueViolation:
		return &ledger.Error{Code: ledger.CodeConflict, Field: "id", Message: fmt.Sprintf("a notice with id %q already exists", n.ID)}
	case foreignKeyViolation:
		return &ledger.Error{Code: ledger.CodeMerchantNotFound, Field: "merchant_id", Message: fmt.Sprintf("no merchant with id %q", n.MerchantID)}
	}
	if err != nil {
		return fmt.Errorf("create notice %s: %w", n.ID, err)
	}
	return nil
}

// Notice returns the notice id, whatever its state.
func (db *DB) Notice(ctx context.Context, id string) (notice.Notice, error) {
	n, err := scanNotice(db.pool.QueryRow(ctx, `SELECT `+noticeCols+` FROM notices WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return n, ledger.Errorf(notice.CodeNoticeNotFound, "no notice with id %q", id)
	}
	if err != nil {
		return n, fmt.Errorf("notice %s: %w", id, err)
	}
	return n, nil
}

// CurrentNotices lists the notices not ended at now.
func (db *DB) CurrentNotices(ctx context.Context, now time.Time, limit int) ([]notice.Notice, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+noticeCols+` FROM notices
		WHERE ends_at IS NULL OR ends_at > $1 ORDER BY publish_at DESC, id DESC LIMIT $2`, ts(now), limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("current notices: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (notice.Notice, error) { return scanNotice(r) })
	if err != nil {
		return nil, fmt.Errorf("current notices: %w", err)
	}
	return out, nil
}

// MemberActivity returns the merchants a member has transactions at and
// their active holds, in one round trip.
func (db *DB) MemberActivity(ctx context.Context, memberID string) (notice.Activity, error) {
	a := notice.Activity{Merchants: []string{}, Holds: []notice.Hold{}}
	b := &pgx.Batch{}
	b.Queue(`SELECT DISTINCT merchant_id FROM transactions WHERE member_id = $1 AND merchant_id <> ''`, memberID)
	b.Queue(`SELECT id, points, expires_at FROM holds WHERE member_id = $1 AND status = 'active' ORDER BY expires_at, id`, memberID)
	br := db.pool.SendBatch(ctx, b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return a, fmt.Errorf("member merchants: %w", err)
	}
	ms, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return a, fmt.Errorf("member merchants: %w", err)
	}
	a.Merchants = append(a.Merchants, ms...)
	rows, err = br.Query()
	if err != nil {
		return a, fmt.Errorf("member holds: %w", err)
	}
	hs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (notice.Hold, error) {
		var h notice.Hold
		var exp pgtype.Timestamptz
		err := r.Scan(&h.ID, &h.Points, &exp)
		h.ExpiresAt = timeOf(exp)
		return h, err
	})
	if err != nil {
		return a, fmt.Errorf("member holds: %w", err)
	}
	a.Holds = append(a.Holds, hs...)
	return a, nil
}

// BadgesSeen returns when the member last marked their badges seen.
func (db *DB) BadgesSeen(ctx context.Context, memberID string) (time.Time, error) {
	var at pgtype.Timestamptz
	err := db.pool.QueryRow(ctx, `SELECT seen_at FROM badge_seen WHERE member_id = $1`, memberID).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("badges seen: %w", err)
	}
	return timeOf(at), nil
}

// SaveBadgesSeen stores seen times in one statement, keeping the later one
// of each member.
func (db *DB) SaveBadgesSeen(ctx context.Context, seen []notice.Seen) error {
	if len(seen) == 0 {
		return nil
	}
	// One row per member: ON CONFLICT cannot touch a row twice in a statement.
	latest := map[string]time.Time{}
	for _, s := range seen {
		if s.At.After(latest[s.MemberID]) {
			latest[s.MemberID] = s.At
		}
	}
	ids := make([]string, 0, len(latest))
	ats := make([]pgtype.Timestamptz, 0, len(latest))
	for id, at := range latest {
		ids = append(ids, id)
		ats = append(ats, ts(at))
	}
	_, err := db.pool.Exec(ctx, `
		INSERT INTO badge_seen (member_id, seen_at)
		SELECT * FROM unnest($1::text[], $2::timestamptz[])
		ON CONFLICT (member_id) DO UPDATE SET seen_at = greatest(badge_seen.seen_at, excluded.seen_at)`, ids, ats)
	if err != nil {
		return fmt.Errorf("save badges seen: %w", err)
	}
	return nil
}

// nullText stores an empty string as NULL.
func nullText(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }
