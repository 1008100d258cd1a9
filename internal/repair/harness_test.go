package repair_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/postgres"
	"github.com/pointd/pointd/internal/postgres/pgtest"
	"github.com/pointd/pointd/internal/repair"
	"github.com/pointd/pointd/internal/sqlite"
	"github.com/pointd/pointd/internal/storetest"
)

// db is what the tests need of a store: the ledger and repair's reads.
type db interface {
	ledger.Store
	repair.Source
}

// onEachStore runs fn as a subtest on a fresh SQLite file and on a fresh
// PostgreSQL schema (which fails, not skips, when PostgreSQL is missing).
func onEachStore(t *testing.T, fn func(t *testing.T, w *world)) {
	t.Run("SQLite", func(t *testing.T) {
		d, err := sqlite.Open(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		fn(t, newWorld(t, d))
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		d, err := postgres.Open(context.Background(), pgtest.DSN(t), 4)
		if err != nil {
			t.Fatal(err)
		}
		fn(t, newWorld(t, d))
	})
}

// world is one test's ledger: a store, a writer on a fake clock, a merchant
// earning 5 % at one store, and members.
type world struct {
	t        *testing.T
	ctx      context.Context
	db       db
	w        *ledger.Writer
	clock    *storetest.Clock
	merchant ledger.Merchant
	shop     ledger.Shop
}

// base is where the clock starts.
var base = time.Date(2026, time.March, 2, 9, 0, 0, 0, time.UTC)

func newWorld(t *testing.T, d db) *world {
	t.Helper()
	w := &world{t: t, ctx: context.Background(), db: d, clock: storetest.NewClock(base)}
	t.Cleanup(func() { d.Close() })
	w.w = ledger.NewWriter(d, ledger.WriterConfig{Now: w.clock.Now})
	t.Cleanup(w.w.Close)
	w.merchant = ledger.Merchant{ID: ledger.NewID(), Name: "Daiso-like", EarnRateBP: 500, PointValidityDays: 365,
		Status: "active", CreatedAt: base}
	must(t, d.CreateMerchant(w.ctx, &w.merchant))
	w.shop = w.newShop()
	return w
}

func (w *world) newShop() ledger.Shop {
	s := ledger.Shop{ID: ledger.NewID(), MerchantID: w.merchant.ID, Name: "store", CreatedAt: base}
	must(w.t, w.db.CreateStore(w.ctx, s))
	return s
}

func (w *world) member(name string) ledger.Member {
	w.t.Helper()
	m := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Name: name, Status: "active", CreatedAt: base}
	must(w.t, w.db.CreateMember(w.ctx, &m))
	return m
}

// at moves the clock to base+d: what the writer commits next is created then.
func (w *world) at(d time.Duration) {
	w.t.Helper()
	now := w.clock.Now()
	if target := base.Add(d); target.After(now) {
		w.clock.Advance(target.Sub(now))
	} else if target.Before(now) {
		w.t.Fatalf("the clock cannot go back from %s to %s", now, target)
	}
}

var keyN atomic.Int64

func (w *world) do(op ledger.Op) ledger.Transaction {
	w.t.Helper()
	op.Actor = ledger.Actor{KeyID: "test-admin"}
	op.IdempotencyKey = fmt.Sprintf("k-%d", keyN.Add(1))
	res, err := w.w.Submit(w.ctx, op)
	if err != nil {
		w.t.Fatalf("%s: %v", op.Kind, err)
	}
	if res.Transaction == nil {
		w.t.Fatalf("%s: no transaction", op.Kind)
	}
	return *res.Transaction
}

func (w *world) earn(m ledger.Member, receipt string, amount int64) ledger.Transaction {
	w.t.Helper()
	return w.do(ledger.Op{Kind: ledger.OpEarn, MemberID: m.ID, StoreID: w.shop.ID, Receipt: receipt, PurchaseAmount: &amount})
}

func (w *world) balance(m ledger.Member) int64 {
	w.t.Helper()
	b, err := w.db.Balance(w.ctx, m.ID)
	must(w.t, err)
	return b.Balance
}

func (w *world) head() int64 {
	w.t.Helper()
	seq, _, err := w.db.Audit().Head(w.ctx)
	must(w.t, err)
	return seq
}

func (w *world) mustBeSound() {
	w.t.Helper()
	rep, err := ledger.VerifyStore(w.ctx, w.db)
	must(w.t, err)
	for _, d := range rep.Discrepancies {
		w.t.Errorf("verify: %s: %s", d.Kind, d.Detail)
	}
	if !rep.Sound() {
		w.t.Fatal("the ledger is not sound")
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func p64(v int64) *int64 { return &v }

// csvOf builds a receipts file: the header, then one line per row.
func csvOf(header string, rows ...string) string {
	return header + "\n" + strings.Join(rows, "\n") + "\n"
}

func ts(d time.Duration) string { return base.Add(d).Format(time.RFC3339) }
