package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/postgres/pgtest"
)

// open returns a migrated database in a fresh schema, closed when t ends.
func open(t testing.TB) *DB {
	t.Helper()
	return openOn(t, pgtest.DSN(t))
}

func openOn(t testing.TB, dsn string) *DB {
	t.Helper()
	db, err := Open(context.Background(), dsn, 4)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fixture is a merchant with one store and two members.
type fixture struct {
	merchant ledger.Merchant
	store    ledger.StoreInfo
	alice    ledger.Member
	bob      ledger.Member
}

// t0 is a time with microseconds and a zone other than UTC, to check that
// times come back exact and in UTC.
var t0 = time.Date(2026, 11, 24, 9, 30, 15, 123456000, time.FixedZone("CET", 3600))

func newFixture(t testing.TB, db *DB) fixture {
	t.Helper()
	ctx := context.Background()
	f := fixture{}
	f.merchant = ledger.Merchant{ID: ledger.NewID(), Name: "Café Nord", EarnRateBP: 500, PointValidityDays: 365,
		Status: "active", CreatedAt: t0}
	mustOK(t, db.CreateMerchant(ctx, &f.merchant))
	shop := ledger.Shop{ID: ledger.NewID(), MerchantID: f.merchant.ID, Name: "Main street", Status: ledger.StatusActive, CreatedAt: t0}
	mustOK(t, db.CreateStore(ctx, shop))
	f.store = ledger.StoreInfo{Shop: shop, Merchant: f.merchant}
	f.alice = ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Phone: "+33600000001",
		Name: "Alice", Status: "active", CreatedAt: t0}
	mustOK(t, db.CreateMember(ctx, &f.alice))
	f.bob = ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Name: "Bob", Status: "active", CreatedAt: t0}
	mustOK(t, db.CreateMember(ctx, &f.bob))
	return f
}

func mustOK(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantCode checks err is a *ledger.Error with code (and field, if given).
func wantCode(t testing.TB, err error, code, field string) {
	t.Helper()
	var le *ledger.Error
	if !errors.As(err, &le) {
		t.Fatalf("got error %v, want a *ledger.Error with code %s", err, code)
	}
	if le.Code != code || field != "" && le.Field != field {
		t.Fatalf("got %s (field %q), want code %s field %q", le.Code, le.Field, code, field)
	}
}

func utc(t time.Time) time.Time { return ledger.MicroTime(t) }
