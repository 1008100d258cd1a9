package ledger

import (
	"context"
	"time"
)

// Store is what the ledger needs from a database. Each dialect (SQLite,
// PostgreSQL) implements it, and one conformance suite holds them to it.
// Lookups of a missing row return an *Error with the matching not-found code.
type Store interface {
	// Write runs fn inside one write transaction and commits if fn returns
	// nil. Only the batched Writer calls it, so at most one runs per process.
	Write(ctx context.Context, fn func(BatchTx) error) error

	Merchant(ctx context.Context, id string) (Merchant, error)
	StoreInfo(ctx context.Context, id string) (StoreInfo, error)
	Member(ctx context.Context, id string) (Member, error)
	MemberByCard(ctx context.Context, cardNumber string) (Member, error)
	MemberByPhone(ctx context.Context, phone string) (Member, error)
	Balance(ctx context.Context, memberID string) (Balance, error)
	Transaction(ctx context.Context, id string) (Transaction, error)
	// MemberTransactions lists a member's transactions newest first, those
	// with Seq below beforeSeq (all when beforeSeq is 0), at most limit.
	MemberTransactions(ctx context.Context, memberID string, beforeSeq int64, limit int) ([]Transaction, error)
	Hold(ctx context.Context, id string) (Hold, error)
	// MemberLots lists a member's lots with points remaining, earliest
	// expiry first, each with the merchant of the earn that made it.
	MemberLots(ctx context.Context, memberID string) ([]Lot, error)
	Idempotency(ctx context.Context, scope, key string) (IdemRecord, bool, error)

	// DueLotMembers lists members that have lots with points remaining that
	// expire at or before now, leaving out those whose points are all held
	// (nothing of theirs can expire while the holds last). A limit of 0 or
	// less means no limit, here and in the other listing methods.
	DueLotMembers(ctx context.Context, now time.Time, limit int) ([]string, error)
	// DueHolds lists active holds that expire at or before now.
	DueHolds(ctx context.Context, now time.Time, limit int) ([]string, error)

	// CreateMerchant stores m and creates its two accounts, filling in
	// IssuedAccount and RedeemedAccount.
	CreateMerchant(ctx context.Context, m *Merchant) error
	CreateStore(ctx context.Context, s Shop) error
	// CreateMember stores m and creates its account, filling in AccountID.
	// A card number or phone already taken is a CodeConflict error whose
	// Field names it.
	CreateMember(ctx context.Context, m *Member) error

	Audit() AuditSource
	Close() error
}

// BatchTx is one write transaction of the batched writer. Loads of rows that
// will change lock them (where the database has row locks) so that several
// pointd instances on one database serialise correctly; accounts are locked
// in id order so two writers can never deadlock.
type BatchTx interface {
	// Head locks and returns the end of the hash chain.
	Head(ctx context.Context) (seq int64, hash []byte, err error)
	Idempotency(ctx context.Context, keys []IdemKey) (map[IdemKey]IdemRecord, error)
	Transactions(ctx context.Context, ids []string) (map[string]Transaction, error)
	Holds(ctx context.Context, ids []string) (map[string]Hold, error)
	Members(ctx context.Context, ids []string) (map[string]Member, error)
	Stores(ctx context.Context, ids []string) (map[string]StoreInfo, error)
	// EarnedReceipts returns, of the given receipts, those an earn already
	// used, with the id of that earn.
	EarnedReceipts(ctx context.Context, receipts []ReceiptKey) (map[ReceiptKey]string, error)
	// Accounts locks the accounts in id order and returns them.
	Accounts(ctx context.Context, ids []int64) (map[int64]Account, error)
	// Lots returns the lots with points remaining of the given members,
	// each member's earliest expiry first (ties by id).
	Lots(ctx context.Context, memberIDs []string) (map[string][]Lot, error)
	// Apply writes everything a batch changed.
	Apply(ctx context.Context, w *WriteSet) error
}

// Prefetcher is a BatchTx that can load, in one round trip, everything a
// batch's operations name directly, with the chain head lock first. The
// engine calls Prefetch before any other load; the loads are then answered
// from what was prefetched and query only what is missing (the members and
// stores of cancelled transactions and captured holds). A store whose round
// trips are cheap (SQLite) need not implement it.
type Prefetcher interface {
	Prefetch(ctx context.Context, p Prefetch) error
}

// Prefetch names what a batch's operations refer to directly.
type Prefetch struct {
	IdemKeys       []IdemKey
	TransactionIDs []string
	HoldIDs        []string
	MemberIDs      []string
	StoreIDs       []string
	// Receipts of earns, by store and receipt (MerchantID left empty: the
	// store says whose it is).
	Receipts []ReceiptKey
	// LotMemberIDs are the members whose lots the batch will need.
	LotMemberIDs []string
}

// IdemKey identifies an idempotency record: the caller's scope (its API key)
// and the key it sent.
type IdemKey struct {
	Scope string
	Key   string
}

// IdemRecord is the stored outcome of an idempotent request: written in the
// same database transaction as the ledger transaction it produced.
type IdemRecord struct {
	IdemKey
	RequestHash []byte
	TxnID       string
	Response    []byte
	CreatedAt   time.Time
}

// ReceiptKey is a purchase as the POS knows it.
type ReceiptKey struct {
	MerchantID string
	StoreID    string
	Receipt    string
}

// AccountChange is what a batch adds to an account: the summed deltas of all
// its operations, applied once (in id order).
type AccountChange struct {
	ID           int64
	BalanceDelta int64
	HeldDelta    int64
}

// CancelCounters is the new value of an original transaction's counters.
type CancelCounters struct {
	ID              string
	CancelledPoints int64
	CancelledAmount int64
}

// MemberMerge is a member that a merge moved into another: the store marks
// From merged into Into, re-points the members merged into From to Into and
// revokes From's sessions (At is when).
type MemberMerge struct {
	From string
	Into string
	At   time.Time
}

// WriteSet is everything one batch changes, in the order stores should write
// it. Slices are sorted by id where the order matters for locking.
type WriteSet struct {
	// Transactions in Seq order, each with its postings in increasing
	// account order (the order ChainHash covers and stores return).
	Transactions []Transaction
	Accounts     []AccountChange
	NewLots      []Lot
	LotUpdates   []Lot // existing lots: new Remaining
	NewHolds     []Hold
	HoldUpdates  []Hold // existing holds: new Status
	Cancels      []CancelCounters
	// LotMoves are existing lots that a merge gave to another member: the
	// new MemberID (after NewLots and LotUpdates are written).
	LotMoves []Lot
	// Merges mark members merged, in the order the batch merged them.
	Merges      []MemberMerge
	Idempotency []IdemRecord
	HeadSeq     int64
	HeadHash    []byte
}

// AuditSource streams what the audit reads. Each scan sees one consistent
// snapshot where the database offers one.
type AuditSource interface {
	// Transactions calls fn for every transaction in Seq order, with postings.
	Transactions(ctx context.Context, fn func(Transaction) error) error
	// Accounts calls fn for every account; memberID is set on member accounts.
	Accounts(ctx context.Context, fn func(a Account, memberID string) error) error
	// Lots calls fn for every lot.
	Lots(ctx context.Context, fn func(Lot) error) error
	// Holds calls fn for every hold.
	Holds(ctx context.Context, fn func(Hold) error) error
	// OrphanIdempotency lists idempotency records whose transaction is missing.
	OrphanIdempotency(ctx context.Context) ([]IdemKey, error)
	// Head returns the stored end of the hash chain.
	Head(ctx context.Context) (seq int64, hash []byte, err error)
}
