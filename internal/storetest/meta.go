package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

// MetaStore is what pointd's commands ask of a database before they use
// it: whether it holds a ledger, its migrations, and its recorded mode.
type MetaStore interface {
	ledger.Store
	auth.KeyStore
	Migrate(ctx context.Context) ([]string, error)
	PendingMigrations(ctx context.Context) ([]string, error)
	HasLedger(ctx context.Context) (bool, error)
	Mode(ctx context.Context) (string, error)
	ClaimMode(ctx context.Context, mode string) (string, error)
}

// RunMeta holds a store to the ledger's existence check, the migration lock
// and the mode record. fresh makes one new, empty database for the test and
// returns a function that opens another handle on it each time it is
// called, without migrating it; exec runs raw SQL on a handle (no
// placeholders are used).
func RunMeta(t *testing.T, fresh func(t *testing.T) func() MetaStore, exec func(s MetaStore, query string) error) {
	ctx := context.Background()
	handle := func(t *testing.T, open func() MetaStore) MetaStore {
		s := open()
		t.Cleanup(func() { s.Close() })
		return s
	}

	t.Run("an empty database holds no ledger and no mode until migrated", func(t *testing.T) {
		s := handle(t, fresh(t))
		if ok, err := s.HasLedger(ctx); err != nil || ok {
			t.Fatalf("HasLedger of an empty database = %v, %v", ok, err)
		}
		if m, err := s.Mode(ctx); err != nil || m != "" {
			t.Fatalf("Mode of an empty database = %q, %v", m, err)
		}
		_, err := s.Migrate(ctx)
		must(t, err)
		if ok, err := s.HasLedger(ctx); err != nil || !ok {
			t.Fatalf("HasLedger after migrating = %v, %v", ok, err)
		}
		// Nothing claimed it yet: a database made without keys has no mode.
		if m, err := s.Mode(ctx); err != nil || m != "" {
			t.Fatalf("Mode of a new database = %q, %v", m, err)
		}
	})

	t.Run("the first mode claimed is the database's, whoever claims at once", func(t *testing.T) {
		open := fresh(t)
		first := handle(t, open)
		_, err := first.Migrate(ctx)
		must(t, err)
		handles := []MetaStore{first, handle(t, open), handle(t, open), handle(t, open)}
		got := make([]string, len(handles))
		errs := make([]error, len(handles))
		var wg sync.WaitGroup
		for i, h := range handles {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], errs[i] = h.ClaimMode(ctx, []string{"live", "test"}[i%2])
			}()
		}
		wg.Wait()
		for i := range handles {
			if errs[i] != nil || got[i] != got[0] || (got[0] != "live" && got[0] != "test") {
				t.Fatalf("claims answered %q, errors %v: want one mode for all", got, errs)
			}
		}
		other := map[string]string{"live": "test", "test": "live"}[got[0]]
		if m, err := first.ClaimMode(ctx, other); err != nil || m != got[0] {
			t.Errorf("a later claim of %s = %q, %v; want the recorded %s", other, m, err, got[0])
		}
		if m, err := handle(t, open).Mode(ctx); err != nil || m != got[0] {
			t.Errorf("Mode = %q, %v; want %s", m, err, got[0])
		}
	})

	t.Run("handles migrating one fresh database at once all succeed", func(t *testing.T) {
		for round := range 5 {
			open := fresh(t)
			const n = 4
			handles := make([]MetaStore, n)
			for i := range handles {
				handles[i] = handle(t, open)
			}
			before, err := handles[0].PendingMigrations(ctx)
			must(t, err)
			applied := make([][]string, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i, h := range handles {
				wg.Add(1)
				go func() {
					defer wg.Done()
					applied[i], errs[i] = h.Migrate(ctx)
				}()
			}
			wg.Wait()
			total := 0
			for i, err := range errs {
				if err != nil {
					t.Fatalf("round %d: migration %d of %d failed: %v", round, i, n, err)
				}
				total += len(applied[i])
			}
			pending, err := handles[1].PendingMigrations(ctx)
			must(t, err)
			if len(pending) != 0 {
				t.Fatalf("round %d: still pending: %v", round, pending)
			}
			// Serialised, each migration ran exactly once between them.
			all, err := handle(t, open).Migrate(ctx)
			must(t, err)
			if len(all) != 0 {
				t.Fatalf("round %d: a last Migrate applied %v", round, all)
			}
			if total != len(before) {
				t.Fatalf("round %d: %d migrations pending, the handles applied %v", round, len(before), applied)
			}
			ensureSound(t, handles[0])
		}
	})

	t.Run("a database made before the mode record takes its keys' one mode", func(t *testing.T) {
		for _, c := range []struct {
			modes []auth.Mode
			want  string
		}{
			{[]auth.Mode{auth.ModeTest, auth.ModeTest}, "test"},
			{[]auth.Mode{auth.ModeLive}, "live"},
			{[]auth.Mode{auth.ModeLive, auth.ModeTest}, ""},
			{nil, ""},
		} {
			s := handle(t, fresh(t))
			_, err := s.Migrate(ctx)
			must(t, err)
			// Back to the schema before the record: its migration and those
			// after it undone by hand (goose refuses a gap below the version).
			for _, q := range laterUndo {
				must(t, exec(s, q))
			}
			must(t, exec(s, `DROP TABLE pointd_meta`))
			must(t, exec(s, fmt.Sprintf(`DELETE FROM goose_db_version WHERE version_id >= %d`, modeMigration)))
			for _, m := range c.modes {
				_, k := auth.NewSecret(m)
				k.ID, k.Role = ledger.NewID(), auth.RoleAdmin
				must(t, s.CreateKey(ctx, k))
			}
			applied, err := s.Migrate(ctx)
			must(t, err)
			if len(applied) != 1+len(laterUndo) {
				t.Fatalf("keys %v: applied %v, want the mode record's migration and the %d after it", c.modes, applied, len(laterUndo))
			}
			if m, err := s.Mode(ctx); err != nil || m != c.want {
				t.Errorf("keys %v: Mode = %q, %v; want %q", c.modes, m, err, c.want)
			}
		}
	})
}

// modeMigration is the version of the migration that made the mode record.
const modeMigration = 110

// laterUndo undoes the migrations after modeMigration, in the SQL both
// stores share; a new migration adds its own undo here.
var laterUndo = []string{
	`ALTER TABLE merchants DROP COLUMN max_explicit_points`,
}

func ensureSound(t *testing.T, s ledger.Store) {
	t.Helper()
	rep, err := ledger.VerifyStore(context.Background(), s)
	if err != nil || !rep.Sound() {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}
