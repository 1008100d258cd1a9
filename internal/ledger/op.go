package ledger

import (
	"crypto/sha256"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"
)

// OpKind names an operation of the write path.
type OpKind string

const (
	OpEarn       OpKind = "earn"
	OpRedeem     OpKind = "redeem"
	OpHold       OpKind = "hold"
	OpCapture    OpKind = "capture"
	OpVoid       OpKind = "void"
	OpCancel     OpKind = "cancel"
	OpAdjust     OpKind = "adjust"
	OpMerge      OpKind = "merge"       // an operator's: FromMemberID moves into MemberID
	OpExpireLots OpKind = "expire_lots" // internal: the expiry run, one member
	OpExpireHold OpKind = "expire_hold" // internal: a hold past its timeout
)

// Actor is who asks for an operation. A non-empty MerchantID (and StoreID)
// confines it to that merchant (and store): a POS key can never move points
// at another merchant.
type Actor struct {
	KeyID      string
	MerchantID string
	StoreID    string
}

// Op is one ledger operation as a caller asks for it. Optional numbers are
// pointers so that "absent" and "zero" stay different.
type Op struct {
	Kind           OpKind `json:"kind"`
	Actor          Actor  `json:"-"`
	IdempotencyKey string `json:"-"`

	MemberID       string `json:"member_id,omitempty"`
	StoreID        string `json:"store_id,omitempty"`
	Receipt        string `json:"receipt,omitempty"`
	PurchaseAmount *int64 `json:"purchase_amount,omitempty"`
	Points         *int64 `json:"points,omitempty"`
	HoldID         string `json:"hold_id,omitempty"`
	HoldSeconds    int64  `json:"hold_seconds,omitempty"`
	TransactionID  string `json:"transaction_id,omitempty"`
	Reason         string `json:"reason,omitempty"`
	FromMemberID   string `json:"from_member_id,omitempty"`

	fp []byte // Fingerprint, computed by Submit on the caller's goroutine
}

// Fingerprint identifies the request behind an idempotency key: the same key
// with another fingerprint is a different request and is refused.
func (op Op) Fingerprint() []byte {
	if op.fp != nil {
		return op.fp
	}
	b, _ := json.Marshal(op) // a struct of strings and ints always marshals
	s := sha256.Sum256(b)
	return s[:]
}

// Result is the outcome of one operation. Body is the JSON answer, stored with
// the idempotency record so a replay answers byte for byte the same.
type Result struct {
	Transaction *Transaction
	Balance     Balance
	Hold        *Hold
	Replayed    bool
	Body        []byte
}

// Response is the JSON shape of a successful operation: the transaction and
// the member's balances right after it.
type Response struct {
	Transaction
	Balance   int64 `json:"balance"`
	Held      int64 `json:"held"`
	Available int64 `json:"available"`
	Hold      *Hold `json:"hold,omitempty"`
}

const (
	maxReceiptLen = 64
	maxReasonLen  = 500
	maxIDLen      = 64
	maxIdemKeyLen = 255
)

// Validate checks what can be checked without the database. Field names are
// those of the JSON API.
func (op *Op) Validate() error {
	if op.IdempotencyKey != "" {
		if len(op.IdempotencyKey) > maxIdemKeyLen || !printable(op.IdempotencyKey) {
			return Invalid("Idempotency-Key", "must be 1 to %d printable ASCII characters, no spaces (a UUID is best)", maxIdemKeyLen)
		}
	}
	needPositive := func(field string, p *int64, max int64) error {
		if p == nil {
			return Invalid(field, "is required")
		}
		if *p < 1 || *p > max {
			return Invalid(field, "must be between 1 and %d", max)
		}
		return nil
	}
	switch op.Kind {
	case OpEarn:
		if err := firstErr(needID("member_id", op.MemberID), needID("store_id", op.StoreID), needReceipt(op.Receipt)); err != nil {
			return err
		}
		if op.PurchaseAmount == nil {
			return Invalid("purchase_amount", "is required")
		}
		if *op.PurchaseAmount < 0 || *op.PurchaseAmount > MaxPurchaseAmount {
			return Invalid("purchase_amount", "must be between 0 and %d", MaxPurchaseAmount)
		}
		if op.Points != nil && (*op.Points < 0 || *op.Points > MaxPoints) {
			return Invalid("points", "must be between 0 and %d", MaxPoints)
		}
	case OpRedeem:
		if err := firstErr(needID("member_id", op.MemberID), needID("store_id", op.StoreID), needReceipt(op.Receipt)); err != nil {
			return err
		}
		return needPositive("points", op.Points, MaxPoints)
	case OpHold:
		if err := firstErr(needID("member_id", op.MemberID), needID("store_id", op.StoreID)); err != nil {
			return err
		}
		if op.HoldSeconds == 0 {
			op.HoldSeconds = DefaultHoldSeconds
		}
		if op.HoldSeconds < 1 || op.HoldSeconds > MaxHoldSeconds {
			return Invalid("expires_in_seconds", "must be between 1 and %d", MaxHoldSeconds)
		}
		return needPositive("points", op.Points, MaxPoints)
	case OpCapture:
		if err := needID("hold_id", op.HoldID); err != nil {
			return err
		}
		if op.Points != nil {
			return needPositive("points", op.Points, MaxPoints)
		}
	case OpVoid, OpExpireHold:
		return needID("hold_id", op.HoldID)
	case OpCancel:
		if err := needID("transaction_id", op.TransactionID); err != nil {
			return err
		}
		if op.Points != nil && op.PurchaseAmount != nil {
			return Invalid("points", "give points or purchase_amount, not both")
		}
		if op.Points != nil {
			return needPositive("points", op.Points, MaxPoints)
		}
		if op.PurchaseAmount != nil {
			return needPositive("purchase_amount", op.PurchaseAmount, MaxPurchaseAmount)
		}
	case OpAdjust:
		if err := needID("member_id", op.MemberID); err != nil {
			return err
		}
		if op.Points == nil {
			return Invalid("points", "is required")
		}
		if *op.Points == 0 || *op.Points > MaxPoints || *op.Points < -MaxPoints {
			return Invalid("points", "must be non-zero and between -%d and %d", MaxPoints, MaxPoints)
		}
		r := strings.TrimSpace(op.Reason)
		if r == "" || len(op.Reason) > maxReasonLen || !utf8.ValidString(op.Reason) {
			return Invalid("reason", "is required, at most %d bytes", maxReasonLen)
		}
	case OpMerge:
		if err := firstErr(needID("member_id", op.MemberID), needID("from_member_id", op.FromMemberID)); err != nil {
			return err
		}
		if op.FromMemberID == op.MemberID {
			return Invalid("from_member_id", "is the member itself: a member cannot be merged into itself")
		}
		r := strings.TrimSpace(op.Reason)
		if r == "" || len(op.Reason) > maxReasonLen || !utf8.ValidString(op.Reason) {
			return Invalid("reason", "is required, at most %d bytes", maxReasonLen)
		}
	case OpExpireLots:
		return needID("member_id", op.MemberID)
	default:
		return Invalid("kind", "unknown operation %q", op.Kind)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func needID(field, v string) error {
	if v == "" {
		return Invalid(field, "is required")
	}
	if len(v) > maxIDLen || !printable(v) {
		return Invalid(field, "is not a valid id: 1 to %d printable ASCII characters, no spaces", maxIDLen)
	}
	return nil
}

func needReceipt(v string) error {
	if v == "" {
		return Invalid("receipt", "is required")
	}
	if len(v) > maxReceiptLen || !printable(v) {
		return Invalid("receipt", "must be 1 to %d printable ASCII characters, no spaces", maxReceiptLen)
	}
	return nil
}

// printable accepts visible ASCII only: ids, receipts and keys end up in
// logs, URLs and unique indexes, where anything else is trouble.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ExpiryAt is when points earned at t with a validity of days expire.
func ExpiryAt(t time.Time, days int) time.Time {
	return MicroTime(t.AddDate(0, 0, days))
}
