// Package backoffice is what operators do besides moving points: change,
// list and suspend merchants, stores and members; list, revoke and rotate
// API keys; and the audit log that records every one of these actions with
// who, what, when, and the before and after of what changed. It defines the
// Store it needs; the SQL adapters (internal/sqlite, internal/postgres)
// implement it. It imports no SQL and no net/http.
package backoffice

import (
	"context"
	"encoding/json"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

// Entry is one line of the audit log.
type Entry struct {
	Seq         int64           `json:"seq"` // the log's order; cursors use it
	ID          string          `json:"id"`
	At          time.Time       `json:"at"`
	ActorKeyID  string          `json:"actor_key_id"`
	ActorPrefix string          `json:"actor_prefix"`
	Action      string          `json:"action"`      // e.g. "merchant.suspend"; see the Action* constants
	TargetType  string          `json:"target_type"` // merchant, store, member, key
	TargetID    string          `json:"target_id"`
	TxnID       string          `json:"txn_id,omitempty"` // the ledger transaction of an adjustment or a merge
	Reason      string          `json:"reason,omitempty"`
	Before      json.RawMessage `json:"before,omitempty"` // the audited fields before the change (none on a create)
	After       json.RawMessage `json:"after,omitempty"`
}

// Actions recorded in the audit log.
const (
	ActionMerchantCreate     = "merchant.create"
	ActionMerchantUpdate     = "merchant.update"
	ActionMerchantSuspend    = "merchant.suspend"
	ActionMerchantReactivate = "merchant.reactivate"
	ActionStoreCreate        = "store.create"
	ActionStoreUpdate        = "store.update"
	ActionStoreSuspend       = "store.suspend"
	ActionStoreReactivate    = "store.reactivate"
	ActionMemberCreate       = "member.create"
	ActionMemberSuspend      = "member.suspend"
	ActionMemberReactivate   = "member.reactivate"
	ActionMemberMerge        = "member.merge"
	ActionExplicitEarn       = "earn.explicit_points"
	ActionKeyCreate          = "key.create"
	ActionKeyRevoke          = "key.revoke"
	ActionKeyRotate          = "key.rotate"
	ActionAdjustment         = "adjustment"
	// ActionMemberRevealPhone records that an admin read a member's whole
	// phone number (GET … ?reveal=phone); every other answer masks it.
	ActionMemberRevealPhone = "member.reveal_phone"
)

// Targets of audit entries.
const (
	TargetMerchant = "merchant"
	TargetStore    = "store"
	TargetMember   = "member"
	TargetKey      = "key"
)

// AuditFilter selects audit entries, newest first.
type AuditFilter struct {
	TargetID   string // "" for any
	ActorKeyID string // "" for any
	BeforeSeq  int64  // 0: from the newest
	Limit      int
}

// Change is an update of one row: it is given the row as stored (read and,
// where the database has row locks, locked inside the update's transaction),
// changes it in place and returns the audit entry to write in the same
// transaction. A nil entry means nothing changes: the store writes nothing.
type Change[T any] func(row *T) (*Entry, error)

// Store is what the back office needs from a database. Updates run in one
// transaction with their audit entry: a change and its record are written
// together or not at all. Lookups of a missing row return an *ledger.Error
// with the matching not-found code.
type Store interface {
	UpdateMerchant(ctx context.Context, id string, change Change[ledger.Merchant]) (ledger.Merchant, error)
	UpdateStore(ctx context.Context, id string, change Change[ledger.Shop]) (ledger.Shop, error)
	// UpdateMemberStatus changes only a member's status (the other fields
	// belong to the member's own API).
	UpdateMemberStatus(ctx context.Context, id string, change Change[ledger.Member]) (ledger.Member, error)

	// ListMerchants lists merchants by id, those after the id after ("" from
	// the first), at most limit.
	ListMerchants(ctx context.Context, after string, limit int) ([]ledger.Merchant, error)
	// ListStores lists a merchant's stores by id, as ListMerchants.
	ListStores(ctx context.Context, merchantID, after string, limit int) ([]ledger.Shop, error)
	// SearchMembers lists by id the members whose name contains name,
	// case-insensitively (ASCII letters on SQLite, Unicode on PostgreSQL).
	SearchMembers(ctx context.Context, name, after string, limit int) ([]ledger.Member, error)

	// ListKeys lists API keys by id (never their secret: there is none
	// stored), as ListMerchants.
	ListKeys(ctx context.Context, after string, limit int) ([]auth.Key, error)
	// Key returns the key with this id, or a ledger.CodeNotFound error.
	Key(ctx context.Context, id string) (auth.Key, error)
	// UpdateKey changes a key's revoked_at, expires_at and name; when add is
	// not nil it is created in the same transaction (a rotation's new key).
	UpdateKey(ctx context.Context, id string, add *auth.Key, change Change[auth.Key]) (auth.Key, error)
	// TouchKeys records when keys were last used: one statement per key, all
	// in one transaction, and never moving a time backwards.
	TouchKeys(ctx context.Context, used map[string]time.Time) error

	// AppendAudit writes e unless an entry with its id exists (a retried
	// request writes its entry once).
	AppendAudit(ctx context.Context, e Entry) error
	// AuditLog lists audit entries newest first.
	AuditLog(ctx context.Context, f AuditFilter) ([]Entry, error)
}
