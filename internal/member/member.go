// Package member is the member's own side of pointd: logging in with a phone
// number and a one-time code, sessions, the profile with its consents, and
// withdrawal. It imports no SQL and no net/http: the stores implement Store,
// the HTTP layer calls Service.
package member

import (
	"context"
	"errors"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

// Status of a member who has withdrawn: personal data erased, card
// disabled, points frozen (see docs/guarantees.md).
const StatusWithdrawn = ledger.StatusWithdrawn

// Profile is a member with what only the member (and operators) see.
type Profile struct {
	ledger.Member
	MarketingConsent  bool       `json:"marketing_consent"`
	AnalyticsConsent  bool       `json:"analytics_consent"`
	ConsentsUpdatedAt *time.Time `json:"consents_updated_at,omitempty"`
	WithdrawnAt       *time.Time `json:"withdrawn_at,omitempty"`
}

// ProfileUpdate changes what is set, leaves nil fields as they are.
type ProfileUpdate struct {
	Name             *string
	MarketingConsent *bool
	AnalyticsConsent *bool
}

// OTP is a one-time login code as stored: its keyed hash, never the code.
type OTP struct {
	ID        string
	PhoneHash []byte
	CodeHash  []byte
	CreatedAt time.Time
	ExpiresAt time.Time
	Attempts  int
	UsedAt    time.Time // zero while unused
}

// Session is a member's logged-in session as stored: the SHA-256 of its
// token, never the token.
type Session struct {
	ID        string
	Prefix    string // shown in logs: "pd_ses_live_AbCd"
	Hash      []byte
	MemberID  string
	Mode      auth.Mode
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt time.Time // zero while it works
}

// Errors the stores return for missing rows.
var (
	ErrNoOTP     = errors.New("no login code for this phone")
	ErrNoSession = errors.New("no such session")
)

// HistoryFilter narrows a member's history: by transaction types (none: all)
// and by creation time, From inclusive, To exclusive (zero: open).
type HistoryFilter struct {
	Types []ledger.TxType
	From  time.Time
	To    time.Time
}

// ClockSkew is how far out of order, at most, the creation times of
// transactions may be compared with their seq (several writers' clocks): a
// history's date range is widened by it when it is turned into a range of
// seq, and then cut exactly by the times.
const ClockSkew = time.Minute

// Store is what the member side needs from a database.
type Store interface {
	Profile(ctx context.Context, memberID string) (Profile, error)
	// UpdateProfile applies u and returns the profile after it; a
	// withdrawn member is not found.
	UpdateProfile(ctx context.Context, memberID string, u ProfileUpdate, at time.Time) (Profile, error)
	// Withdraw erases the member's phone and name, sets the status to
	// withdrawn and revokes every session of theirs, in one transaction.
	// The account, its balance, lots and ledger entries stay as they are.
	Withdraw(ctx context.Context, memberID string, at time.Time) error

	CreateOTP(ctx context.Context, o OTP) error
	// CountOTPs counts the codes issued for a phone hash since a time and
	// returns the time of the oldest of them.
	CountOTPs(ctx context.Context, phoneHash []byte, since time.Time) (n int, oldest time.Time, err error)
	// LatestOTP returns the newest code for a phone hash, ErrNoOTP if none.
	LatestOTP(ctx context.Context, phoneHash []byte) (OTP, error)
	// TakeAttempt counts one try against a code that is unused, unexpired
	// at at and has had fewer than maxAttempts tries, and reports whether
	// it did. A try is taken before the code is compared, in one atomic
	// update: a flood of concurrent guesses gets maxAttempts comparisons,
	// not one per request.
	TakeAttempt(ctx context.Context, id string, at time.Time, maxAttempts int) (bool, error)
	// UseOTP spends a code that is unused and unexpired at at; it reports
	// whether it did. Two concurrent logins with one code cannot both.
	UseOTP(ctx context.Context, id string, at time.Time) (bool, error)

	CreateSession(ctx context.Context, s Session) error
	// SessionByHash returns the session with a token hash, ErrNoSession if none.
	SessionByHash(ctx context.Context, hash []byte) (Session, error)
	RevokeSession(ctx context.Context, id string, at time.Time) error

	// Purge deletes login codes created before a time and sessions that
	// expired or were revoked before it, and says how many rows went.
	Purge(ctx context.Context, before time.Time) (int64, error)

	// History lists a member's transactions newest first that match f,
	// with Seq below beforeSeq (all when 0), at most limit.
	History(ctx context.Context, memberID string, f HistoryFilter, beforeSeq int64, limit int) ([]ledger.Transaction, error)
}

// PhoneRekey says what re-keying members' phone numbers to E.164 did.
type PhoneRekey struct {
	// AlreadyDone: an earlier run did it, and nothing was changed now.
	AlreadyDone bool
	// Read numbers were opened; Changed of them were stored in another
	// form before.
	Read, Changed int
	// Unparsed are the members whose number the normaliser refused: kept
	// as they were (Phone is the number, for a masked log line).
	Unparsed []ledger.Member
	// Duplicates are the members whose number an older member turned out
	// to have: they keep their number, it finds the older one, and
	// PhoneDuplicates lists them until an operator merges them.
	Duplicates []ledger.Member
}

// PhoneRekeyer is what a store offers for numbers stored in an older
// normalisation.
type PhoneRekeyer interface {
	// NormalizePhones re-seals and re-hashes every member's number in the
	// form normalize returns, once: it records that it ran, and a second
	// call (or one that lost a race with another process) changes nothing
	// and reports AlreadyDone. The store must have its data key.
	NormalizePhones(ctx context.Context, normalize func(string) (string, error)) (PhoneRekey, error)
	// PhoneDuplicates lists the groups of members (neither withdrawn nor
	// merged) that share one number, each oldest first: the first is the
	// one the number finds. normalized says whether NormalizePhones has
	// run on this database; before it, no group is known.
	PhoneDuplicates(ctx context.Context) (groups [][]ledger.Member, normalized bool, err error)
}
