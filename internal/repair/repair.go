// Package repair is the on-call engineer's tooling after an incident: it
// lists what the ledger did in a time window (pointd incident), compares the
// ledger with the point-of-sale's own record of purchases (pointd reconcile),
// proposes corrections as a file an operator reviews, and applies that file
// through the ledger's Writer, so that every correction is an audited ledger
// transaction and applying the same file twice changes nothing.
//
// It reads the database through Source, a few streaming queries that the
// storage adapters implement beside ledger.Store, and writes only through a
// *ledger.Writer: never by editing rows.
package repair

import (
	"context"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// Source is what repair reads. The SQLite and PostgreSQL stores implement
// it; their ledger.Store methods provide the first four.
type Source interface {
	StoreInfo(ctx context.Context, id string) (ledger.StoreInfo, error)
	Member(ctx context.Context, id string) (ledger.Member, error)
	MemberByCard(ctx context.Context, cardNumber string) (ledger.Member, error)
	Balance(ctx context.Context, memberID string) (ledger.Balance, error)

	// TransactionsCreated calls fn for every transaction w selects, in
	// CreatedAt order (ties by Seq), without postings. It streams: it never
	// holds more than a row, so a window may hold millions.
	TransactionsCreated(ctx context.Context, w Window, fn func(Entry) error) error
	// EarnByReceipt returns the earn of a purchase, if there is one (there
	// is at most one).
	EarnByReceipt(ctx context.Context, rk ledger.ReceiptKey) (ledger.Transaction, bool, error)
	// MemberBalanceAfter is the member's balance right after the
	// transaction numbered seq: the sum of the member's postings up to it.
	MemberBalanceAfter(ctx context.Context, memberID string, seq int64) (int64, error)
	// AdjustmentsWithReason calls fn for every adjust transaction whose
	// reason starts with prefix, in Seq order, without postings.
	AdjustmentsWithReason(ctx context.Context, prefix string, fn func(ledger.Transaction) error) error
}

// Window selects transactions by creation time: CreatedAt in [From, To).
// StoreID and Type, when set, narrow it; MaxSeq, when above zero, leaves out
// transactions numbered after it (a second pass over a window then sees
// exactly what the first saw, even while the ledger grows).
type Window struct {
	From, To time.Time
	StoreID  string
	Type     ledger.TxType
	MaxSeq   int64
}

// Entry is a transaction of a window with what the incident report needs to
// know about what it refers to, read in the same query.
type Entry struct {
	ledger.Transaction
	// RefType and RefCreatedAt describe the transaction RefID names (the
	// cancelled earn or redemption, or the hold); RefType is empty when
	// RefID is empty or names no transaction.
	RefType      ledger.TxType
	RefCreatedAt time.Time
	// HoldStatus and HoldExpiresAt are, on a hold transaction, the hold's
	// status now and when it expires (or expired).
	HoldStatus    ledger.HoldStatus
	HoldExpiresAt time.Time
}

// Scope is the idempotency scope of every correction repair applies: the
// key id of the Actor it submits as.
const Scope = "reconcile"

// Actor is who applies corrections: no merchant, so it may act at any store.
var Actor = ledger.Actor{KeyID: Scope}
