package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

// base is a fixed instant with microseconds, so that a lost digit shows.
var base = time.Date(2026, time.March, 2, 9, 30, 0, 123456000, time.UTC)

func openTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return db
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var e *ledger.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("got error %v, want a ledger error with code %s", err, code)
	}
}

func TestOpenMigratesOnceAndReopens(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data", "nested")

	db, err := OpenNoMigrate(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the check itself must not change the database
		pending, err := db.PendingMigrations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := allMigrations(t); !slices.Equal(pending, want) {
			t.Fatalf("pending on a fresh database = %v, want %v", pending, want)
		}
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := allMigrations(t); !slices.Equal(applied, want) {
		t.Fatalf("applied = %v, want %v", applied, want)
	}
	if pending, err := db.PendingMigrations(ctx); err != nil || len(pending) != 0 {
		t.Fatalf("pending after migrate = %v, %v; want none", pending, err)
	}
	if applied, err := db.Migrate(ctx); err != nil || len(applied) != 0 {
		t.Fatalf("second migrate applied %v, %v; want nothing", applied, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode = %v, want 0700", fi.Mode().Perm())
	}

	db, err = Open(ctx, dir) // reopen: nothing left to apply
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if pending, err := db.PendingMigrations(ctx); err != nil || len(pending) != 0 {
		t.Fatalf("pending after reopen = %v, %v; want none", pending, err)
	}
	if db.Path() != filepath.Join(dir, FileName) {
		t.Errorf("path = %s", db.Path())
	}
	var mode string
	if err := db.r.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal mode = %q, %v; want wal", mode, err)
	}
	for _, p := range []struct {
		pool   *sql.DB
		pragma string
		want   int
	}{
		{db.w, "synchronous", 2}, // FULL: an acknowledged write survives a crash
		{db.w, "foreign_keys", 1},
		{db.w, "busy_timeout", busyTimeoutMS},
		{db.r, "busy_timeout", busyTimeoutMS},
		{db.r, "query_only", 1},
		{db.r, "synchronous", 2},                           // the readers run the WAL checkpoints: they must sync
		{db.w, "wal_autocheckpoint", writerAutoCheckpoint}, // only a backstop: checkpoint.go does it beside the writer
	} {
		var v int
		if err := p.pool.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&v); err != nil || v != p.want {
			t.Errorf("PRAGMA %s = %d, %v; want %d", p.pragma, v, err, p.want)
		}
	}
	if _, err := db.r.ExecContext(ctx, `DELETE FROM api_keys`); err == nil {
		t.Error("a reader connection could write")
	}
	if w, r, max := db.Stats(); w != 0 || r != 0 || max != 1+readConns {
		t.Errorf("stats = %d, %d, %d; want 0, 0, %d", w, r, max, 1+readConns)
	}
}

func TestOpenPathWithURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a?b#c%20d")
	db, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Fatalf("database not where asked: %v", err)
	}
}

func TestPlatformAccountsComeFirst(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	type acct struct {
		id     int64
		member string
	}
	var got []acct
	err := db.Audit().Accounts(ctx, func(a ledger.Account, member string) error {
		got = append(got, acct{a.ID, member})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []acct{{ledger.AccountExpired, ""}, {ledger.AccountAdjustments, ""}}; !slices.Equal(got, want) {
		t.Fatalf("accounts of a fresh database = %v, want %v", got, want)
	}
	m := ledger.Merchant{ID: "merchant-1", Name: "M", EarnRateBP: 100, PointValidityDays: 30, Status: "active"}
	if err := db.CreateMerchant(ctx, &m); err != nil {
		t.Fatal(err)
	}
	if m.IssuedAccount != 3 || m.RedeemedAccount != 4 {
		t.Fatalf("merchant accounts = %d, %d; want 3, 4", m.IssuedAccount, m.RedeemedAccount)
	}
}

func TestDirectory(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)

	m := ledger.Merchant{ID: "m1", Name: "Coffee", EarnRateBP: 250, PointValidityDays: 365, Status: "active", CreatedAt: base}
	if err := db.CreateMerchant(ctx, &m); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Merchant(ctx, "m1"); err != nil || got != m {
		t.Fatalf("merchant = %+v, %v; want %+v", got, err, m)
	}
	_, err := db.Merchant(ctx, "nope")
	wantCode(t, err, ledger.CodeMerchantNotFound)
	wantCode(t, db.CreateMerchant(ctx, &ledger.Merchant{ID: "m1"}), ledger.CodeConflict)

	s := ledger.Shop{ID: "s1", MerchantID: "m1", Name: "Main street", Status: ledger.StatusActive, CreatedAt: base.Add(time.Second)}
	if err := db.CreateStore(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got, err := db.StoreInfo(ctx, "s1"); err != nil || got != (ledger.StoreInfo{Shop: s, Merchant: m}) {
		t.Fatalf("store = %+v, %v", got, err)
	}
	_, err = db.StoreInfo(ctx, "nope")
	wantCode(t, err, ledger.CodeStoreNotFound)
	wantCode(t, db.CreateStore(ctx, ledger.Shop{ID: "s2", MerchantID: "nope"}), ledger.CodeMerchantNotFound)
	wantCode(t, db.CreateStore(ctx, s), ledger.CodeConflict)

	alice := ledger.Member{ID: "alice", CardNumber: "9410000000000001", Phone: "+4915100000001", Name: "Alice", Status: "active", CreatedAt: base}
	if err := db.CreateMember(ctx, &alice); err != nil {
		t.Fatal(err)
	}
	if alice.AccountID <= m.RedeemedAccount {
		t.Fatalf("member account %d", alice.AccountID)
	}
	for name, get := range map[string]func() (ledger.Member, error){
		"by id":    func() (ledger.Member, error) { return db.Member(ctx, "alice") },
		"by card":  func() (ledger.Member, error) { return db.MemberByCard(ctx, alice.CardNumber) },
		"by phone": func() (ledger.Member, error) { return db.MemberByPhone(ctx, alice.Phone) },
	} {
		if got, err := get(); err != nil || got != alice {
			t.Errorf("member %s = %+v, %v; want %+v", name, got, err, alice)
		}
	}
	for _, get := range []func() (ledger.Member, error){
		func() (ledger.Member, error) { return db.Member(ctx, "bob") },
		func() (ledger.Member, error) { return db.MemberByCard(ctx, "9410000000000002") },
		func() (ledger.Member, error) { return db.MemberByPhone(ctx, "+4915100000002") },
		func() (ledger.Member, error) { return db.MemberByPhone(ctx, "") },
	} {
		_, err := get()
		wantCode(t, err, ledger.CodeMemberNotFound)
	}
	if b, err := db.Balance(ctx, "alice"); err != nil || b != (ledger.Balance{MemberID: "alice"}) {
		t.Fatalf("balance = %+v, %v", b, err)
	}
	_, err = db.Balance(ctx, "bob")
	wantCode(t, err, ledger.CodeMemberNotFound)

	t.Run("members without a phone do not collide", func(t *testing.T) {
		for i, card := range []string{"9410000000000010", "9410000000000011"} {
			m := ledger.Member{ID: "nophone" + card, CardNumber: card, Name: "No phone", Status: "active"}
			if err := db.CreateMember(ctx, &m); err != nil {
				t.Fatalf("member %d without phone: %v", i, err)
			}
			got, err := db.Member(ctx, m.ID)
			if err != nil || got.Phone != "" {
				t.Fatalf("read back %+v, %v", got, err)
			}
		}
	})
	t.Run("a taken card number, phone or id is a conflict naming it", func(t *testing.T) {
		for _, tc := range []struct {
			m     ledger.Member
			field string
		}{
			{ledger.Member{ID: "c1", CardNumber: alice.CardNumber, Phone: "+4915100000009"}, "card_number"},
			{ledger.Member{ID: "c2", CardNumber: "9410000000000099", Phone: alice.Phone}, "phone"},
			{ledger.Member{ID: "alice", CardNumber: "9410000000000098"}, "id"},
		} {
			err := db.CreateMember(ctx, &tc.m)
			var e *ledger.Error
			if !errors.As(err, &e) || e.Code != ledger.CodeConflict || e.Field != tc.field {
				t.Errorf("create %+v: got %v, want conflict on %s", tc.m, err, tc.field)
			}
			if tc.m.AccountID != 0 {
				t.Errorf("failed create filled in account %d", tc.m.AccountID)
			}
		}
		// Nothing of the failed attempts stayed behind: no stray accounts.
		var n int
		if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM accounts WHERE kind = 'member'`).Scan(&n); err != nil || n != 3 {
			t.Errorf("member accounts = %d, %v; want 3", n, err)
		}
	})

	t.Run("api keys", func(t *testing.T) {
		secret, k := auth.NewSecret(auth.ModeTest)
		k.ID, k.Role, k.MerchantID, k.StoreID, k.Name = "k1", auth.RolePOS, "m1", "s1", "till 1"
		k.RateLimitPerSecond, k.RateLimitBurst = 25, 50
		k.CreatedAt = ledger.MicroTime(k.CreatedAt)
		if err := db.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		got, err := db.KeyByHash(ctx, auth.HashSecret(secret))
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != k.ID || got.Prefix != k.Prefix || string(got.Hash) != string(k.Hash) || got.Role != k.Role ||
			got.Mode != k.Mode || got.MerchantID != k.MerchantID || got.StoreID != k.StoreID || got.Name != k.Name ||
			!got.CreatedAt.Equal(k.CreatedAt) || !got.RevokedAt.IsZero() ||
			got.RateLimitPerSecond != 25 || got.RateLimitBurst != 50 {
			t.Fatalf("key = %+v, want %+v", got, k)
		}
		if _, err := db.KeyByHash(ctx, auth.HashSecret("pd_test_other")); !errors.Is(err, auth.ErrKeyNotFound) {
			t.Fatalf("unknown key: %v", err)
		}
		k.ID = "k2"
		wantCode(t, db.CreateKey(ctx, k), ledger.CodeConflict)

		_, revoked := auth.NewSecret(auth.ModeLive)
		revoked.ID, revoked.Role, revoked.RevokedAt = "k3", auth.RoleAdmin, base
		if err := db.CreateKey(ctx, revoked); err != nil {
			t.Fatal(err)
		}
		if got, err := db.KeyByHash(ctx, revoked.Hash); err != nil || !got.RevokedAt.Equal(base) {
			t.Fatalf("revoked key = %+v, %v", got, err)
		}
	})
}

// TestAnotherProcessWritesMeanwhile opens the file twice, as `pointd keys
// create` does next to a running server, and writes from both at once.
func TestAnotherProcessWritesMeanwhile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	server, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	cli, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	inside := make(chan struct{})
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	var writeErr error
	go func() {
		defer wg.Done()
		writeErr = server.Write(ctx, func(tx ledger.BatchTx) error {
			if _, _, err := tx.Head(ctx); err != nil {
				return err
			}
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	done := make(chan error, 1)
	go func() {
		_, k := auth.NewSecret(auth.ModeLive)
		k.ID, k.Role = "admin", auth.RoleAdmin
		done <- cli.CreateKey(ctx, k)
	}()
	time.Sleep(50 * time.Millisecond) // the CLI now waits for the server's write lock
	close(release)
	wg.Wait()
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	if err := <-done; err != nil {
		t.Fatalf("the second process could not write: %v", err)
	}
	if _, err := server.KeyByHash(ctx, mustKeyHash(t, cli, "admin")); err != nil {
		t.Fatalf("the server does not see the new key: %v", err)
	}
}

func mustKeyHash(t *testing.T, db *DB, id string) []byte {
	t.Helper()
	var h []byte
	if err := db.r.QueryRow(`SELECT hash FROM api_keys WHERE id = ?`, id).Scan(&h); err != nil {
		t.Fatal(err)
	}
	return h
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
