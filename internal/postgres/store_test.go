package postgres

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/postgres/pgtest"
)

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)

	t.Run("a fresh schema has every migration pending", func(t *testing.T) {
		db, err := OpenNoMigrate(ctx, dsn, 2)
		mustOK(t, err)
		defer db.Close()
		pending, err := db.PendingMigrations(ctx)
		mustOK(t, err)
		if !slices.Equal(pending, allMigrations(t)) {
			t.Fatalf("pending = %v", pending)
		}
		var created bool
		mustOK(t, db.pool.QueryRow(ctx, `SELECT to_regclass('goose_db_version') IS NOT NULL`).Scan(&created))
		if created {
			t.Fatal("PendingMigrations created goose's table")
		}
		applied, err := db.Migrate(ctx)
		mustOK(t, err)
		if !slices.Equal(applied, allMigrations(t)) {
			t.Fatalf("applied = %v", applied)
		}
	})

	t.Run("a migrated schema has none and migrating again does nothing", func(t *testing.T) {
		db := openOn(t, dsn) // Open migrates again: nothing to do
		pending, err := db.PendingMigrations(ctx)
		mustOK(t, err)
		if len(pending) != 0 {
			t.Fatalf("pending = %v", pending)
		}
		applied, err := db.Migrate(ctx)
		mustOK(t, err)
		if len(applied) != 0 {
			t.Fatalf("applied = %v", applied)
		}
	})

	t.Run("everything lives in the test's schema", func(t *testing.T) {
		db := openOn(t, dsn)
		var n int
		mustOK(t, db.pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables
			WHERE table_schema = current_schema() AND table_name IN ('goose_db_version', 'accounts', 'ledger_head')`).Scan(&n))
		if n != 3 {
			t.Fatalf("%d of 3 tables in the current schema", n)
		}
		var schema string
		mustOK(t, db.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema))
		if schema == "public" {
			t.Fatal("search_path of the DSN was ignored")
		}
	})

	t.Run("the platform accounts exist and new accounts come after them", func(t *testing.T) {
		db := openOn(t, dsn)
		var kinds []string
		mustOK(t, db.pool.QueryRow(ctx, `SELECT array_agg(kind ORDER BY id) FROM accounts WHERE id IN ($1, $2)`,
			ledger.AccountExpired, ledger.AccountAdjustments).Scan(&kinds))
		if !slices.Equal(kinds, []string{"platform_expired", "platform_adjustments"}) {
			t.Fatalf("platform accounts: %v", kinds)
		}
		m := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Status: "active"}
		mustOK(t, db.CreateMember(ctx, &m))
		if m.AccountID <= ledger.AccountAdjustments {
			t.Fatalf("new account id %d", m.AccountID)
		}
	})
}

func TestConcurrentOpen(t *testing.T) {
	dsn := pgtest.DSN(t)
	var wg sync.WaitGroup
	dbs := make([]*DB, 4)
	errs := make([]error, 4)
	for i := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[i], errs[i] = Open(context.Background(), dsn, 2)
		}()
	}
	wg.Wait()
	for i, db := range dbs {
		if errs[i] != nil {
			t.Errorf("instance %d: %v", i, errs[i])
			continue
		}
		pending, err := db.PendingMigrations(context.Background())
		if err != nil || len(pending) != 0 {
			t.Errorf("instance %d: pending %v, %v", i, pending, err)
		}
		db.Close()
	}
}

func TestOpenUnreachable(t *testing.T) {
	_, err := Open(context.Background(), "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", 2)
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
}

func TestStats(t *testing.T) {
	db := open(t)
	inUse, _, max := db.Stats()
	if inUse != 0 || max != 4 {
		t.Fatalf("Stats = %d in use, max %d", inUse, max)
	}
}

func TestCreateAndRead(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	f := newFixture(t, db)

	t.Run("a merchant comes back as stored, with two accounts of its own", func(t *testing.T) {
		got, err := db.Merchant(ctx, f.merchant.ID)
		mustOK(t, err)
		want := f.merchant
		want.CreatedAt = utc(t0)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
		if got.IssuedAccount == got.RedeemedAccount || got.IssuedAccount <= ledger.AccountAdjustments {
			t.Fatalf("accounts %d, %d", got.IssuedAccount, got.RedeemedAccount)
		}
		if got.CreatedAt.Location() != (utc(t0)).Location() {
			t.Fatalf("created_at not in UTC: %v", got.CreatedAt)
		}
	})

	t.Run("a store comes back with its merchant", func(t *testing.T) {
		got, err := db.StoreInfo(ctx, f.store.ID)
		mustOK(t, err)
		want := f.store
		want.CreatedAt = utc(t0)
		want.Merchant.CreatedAt = utc(t0)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
	})

	t.Run("a member comes back by id, card and phone", func(t *testing.T) {
		want := f.alice
		want.CreatedAt = utc(t0)
		for name, get := range map[string]func() (ledger.Member, error){
			"id":    func() (ledger.Member, error) { return db.Member(ctx, f.alice.ID) },
			"card":  func() (ledger.Member, error) { return db.MemberByCard(ctx, f.alice.CardNumber) },
			"phone": func() (ledger.Member, error) { return db.MemberByPhone(ctx, f.alice.Phone) },
		} {
			got, err := get()
			mustOK(t, err)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("by %s: got %+v\nwant %+v", name, got, want)
			}
		}
	})

	t.Run("a member without phone has an empty phone, and a zero time stays zero", func(t *testing.T) {
		m := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Status: "active"}
		mustOK(t, db.CreateMember(ctx, &m))
		got, err := db.Member(ctx, m.ID)
		mustOK(t, err)
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("got %+v\nwant %+v", got, m)
		}
		_, err = db.MemberByPhone(ctx, "")
		wantCode(t, err, ledger.CodeMemberNotFound, "")
	})

	t.Run("a new member has a zero balance", func(t *testing.T) {
		b, err := db.Balance(ctx, f.bob.ID)
		mustOK(t, err)
		if b != (ledger.Balance{MemberID: f.bob.ID}) {
			t.Fatalf("balance %+v", b)
		}
	})

	t.Run("lists of an unknown member are empty", func(t *testing.T) {
		txns, err := db.MemberTransactions(ctx, "nobody", 0, 10)
		mustOK(t, err)
		lots, err := db.MemberLots(ctx, "nobody")
		mustOK(t, err)
		if len(txns)+len(lots) != 0 {
			t.Fatal("rows for nobody")
		}
	})
}

func TestNotFound(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	cases := []struct {
		name string
		code string
		call func() error
	}{
		{"merchant", ledger.CodeMerchantNotFound, func() error { _, err := db.Merchant(ctx, "x"); return err }},
		{"store", ledger.CodeStoreNotFound, func() error { _, err := db.StoreInfo(ctx, "x"); return err }},
		{"member", ledger.CodeMemberNotFound, func() error { _, err := db.Member(ctx, "x"); return err }},
		{"member by card", ledger.CodeMemberNotFound, func() error { _, err := db.MemberByCard(ctx, "x"); return err }},
		{"member by phone", ledger.CodeMemberNotFound, func() error { _, err := db.MemberByPhone(ctx, "x"); return err }},
		{"balance", ledger.CodeMemberNotFound, func() error { _, err := db.Balance(ctx, "x"); return err }},
		{"transaction", ledger.CodeTransactionNotFound, func() error { _, err := db.Transaction(ctx, "x"); return err }},
		{"hold", ledger.CodeHoldNotFound, func() error { _, err := db.Hold(ctx, "x"); return err }},
		{"store of an unknown merchant", ledger.CodeMerchantNotFound, func() error {
			return db.CreateStore(ctx, ledger.Shop{ID: "s", MerchantID: "x"})
		}},
	}
	for _, c := range cases {
		t.Run("a missing "+c.name+" is "+c.code, func(t *testing.T) {
			wantCode(t, c.call(), c.code, "")
		})
	}
	t.Run("a missing idempotency record is not an error", func(t *testing.T) {
		_, ok, err := db.Idempotency(ctx, "k", "x")
		if ok || err != nil {
			t.Fatalf("ok %v, err %v", ok, err)
		}
	})
}

func TestCreateConflicts(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	f := newFixture(t, db)

	t.Run("a card number taken is a conflict on card_number", func(t *testing.T) {
		m := ledger.Member{ID: ledger.NewID(), CardNumber: f.alice.CardNumber}
		wantCode(t, db.CreateMember(ctx, &m), ledger.CodeConflict, "card_number")
	})
	t.Run("a phone taken is a conflict on phone", func(t *testing.T) {
		m := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Phone: f.alice.Phone}
		wantCode(t, db.CreateMember(ctx, &m), ledger.CodeConflict, "phone")
	})
	t.Run("a member id taken is a conflict on id", func(t *testing.T) {
		m := ledger.Member{ID: f.alice.ID, CardNumber: ledger.NewCardNumber()}
		wantCode(t, db.CreateMember(ctx, &m), ledger.CodeConflict, "id")
	})
	t.Run("many members may have no phone", func(t *testing.T) {
		for range 3 {
			m := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber()}
			mustOK(t, db.CreateMember(ctx, &m))
		}
	})
	t.Run("a merchant or store id taken is a conflict", func(t *testing.T) {
		m := f.merchant
		wantCode(t, db.CreateMerchant(ctx, &m), ledger.CodeConflict, "id")
		wantCode(t, db.CreateStore(ctx, f.store.Shop), ledger.CodeConflict, "id")
	})
	t.Run("a failed creation leaves no account behind", func(t *testing.T) {
		var n int
		mustOK(t, db.pool.QueryRow(ctx, `SELECT count(*) FROM accounts a WHERE NOT EXISTS
			(SELECT 1 FROM members m WHERE m.account_id = a.id)
			AND NOT EXISTS (SELECT 1 FROM merchants m WHERE a.id IN (m.issued_account, m.redeemed_account))
			AND a.id > 2`).Scan(&n))
		if n != 0 {
			t.Fatalf("%d orphan accounts", n)
		}
	})
}

func TestAPIKeys(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	_, k := auth.NewSecret(auth.ModeTest)
	k.ID, k.Role, k.MerchantID, k.StoreID, k.Name = ledger.NewID(), auth.RolePOS, "m1", "s1", "till 1"
	k.RateLimitPerSecond, k.RateLimitBurst = 25, 50
	k.CreatedAt = t0
	mustOK(t, db.CreateKey(ctx, k))

	t.Run("a key comes back by its hash", func(t *testing.T) {
		got, err := db.KeyByHash(ctx, k.Hash)
		mustOK(t, err)
		want := k
		want.CreatedAt = utc(t0)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
	})
	t.Run("an unknown hash is ErrKeyNotFound", func(t *testing.T) {
		_, err := db.KeyByHash(ctx, bytes.Repeat([]byte{1}, 32))
		if !errors.Is(err, auth.ErrKeyNotFound) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a revoked key keeps its revocation time", func(t *testing.T) {
		_, r := auth.NewSecret(auth.ModeLive)
		r.ID, r.Role, r.RevokedAt = ledger.NewID(), auth.RoleAdmin, t0.Add(1)
		mustOK(t, db.CreateKey(ctx, r))
		got, err := db.KeyByHash(ctx, r.Hash)
		mustOK(t, err)
		if !got.RevokedAt.Equal(utc(t0)) || got.MerchantID != "" {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("the same hash twice is a conflict", func(t *testing.T) {
		dup := k
		dup.ID = ledger.NewID()
		wantCode(t, db.CreateKey(ctx, dup), ledger.CodeConflict, "")
	})
}

// allMigrations lists the embedded migration files in order: every helper
// branch that adds one need not edit the tests that expect them all.
func allMigrations(t *testing.T) []string {
	t.Helper()
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	if len(out) < 2 || out[0] != "00001_init.sql" {
		t.Fatalf("embedded migrations %v", out)
	}
	return out
}
