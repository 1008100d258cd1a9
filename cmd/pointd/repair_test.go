package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/sqlite"
	"github.com/pointd/pointd/internal/storetest"
)

// repairLedger builds a small ledger in a SQLite folder through the real
// writer, on a clock that starts at start, and closes it.
func repairLedger(t *testing.T, dir string, start time.Time) (shop ledger.Shop, alice, bob ledger.Member) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m := ledger.Merchant{ID: ledger.NewID(), Name: "m", EarnRateBP: 500, PointValidityDays: 365, Status: "active"}
	mustDo(t, db.CreateMerchant(ctx, &m))
	shop = ledger.Shop{ID: ledger.NewID(), MerchantID: m.ID, Name: "s"}
	mustDo(t, db.CreateStore(ctx, shop))
	alice = ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Name: "alice", Status: "active"}
	mustDo(t, db.CreateMember(ctx, &alice))
	bob = ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Name: "bob", Status: "active"}
	mustDo(t, db.CreateMember(ctx, &bob))
	clock := storetest.NewClock(start)
	w := ledger.NewWriter(db, ledger.WriterConfig{Now: clock.Now})
	defer w.Close()
	for i, e := range []struct {
		who    ledger.Member
		r      string
		amount int64
	}{{alice, "r1", 1000}, {bob, "r2", 2000}} {
		clock.Advance(time.Duration(i+1) * time.Minute)
		amount := e.amount
		_, err := w.Submit(ctx, ledger.Op{Kind: ledger.OpEarn, Actor: ledger.Actor{KeyID: "t"}, IdempotencyKey: e.r,
			MemberID: e.who.ID, StoreID: shop.ID, Receipt: e.r, PurchaseAmount: &amount})
		mustDo(t, err)
	}
	return shop, alice, bob
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func runPointd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestReconcileCommand runs the subcommands as an operator would: reconcile
// with --fix (status 1: findings), apply the file (status 0), apply it
// again (nothing changes), reconcile again (status 0), verify, incident;
// and a malformed file refused with its line (status 2).
func TestReconcileCommand(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	shop, alice, bob := repairLedger(t, dir, start)
	receipts := filepath.Join(t.TempDir(), "pos.csv")
	file := "store_id,receipt,card_number,purchase_amount,points,time\n" +
		fmt.Sprintf("%s,r1,%s,1000,,2026-03-02T09:01:00Z\n", shop.ID, alice.CardNumber) +
		fmt.Sprintf("%s,r2,%s,3000,,2026-03-02T09:03:00Z\n", shop.ID, bob.CardNumber) +
		fmt.Sprintf("%s,r3,%s,400,30,2026-03-02T09:02:30Z\n", shop.ID, alice.CardNumber)
	mustDo(t, os.WriteFile(receipts, []byte(file), 0o600))
	fix := filepath.Join(t.TempDir(), "fix.csv")

	code, out, errOut := runPointd(t, "reconcile", "--receipts", receipts, "--fix", fix, "--data", dir)
	if code != 1 {
		t.Fatalf("reconcile: status %d, want 1 (findings)\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"line 3: amount_mismatch", "line 4: missing_earn", "wrote 2 proposed corrections to " + fix} {
		if !strings.Contains(out, want) {
			t.Errorf("reconcile does not say %q:\n%s", want, out)
		}
	}
	written, err := os.ReadFile(fix)
	mustDo(t, err)
	if lines := strings.Split(strings.TrimSpace(string(written)), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], "rc-") {
		t.Fatalf("corrections file:\n%s", written)
	}
	if code, _, errOut := runPointd(t, "reconcile", "--receipts", receipts, "--fix", fix, "--data", dir); code != 2 || !strings.Contains(errOut, "exists") {
		t.Errorf("a second --fix to the same file: status %d, %s", code, errOut)
	}

	code, out, errOut = runPointd(t, "reconcile", "--apply", fix, "--data", dir)
	if code != 0 || !strings.Contains(out, "2 corrections: 2 applied, 0 already applied, 0 failed") {
		t.Fatalf("apply: status %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runPointd(t, "reconcile", "--apply", fix, "--data", dir)
	if code != 0 || !strings.Contains(out, "2 corrections: 0 applied, 2 already applied, 0 failed") ||
		strings.Count(out, ": already applied, transaction ") != 2 {
		t.Fatalf("second apply: status %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runPointd(t, "reconcile", "--receipts", receipts, "--json", "--data", dir)
	var rep struct {
		Matched  int   `json:"matched"`
		Findings []any `json:"findings"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Matched != 3 || len(rep.Findings) != 0 {
		t.Fatalf("reconcile after apply: status %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := runPointd(t, "verify", "--data", dir); code != 0 || !strings.Contains(out, "ledger is sound") {
		t.Fatalf("verify: status %d\n%s%s", code, out, errOut)
	}

	// The ledger: alice 50 + 30 (r3), bob 150 (100 + an adjustment of 50).
	db, err := sqlite.Open(context.Background(), dir)
	mustDo(t, err)
	for who, want := range map[ledger.Member]int64{alice: 80, bob: 150} {
		b, err := db.Balance(context.Background(), who.ID)
		mustDo(t, err)
		if b.Balance != want {
			t.Errorf("%s has %d, want %d", who.Name, b.Balance, want)
		}
	}
	db.Close()

	code, out, errOut = runPointd(t, "incident", "--from", "2026-03-02T09:00:00Z", "--to", "2026-03-02T10:00:00Z", "--data", dir)
	if code != 0 || !strings.Contains(out, "2 ledger operations") || !strings.Contains(out, " r2 "+bob.ID+" 100 - 2000 kept") {
		t.Fatalf("incident: status %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runPointd(t, "incident", "--from", "2026-03-02", "--to", "yesterday", "--data", dir); code != 1 || !strings.Contains(errOut, "--to") {
		t.Errorf("incident with a bad --to: status %d, %s", code, errOut)
	}

	bad := filepath.Join(t.TempDir(), "bad.csv")
	mustDo(t, os.WriteFile(bad, []byte(file+shop.ID+",r9,"+alice.CardNumber+",12.50,,2026-03-02T09:05:00Z\n"), 0o600))
	code, out, errOut = runPointd(t, "reconcile", "--receipts", bad, "--data", dir)
	if code != 2 || !strings.Contains(errOut, "line 5: purchase_amount") {
		t.Fatalf("malformed file: status %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runPointd(t, "reconcile", "--data", dir); code != 2 || !strings.Contains(errOut, "--receipts") {
		t.Errorf("reconcile without a file: status %d, %s", code, errOut)
	}
}
