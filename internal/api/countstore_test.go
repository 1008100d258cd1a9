package api

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/notice"
)

// countingStore passes every call to a real store and counts it by method:
// how the read path's tests prove which requests reach the database.
type countingStore struct {
	s interface {
		testStore
		notice.Store
	}
	mu sync.Mutex
	n  map[string]int
}

func (c *countingStore) count(m string) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[m]++
	c.mu.Unlock()
}

// calls returns the counts so far and starts again from zero.
func (c *countingStore) calls() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := maps.Clone(c.n)
	c.n = nil
	if out == nil {
		out = map[string]int{}
	}
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func (c *countingStore) Write(ctx context.Context, fn func(ledger.BatchTx) error) error {
	c.count("Write")
	return c.s.Write(ctx, fn)
}
func (c *countingStore) Merchant(ctx context.Context, id string) (ledger.Merchant, error) {
	c.count("Merchant")
	return c.s.Merchant(ctx, id)
}
func (c *countingStore) StoreInfo(ctx context.Context, id string) (ledger.StoreInfo, error) {
	c.count("StoreInfo")
	return c.s.StoreInfo(ctx, id)
}
func (c *countingStore) Member(ctx context.Context, id string) (ledger.Member, error) {
	c.count("Member")
	return c.s.Member(ctx, id)
}
func (c *countingStore) MemberByCard(ctx context.Context, n string) (ledger.Member, error) {
	c.count("MemberByCard")
	return c.s.MemberByCard(ctx, n)
}
func (c *countingStore) MemberByPhone(ctx context.Context, p string) (ledger.Member, error) {
	c.count("MemberByPhone")
	return c.s.MemberByPhone(ctx, p)
}
func (c *countingStore) Balance(ctx context.Context, id string) (ledger.Balance, error) {
	c.count("Balance")
	return c.s.Balance(ctx, id)
}
func (c *countingStore) Transaction(ctx context.Context, id string) (ledger.Transaction, error) {
	c.count("Transaction")
	return c.s.Transaction(ctx, id)
}
func (c *countingStore) MemberTransactions(ctx context.Context, id string, before int64, limit int) ([]ledger.Transaction, error) {
	c.count("MemberTransactions")
	return c.s.MemberTransactions(ctx, id, before, limit)
}
func (c *countingStore) Hold(ctx context.Context, id string) (ledger.Hold, error) {
	c.count("Hold")
	return c.s.Hold(ctx, id)
}
func (c *countingStore) MemberLots(ctx context.Context, id string) ([]ledger.Lot, error) {
	c.count("MemberLots")
	return c.s.MemberLots(ctx, id)
}
func (c *countingStore) Idempotency(ctx context.Context, scope, key string) (ledger.IdemRecord, bool, error) {
	c.count("Idempotency")
	return c.s.Idempotency(ctx, scope, key)
}
func (c *countingStore) DueLotMembers(ctx context.Context, now time.Time, limit int) ([]string, error) {
	c.count("DueLotMembers")
	return c.s.DueLotMembers(ctx, now, limit)
}
func (c *countingStore) DueHolds(ctx context.Context, now time.Time, limit int) ([]string, error) {
	c.count("DueHolds")
	return c.s.DueHolds(ctx, now, limit)
}
func (c *countingStore) CreateMerchant(ctx context.Context, m *ledger.Merchant) error {
	c.count("CreateMerchant")
	return c.s.CreateMerchant(ctx, m)
}
func (c *countingStore) CreateStore(ctx context.Context, s ledger.Shop) error {
	c.count("CreateStore")
	return c.s.CreateStore(ctx, s)
}
func (c *countingStore) CreateMember(ctx context.Context, m *ledger.Member) error {
	c.count("CreateMember")
	return c.s.CreateMember(ctx, m)
}
func (c *countingStore) Audit() ledger.AuditSource { c.count("Audit"); return c.s.Audit() }
func (c *countingStore) Close() error              { return nil } // the harness closes the real one
func (c *countingStore) CreateKey(ctx context.Context, k auth.Key) error {
	c.count("CreateKey")
	return c.s.CreateKey(ctx, k)
}
func (c *countingStore) KeyByHash(ctx context.Context, h []byte) (auth.Key, error) {
	c.count("KeyByHash")
	return c.s.KeyByHash(ctx, h)
}
func (c *countingStore) CreateNotice(ctx context.Context, n notice.Notice) error {
	c.count("CreateNotice")
	return c.s.CreateNotice(ctx, n)
}
func (c *countingStore) Notice(ctx context.Context, id string) (notice.Notice, error) {
	c.count("Notice")
	return c.s.Notice(ctx, id)
}
func (c *countingStore) CurrentNotices(ctx context.Context, now time.Time, limit int) ([]notice.Notice, error) {
	c.count("CurrentNotices")
	return c.s.CurrentNotices(ctx, now, limit)
}
func (c *countingStore) MemberActivity(ctx context.Context, id string) (notice.Activity, error) {
	c.count("MemberActivity")
	return c.s.MemberActivity(ctx, id)
}
func (c *countingStore) BadgesSeen(ctx context.Context, id string) (time.Time, error) {
	c.count("BadgesSeen")
	return c.s.BadgesSeen(ctx, id)
}
func (c *countingStore) SaveBadgesSeen(ctx context.Context, seen []notice.Seen) error {
	c.count("SaveBadgesSeen")
	return c.s.SaveBadgesSeen(ctx, seen)
}
