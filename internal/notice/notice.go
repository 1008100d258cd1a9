// Package notice is pointd's notices and badges: what operators publish to
// members, which of it a member has not seen yet, and the ramp that spreads
// the rush a new badge causes over minutes instead of one second.
//
// Live notices are few, so every instance holds all of them in memory (a
// Board) and answers lists, single notices and badge counts without asking
// the database; the Board reloads on a publish (here, or on another instance
// through the cache's pub/sub) and periodically.
//
// It imports no SQL and no net/http: the stores implement Store, the HTTP
// layer renders what the Board answers.
package notice

import (
	"context"
	"hash/fnv"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pointd/pointd/internal/ledger"
)

// CodeNoticeNotFound is the error code of an unknown (or not published, or
// ended) notice.
const CodeNoticeNotFound = "notice_not_found"

// Limits on a notice.
const (
	MaxTitle       = 200
	MaxBody        = 20_000
	MaxImageURL    = 2048
	MaxRampSeconds = 24 * 3600
	// MaxCurrent bounds the notices a Board holds (published or scheduled,
	// not ended): far above what a member app shows, small enough to keep
	// in memory on every instance.
	MaxCurrent = 10_000
)

// Audiences.
const (
	AudienceAll      = "all"      // every member
	AudienceMerchant = "merchant" // the members of one merchant
)

// Notice is a message to members.
type Notice struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	Body     string `json:"body"`
	ImageURL string `json:"image_url,omitempty"`
	Pinned   bool   `json:"pinned"`
	Audience string `json:"audience"`
	// MerchantID is set when Audience is "merchant": the notice is for the
	// members who have earned or spent points at that merchant.
	MerchantID  string    `json:"merchant_id,omitempty"`
	PublishAt   time.Time `json:"publish_at"`
	EndsAt      time.Time `json:"ends_at,omitzero"`
	RampSeconds int64     `json:"ramp_seconds"`
	CreatedAt   time.Time `json:"created_at"`
}

// Validate checks a notice as an operator asks for it.
func (n Notice) Validate() error {
	if err := text("title", n.Title, MaxTitle, false); err != nil {
		return err
	}
	if err := text("body", n.Body, MaxBody, true); err != nil {
		return err
	}
	if n.ImageURL != "" {
		u, err := url.Parse(n.ImageURL)
		if err != nil || len(n.ImageURL) > MaxImageURL || u.Scheme != "https" || u.Host == "" || u.User != nil ||
			strings.ContainsAny(n.ImageURL, " \t\r\n") {
			return ledger.Invalid("image_url", "must be an https:// URL of at most %d bytes, without credentials", MaxImageURL)
		}
	}
	switch n.Audience {
	case AudienceAll:
		if n.MerchantID != "" {
			return ledger.Invalid("merchant_id", `is only given with audience "merchant"`)
		}
	case AudienceMerchant:
		if n.MerchantID == "" {
			return ledger.Invalid("merchant_id", `is required with audience "merchant"`)
		}
	default:
		return ledger.Invalid("audience", `must be "all" or "merchant"`)
	}
	if n.RampSeconds < 0 || n.RampSeconds > MaxRampSeconds {
		return ledger.Invalid("ramp_seconds", "must be from 0 to %d", MaxRampSeconds)
	}
	if !n.EndsAt.IsZero() && !n.EndsAt.After(n.PublishAt) {
		return ledger.Invalid("ends_at", "must be after publish_at")
	}
	return nil
}

// text checks a title or body: required, bounded, UTF-8, no control
// characters (a body may have line breaks and tabs).
func text(field, v string, maxLen int, multiline bool) error {
	if strings.TrimSpace(v) == "" || len(v) > maxLen {
		return ledger.Invalid(field, "is required, at most %d bytes", maxLen)
	}
	if !utf8.ValidString(v) {
		return ledger.Invalid(field, "must be valid UTF-8")
	}
	for _, r := range v {
		if multiline && (r == '\n' || r == '\t' || r == '\r') {
			continue
		}
		if r < 0x20 || r == 0x7f {
			return ledger.Invalid(field, "must not contain control characters")
		}
	}
	return nil
}

// Live reports whether n is published and not ended at now.
func (n Notice) Live(now time.Time) bool {
	return !now.Before(n.PublishAt) && (n.EndsAt.IsZero() || now.Before(n.EndsAt))
}

// For reports whether n is meant for a member of the given merchants.
func (n Notice) For(merchants map[string]bool) bool {
	return n.Audience == AudienceAll || merchants[n.MerchantID]
}

// VisibleAt is when n's badge appears for member: publish_at plus a
// deterministic share of the ramp, fnv-1a(member, notice) mod the ramp in
// milliseconds. Members are thus spread evenly over the ramp, each always at
// the same moment (every instance agrees, and reloading the app does not
// move it).
func (n Notice) VisibleAt(memberID string) time.Time {
	if n.RampSeconds <= 0 {
		return n.PublishAt
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(memberID))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(n.ID))
	off := h.Sum64() % uint64(n.RampSeconds*1000)
	return n.PublishAt.Add(time.Duration(off) * time.Millisecond)
}

// Hold is what a badge needs of an active hold.
type Hold struct {
	ID        string    `json:"id"`
	Points    int64     `json:"points"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Activity is what a badge needs of a member beyond notices: the merchants
// they belong to (have a transaction at) and their active holds.
type Activity struct {
	Merchants []string `json:"merchants"`
	Holds     []Hold   `json:"holds"`
}

// Seen is a member's last look at their badges.
type Seen struct {
	MemberID string
	At       time.Time
}

// Store is what notices and badges need from a database.
type Store interface {
	// CreateNotice stores n; an existing id is a ledger.CodeConflict error,
	// an unknown audience merchant a ledger.CodeMerchantNotFound error.
	CreateNotice(ctx context.Context, n Notice) error
	// Notice returns the notice id whatever its state, or a
	// CodeNoticeNotFound error.
	Notice(ctx context.Context, id string) (Notice, error)
	// CurrentNotices lists the notices not ended at now (published or
	// scheduled), at most limit.
	CurrentNotices(ctx context.Context, now time.Time, limit int) ([]Notice, error)
	// MemberActivity returns the member's merchants and active holds.
	MemberActivity(ctx context.Context, memberID string) (Activity, error)
	// BadgesSeen returns when the member last marked their badges seen;
	// the zero time when never.
	BadgesSeen(ctx context.Context, memberID string) (time.Time, error)
	// SaveBadgesSeen stores the latest seen time of each member; an older
	// time never replaces a newer one.
	SaveBadgesSeen(ctx context.Context, seen []Seen) error
}
