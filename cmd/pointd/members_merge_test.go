package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/sqlite"
)

// TestMembersMerge runs pointd members merge as an operator would: bob
// (with flags after his id) goes into alice, a second run answers the same
// merge, another reason is refused as already merged, a member with points
// held is refused with what to do, and the ledger stays sound.
func TestMembersMerge(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	shop, alice, bob := repairLedger(t, dir, start) // alice 50 points, bob 100

	if code, _, errOut := runPointd(t, "members", "merge", bob.ID, "--data", dir); code == 0 || !strings.Contains(errOut, "--into") {
		t.Fatalf("without --into: exit %d, stderr %q; want a refusal naming --into", code, errOut)
	}
	if code, _, errOut := runPointd(t, "members", "merge", "--into", alice.ID, "--data", dir); code == 0 || !strings.Contains(errOut, "missing B") {
		t.Fatalf("without B: exit %d, stderr %q; want a refusal saying B is missing", code, errOut)
	}
	if code, _, errOut := runPointd(t, "members", "merge", "--into", alice.ID, alice.ID, "--data", dir); code == 0 || !strings.Contains(errOut, "into itself") {
		t.Fatalf("into itself: exit %d, stderr %q", code, errOut)
	}

	code, out, errOut := runPointd(t, "members", "merge", "--into", alice.ID, bob.ID, "--data", dir, "--reason", "same phone, two cards")
	if code != 0 || !strings.Contains(out, "merged member "+bob.ID+" into "+alice.ID+": 100 points and 1 open lots moved") ||
		!strings.Contains(out, "now has 150 points") {
		t.Fatalf("merge: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	code, out, errOut = runPointd(t, "members", "merge", "--into", alice.ID, bob.ID, "--data", dir, "--reason", "same phone, two cards")
	if code != 0 || !strings.Contains(out, "already merged") {
		t.Fatalf("the same merge again: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	code, _, errOut = runPointd(t, "members", "merge", "--into", alice.ID, bob.ID, "--data", dir, "--reason", "another reason")
	if code == 0 || !strings.Contains(errOut, "already merged into member "+alice.ID) {
		t.Fatalf("merging a merged member: exit %d, stderr %q", code, errOut)
	}

	ctx := context.Background()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := db.Balance(ctx, alice.ID); b.Balance != 150 {
		t.Errorf("alice has %+v; want 150", b)
	}
	if b, _ := db.Balance(ctx, bob.ID); b.Balance != 0 {
		t.Errorf("bob has %+v; want 0", b)
	}
	if m, _ := db.Member(ctx, bob.ID); m.Status != ledger.StatusMerged || m.MergedInto != alice.ID {
		t.Errorf("bob reads %+v; want merged into alice", m)
	}
	if m, err := db.MemberByCard(ctx, bob.CardNumber); err != nil || m.ID != alice.ID {
		t.Errorf("bob's card finds %+v, %v; want alice", m, err)
	}
	if lots, _ := db.MemberLots(ctx, alice.ID); len(lots) != 2 {
		t.Errorf("alice has lots %+v; want her own and bob's", lots)
	}
	entries, err := db.AuditLog(ctx, backoffice.AuditFilter{TargetID: bob.ID, Limit: 10})
	if err != nil || len(entries) != 1 || entries[0].Action != backoffice.ActionMemberMerge || entries[0].Reason != "same phone, two cards" ||
		!strings.HasPrefix(entries[0].ActorPrefix, "cli") || entries[0].TxnID == "" || !strings.Contains(string(entries[0].After), alice.ID) {
		t.Errorf("audit log of bob: %+v, %v; want one merge entry by the command line", entries, err)
	}
	// carol has points held: refused until the hold is captured or voided.
	carol := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Name: "carol", Status: "active"}
	mustDo(t, db.CreateMember(ctx, &carol))
	w := ledger.NewWriter(db, ledger.WriterConfig{})
	amount := int64(1000)
	_, err = w.Submit(ctx, ledger.Op{Kind: ledger.OpEarn, Actor: ledger.Actor{KeyID: "t"}, IdempotencyKey: "c1", MemberID: carol.ID,
		StoreID: shop.ID, Receipt: "c1", PurchaseAmount: &amount})
	mustDo(t, err)
	pts := int64(10)
	_, err = w.Submit(ctx, ledger.Op{Kind: ledger.OpHold, Actor: ledger.Actor{KeyID: "t"}, IdempotencyKey: "c2", MemberID: carol.ID,
		StoreID: shop.ID, Points: &pts})
	mustDo(t, err)
	w.Close()
	db.Close()
	code, _, errOut = runPointd(t, "members", "merge", "--into", alice.ID, carol.ID, "--data", dir)
	if code == 0 || !strings.Contains(errOut, "capture or void") {
		t.Fatalf("merging a member with a hold: exit %d, stderr %q; want a refusal saying to capture or void it", code, errOut)
	}
	if code, out, _ := runPointd(t, "verify", "--data", dir); code != 0 || !strings.Contains(out, "ledger is sound") {
		t.Fatalf("verify after the merges: exit %d\n%s", code, out)
	}
}
