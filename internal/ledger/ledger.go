// Package ledger is pointd's domain: members, merchants and their stores, the
// double-entry points ledger (transactions, postings, lots and holds), the
// operations that move points, the batched writer that applies them and the
// audit that proves the books are sound. It knows nothing of SQL or HTTP: the
// storage adapters implement Store, the HTTP adapter calls Writer and Store.
package ledger

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/pointd/pointd/internal/privacy"
)

// Platform accounts exist from the first migration with these fixed ids, so
// every store dialect agrees on them and the audit can name them.
const (
	AccountExpired     int64 = 1 // receives what expiry takes from members
	AccountAdjustments int64 = 2 // counterpart of operator adjustments
)

// Limits on amounts: far beyond any real purchase, small enough that no
// product of two of them overflows the arithmetic used for rounding.
const (
	MaxPoints          int64 = 1_000_000_000
	MaxPurchaseAmount  int64 = 1_000_000_000_000
	MaxEarnRateBP      int64 = 10_000
	MaxValidityDays          = 36_500
	MaxHoldSeconds           = 7 * 24 * 3600
	DefaultHoldSeconds       = 15 * 60
	// DefaultAdjustmentValidityDays is the life of points an operator grants
	// by adjustment.
	DefaultAdjustmentValidityDays = 365
)

// TxType names a ledger transaction's kind.
type TxType string

const (
	TxEarn         TxType = "earn"
	TxRedeem       TxType = "redeem" // also what a captured hold posts
	TxHold         TxType = "hold"   // no postings: reserves points
	TxHoldVoid     TxType = "hold_void"
	TxHoldExpire   TxType = "hold_expire"
	TxCancelEarn   TxType = "cancel_earn"
	TxCancelRedeem TxType = "cancel_redeem"
	TxExpire       TxType = "expire"
	TxAdjust       TxType = "adjust"
	// TxMerge moves a member (RefID) into another (MemberID): Points is the
	// signed balance moved, posted out of the one and into the other.
	TxMerge TxType = "merge"
)

// Posting moves Amount points into (positive) or out of (negative) an account.
// The postings of one transaction always sum to zero.
type Posting struct {
	AccountID int64 `json:"account_id"`
	Amount    int64 `json:"amount"`
}

// Transaction is one entry of the ledger. Its content (everything but the
// Cancelled* counters) is covered by Hash, chained to the previous entry.
type Transaction struct {
	ID             string    `json:"id"`
	Seq            int64     `json:"seq"`
	Type           TxType    `json:"type"`
	MemberID       string    `json:"member_id"`
	MerchantID     string    `json:"merchant_id,omitempty"`
	StoreID        string    `json:"store_id,omitempty"`
	Receipt        string    `json:"receipt,omitempty"`
	PurchaseAmount int64     `json:"purchase_amount,omitempty"`
	Points         int64     `json:"points"`
	RefID          string    `json:"ref_id,omitempty"` // cancelled txn, captured/voided hold
	Reason         string    `json:"reason,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	// RestoreExpiresAt is, on a redeem, the latest expiry of the lots it
	// consumed: points given back by cancelling it expire then.
	RestoreExpiresAt time.Time `json:"-"`
	Postings         []Posting `json:"postings,omitempty"`
	PrevHash         []byte    `json:"-"`
	Hash             []byte    `json:"-"`

	// Mutable counters of what later cancellations took back.
	CancelledPoints int64 `json:"cancelled_points,omitempty"`
	CancelledAmount int64 `json:"cancelled_amount,omitempty"`
}

// Lot is a parcel of earned points with one expiry date. A member's lots sum
// to their balance when it is positive, to zero when it is not. A lot's id is
// the id of the transaction that created it.
type Lot struct {
	ID        string
	MemberID  string
	Points    int64
	Remaining int64
	ExpiresAt time.Time
	// MerchantID is the merchant of the earn that made the lot, filled in
	// by Store.MemberLots only (what a pos key may see of a member's lots
	// depends on it); the writer's own reads leave it empty.
	MerchantID string
}

// HoldStatus is the life cycle of a hold.
type HoldStatus string

const (
	HoldActive   HoldStatus = "active"
	HoldCaptured HoldStatus = "captured"
	HoldVoided   HoldStatus = "voided"
	HoldExpired  HoldStatus = "expired"
)

// Hold reserves points of a member at a store until it is captured, voided or
// expires. Its id is the id of the hold transaction.
type Hold struct {
	ID         string     `json:"id"`
	MemberID   string     `json:"member_id"`
	MerchantID string     `json:"merchant_id"`
	StoreID    string     `json:"store_id"`
	Points     int64      `json:"points"`
	Status     HoldStatus `json:"status"`
	ExpiresAt  time.Time  `json:"expires_at"`
	CreatedAt  time.Time  `json:"created_at"`
}

// Account is a balance in the double-entry ledger. Held is only used on
// member accounts: points reserved by active holds, not yet posted.
type Account struct {
	ID      int64
	Balance int64
	Held    int64
}

// Merchant issues points at its stores and accepts them as a discount.
type Merchant struct {
	ID                string `json:"id"`
	Name              string `json:"name"`
	EarnRateBP        int64  `json:"earn_rate_bp"`
	PointValidityDays int    `json:"point_validity_days"`
	Status            string `json:"status"`
	// MaxExplicitPoints caps the points a merchant's own keys may name on an
	// earn instead of earning by the rate: an earn's explicit points are an
	// adjustment in all but name, so by default (0) they may not.
	MaxExplicitPoints int64 `json:"max_explicit_points"`
	// RequireMemberCode: redemptions and holds at the merchant's stores
	// name the member only by a member code (the member at the till).
	RequireMemberCode bool      `json:"require_member_code"`
	IssuedAccount     int64     `json:"-"`
	RedeemedAccount   int64     `json:"-"`
	CreatedAt         time.Time `json:"created_at"`
}

// Shop is one store of a merchant, where terminals earn and redeem. (The API
// calls it a store; here Store is the database interface.)
type Shop struct {
	ID         string    `json:"id"`
	MerchantID string    `json:"merchant_id"`
	Name       string    `json:"name"`
	Status     string    `json:"status"` // active or suspended
	CreatedAt  time.Time `json:"created_at"`
}

// StoreInfo is a store with what the ledger needs of its merchant.
type StoreInfo struct {
	Shop
	Merchant Merchant
}

// Statuses of merchants, stores and members: a suspended one takes part in
// no new earn, redemption or hold (see docs/api.md, "Suspension").
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
	// StatusWithdrawn is a member who left: personal data erased, no new
	// operations, and final (an operator cannot reactivate it).
	StatusWithdrawn = "withdrawn"
	// StatusMerged is a member an operator found to be the same person as
	// another and moved into it (Member.MergedInto): final, no operations,
	// no login; its card number finds the member it went into.
	StatusMerged = "merged"
)

// Member collects and spends points.
type Member struct {
	ID         string `json:"id"`
	CardNumber string `json:"card_number"`
	Phone      string `json:"phone,omitempty"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	// MergedInto is, on a merged member, the member it went into: always
	// one that is not merged itself (a merge re-points the members merged
	// into the one it merges).
	MergedInto string    `json:"merged_into,omitempty"`
	AccountID  int64     `json:"-"`
	CreatedAt  time.Time `json:"created_at"`
}

// MarshalJSON encodes a member with its phone masked (privacy.Mask),
// wherever the member sits in what is encoded: an answer cannot carry a
// whole number because a handler forgot to mask it. What must show the
// whole number (an admin's audited reveal) converts the member to a type
// of its own, which has no such method.
func (m Member) MarshalJSON() ([]byte, error) {
	type plain Member
	p := plain(m)
	if p.Phone != "" && !strings.Contains(p.Phone, "*") { // masked once already
		p.Phone = privacy.Mask(p.Phone)
	}
	return json.Marshal(p)
}

// Balance is what a member has: Balance counts posted points, Held the points
// reserved by active holds, Available what can be spent now.
type Balance struct {
	MemberID  string `json:"member_id"`
	Balance   int64  `json:"balance"`
	Held      int64  `json:"held"`
	Available int64  `json:"available"`
}

// NewBalance builds a Balance from an account.
func NewBalance(memberID string, a Account) Balance {
	return Balance{MemberID: memberID, Balance: a.Balance, Held: a.Held, Available: a.Balance - a.Held}
}

// MicroTime truncates t to the microsecond in UTC: the precision every store
// keeps, so a time read back hashes the same as the time written.
func MicroTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
