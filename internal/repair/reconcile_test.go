package repair_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/repair"
)

// kinds lists the findings' kinds with their first line (0: ledger only).
func kinds(r *repair.Report) []string {
	var out []string
	for _, f := range r.Findings {
		l := 0
		if len(f.Lines) > 0 {
			l = f.Lines[0]
		}
		out = append(out, fmt.Sprintf("%d:%s", l, f.Kind))
	}
	return out
}

func reconcile(t *testing.T, w *world, file string) *repair.Report {
	t.Helper()
	lines, err := repair.ParseReceipts(strings.NewReader(file))
	must(t, err)
	rep, err := repair.Reconcile(w.ctx, w.db, lines)
	must(t, err)
	return rep
}

func applyAll(t *testing.T, w *world, cs []repair.Correction) (repair.ApplyStats, []repair.ApplyResult) {
	t.Helper()
	var results []repair.ApplyResult
	st, err := repair.Apply(w.ctx, w.w, cs, func(r repair.ApplyResult) { results = append(results, r) })
	must(t, err)
	return st, results
}

// TestReconcileFindsRepairsAndAppliesOnce builds a ledger through the real
// writer, reconciles it with a POS file that has a missing earn, a purchase
// earned twice, an amount mismatch and matching lines (one of them refunded
// in part), proposes corrections, writes and reads them back as a file,
// applies them once (balances then equal the POS's truth, the audit is
// sound, reconcile is clean), and applies them again (nothing changes).
func TestReconcileFindsRepairsAndAppliesOnce(t *testing.T) {
	onEachStore(t, func(t *testing.T, w *world) {
		alice, bob, carol := w.member("alice"), w.member("bob"), w.member("carol")
		min := time.Minute
		w.at(1 * min)
		w.earn(alice, "r1", 1000) // 50
		w.at(2 * min)
		w.earn(bob, "r2", 2000) // 100
		w.at(3 * min)
		r3 := w.earn(carol, "r3", 3000) // 150; the POS says 4000
		w.at(4 * min)
		r5 := w.earn(bob, "r5", 800) // 40
		w.at(4*min + 30*time.Second)
		r5b := w.earn(bob, "r5b", 800) // the same purchase again, under a receipt the POS never issued
		w.at(5 * min)
		r7 := w.earn(alice, "r7", 1000) // 50, then 400 of it refunded: 20 back
		w.at(6 * min)
		w.do(ledger.Op{Kind: ledger.OpCancel, TransactionID: r7.ID, PurchaseAmount: p64(400)})
		w.at(7 * min)
		w.do(ledger.Op{Kind: ledger.OpEarn, MemberID: carol.ID, StoreID: w.shop.ID, Receipt: "r8",
			PurchaseAmount: p64(1500), Points: p64(99)})

		file := csvOf(repair.ReceiptsHeaderCard,
			"%s,r1,%s,1000,,"+ts(1*min-2*time.Second),
			"%s,r2,%s,2000,100,"+ts(2*min-2*time.Second),
			"%s,r3,%s,4000,,"+ts(3*min-2*time.Second),
			"%s,r4,%s,500,,"+ts(3*min+30*time.Second),
			"%s,r5,%s,800,,"+ts(4*min-2*time.Second),
			"%s,r7,%s,600,,"+ts(5*min-2*time.Second),
			"%s,r8,%s,1500,99,"+ts(7*min-2*time.Second))
		file = fmt.Sprintf(file, w.shop.ID, alice.CardNumber, w.shop.ID, bob.CardNumber, w.shop.ID, carol.CardNumber,
			w.shop.ID, alice.CardNumber, w.shop.ID, bob.CardNumber, w.shop.ID, alice.CardNumber, w.shop.ID, carol.CardNumber)

		rep := reconcile(t, w, file)
		want := []string{"4:" + repair.FindMismatch, "5:" + repair.FindMissing, "0:" + repair.FindDuplicate}
		if got := kinds(rep); !slices.Equal(got, want) {
			t.Fatalf("findings %v, want %v\n%s", got, want, text(rep))
		}
		if rep.Matched != 5 || rep.Purchases != 7 || rep.Lines != 7 || rep.Clean() {
			t.Fatalf("matched %d of %d purchases (%d lines); want 5 of 7 (7)", rep.Matched, rep.Purchases, rep.Lines)
		}
		mis, miss, dup := rep.Findings[0], rep.Findings[1], rep.Findings[2]
		if mis.TransactionID != r3.ID || *mis.POSPoints != 200 || *mis.LedgerPoints != 150 || *mis.LedgerAmount != 3000 {
			t.Errorf("mismatch finding: %+v", mis)
		}
		if c := mis.Correction; c == nil || c.Action != repair.ActionAdjust || c.MemberID != carol.ID || *c.Points != 50 ||
			!strings.HasPrefix(c.Reason, "reconcile store="+w.shop.ID+" receipt=r3: ") {
			t.Errorf("mismatch correction: %+v", mis.Correction)
		}
		if c := miss.Correction; c == nil || c.Action != repair.ActionEarn || c.MemberID != alice.ID || c.Receipt != "r4" ||
			c.StoreID != w.shop.ID || *c.PurchaseAmount != 500 || *c.Points != 25 {
			t.Errorf("missing-earn correction: %+v", miss.Correction)
		}
		if dup.TransactionID != r5b.ID || !strings.Contains(dup.Detail, r5.ID) {
			t.Errorf("duplicate finding: %+v", dup)
		}
		if c := dup.Correction; c == nil || c.Action != repair.ActionCancel || c.TransactionID != r5b.ID || c.Points != nil {
			t.Errorf("duplicate correction: %+v", dup.Correction)
		}

		// --fix: the corrections as a file, read back as --apply reads it.
		var buf bytes.Buffer
		must(t, repair.WriteCorrections(&buf, rep.Corrections()))
		if first, _, _ := strings.Cut(buf.String(), "\n"); first != repair.CorrectionsHeader {
			t.Fatalf("corrections file starts with %q", first)
		}
		cs, edited, err := repair.ReadCorrections(bytes.NewReader(buf.Bytes()))
		must(t, err)
		if len(cs) != 3 || len(edited) != 0 {
			t.Fatalf("read back %d corrections (edited %v); want 3, none edited\n%s", len(cs), edited, buf.String())
		}
		for i, c := range cs {
			if orig := rep.Corrections()[i]; c.Key != orig.Key || c.Line != i+2 || c.Note != orig.Note {
				t.Errorf("correction %d read back as %+v; written as %+v", i, c, orig)
			}
		}
		// The same ledger reconciled again proposes the same keys.
		if again := reconcile(t, w, file); !slices.Equal(keys(again.Corrections()), keys(cs)) {
			t.Fatalf("a second reconcile proposes other keys: %v, then %v", keys(cs), keys(again.Corrections()))
		}

		// --apply once.
		st, results := applyAll(t, w, cs)
		if st != (repair.ApplyStats{Applied: 3}) {
			t.Fatalf("first apply: %+v; %v", st, results)
		}
		truth := map[string]int64{alice.Name: 50 + 25 + 30, bob.Name: 100 + 40, carol.Name: 200 + 99}
		for _, m := range []ledger.Member{alice, bob, carol} {
			if got := w.balance(m); got != truth[m.Name] {
				t.Errorf("%s has %d points after apply; the POS says %d", m.Name, got, truth[m.Name])
			}
		}
		w.mustBeSound()
		head := w.head()
		if rep := reconcile(t, w, file); !rep.Clean() || rep.Matched != 7 {
			t.Fatalf("after apply: %v, %d matched; want clean, 7\n%s", kinds(rep), rep.Matched, text(rep))
		}

		// --apply again: every correction replays, nothing is written.
		st, results = applyAll(t, w, cs)
		if st != (repair.ApplyStats{AlreadyApplied: 3}) {
			t.Fatalf("second apply: %+v", st)
		}
		for i, r := range results {
			if r.Status != repair.StatusAlreadyApplied || r.TransactionID == "" {
				t.Errorf("second apply, correction %d: %s, transaction %q", i, r.Status, r.TransactionID)
			}
		}
		if got := w.head(); got != head {
			t.Fatalf("the second apply wrote %d transactions", got-head)
		}
		for _, m := range []ledger.Member{alice, bob, carol} {
			if got := w.balance(m); got != truth[m.Name] {
				t.Errorf("%s has %d points after the second apply; want %d", m.Name, got, truth[m.Name])
			}
		}
		w.mustBeSound()
	})
}

func keys(cs []repair.Correction) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Key)
	}
	return out
}

func text(r *repair.Report) string {
	var b strings.Builder
	_ = r.WriteText(&b)
	return b.String()
}

// TestReconcileReviewFindings covers what is for a human: a receipt the POS
// records twice with different content, a line repeated exactly, an earn
// credited to another member, an earn the POS does not know, and a missing
// purchase whose twin the ledger earned under another receipt number.
func TestReconcileReviewFindings(t *testing.T) {
	onEachStore(t, func(t *testing.T, w *world) {
		alice, bob := w.member("alice"), w.member("bob")
		min := time.Minute
		w.at(1 * min)
		w.earn(alice, "c1", 1000)
		w.at(2 * min)
		w.earn(alice, "m1", 2000) // the POS says bob
		w.at(3 * min)
		unknown := w.earn(bob, "u1", 700)
		w.at(4 * min)
		twin := w.earn(bob, "x-9", 900) // the POS calls it x-1
		w.at(5 * min)
		w.earn(alice, "ok", 100)
		w.at(30 * min)
		w.earn(alice, "late", 100) // after the file's range: not the POS's business

		s := w.shop.ID
		file := csvOf(repair.ReceiptsHeaderMember,
			s+",c1,"+alice.ID+",1000,,"+ts(1*min),
			s+",c1,"+alice.ID+",1200,,"+ts(1*min),
			s+",m1,"+bob.ID+",2000,,"+ts(2*min),
			s+",x-1,"+bob.ID+",900,,"+ts(4*min-20*time.Second),
			s+",ok,"+alice.ID+",100,,"+ts(5*min),
			s+",ok,"+alice.ID+",100,,"+ts(5*min))
		rep := reconcile(t, w, file)
		want := []string{"2:" + repair.FindConflict, "4:" + repair.FindMember, "5:" + repair.FindReceiptMismatch, "0:" + repair.FindUnknown}
		if got := kinds(rep); !slices.Equal(got, want) {
			t.Fatalf("findings %v, want %v\n%s", got, want, text(rep))
		}
		for _, f := range rep.Findings {
			if f.Correction != nil {
				t.Errorf("%s proposes %+v; it is for a human", f.Kind, f.Correction)
			}
		}
		if f := rep.Findings[0]; !slices.Equal(f.Lines, []int{2, 3}) {
			t.Errorf("conflict on lines %v, want 2 and 3", f.Lines)
		}
		if f := rep.Findings[2]; f.TransactionID != twin.ID {
			t.Errorf("receipt mismatch names %s, want the twin %s", f.TransactionID, twin.ID)
		}
		if f := rep.Findings[3]; f.TransactionID != unknown.ID {
			t.Errorf("unknown earn %s, want %s", f.TransactionID, unknown.ID)
		}
		if rep.Matched != 1 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "line 7 repeats line 6") {
			t.Errorf("matched %d, notes %q", rep.Matched, rep.Notes)
		}
		if len(rep.Corrections()) != 0 {
			t.Errorf("corrections proposed: %v", rep.Corrections())
		}
	})
}

// TestReconcileRefusesWhatTheLedgerDoesNotKnow: a line naming an unknown
// store or member refuses the whole file, by line.
func TestReconcileRefusesWhatTheLedgerDoesNotKnow(t *testing.T) {
	onEachStore(t, func(t *testing.T, w *world) {
		alice := w.member("alice")
		file := csvOf(repair.ReceiptsHeaderCard,
			w.shop.ID+",a,"+alice.CardNumber+",100,,"+ts(0),
			"no-such-store,b,"+alice.CardNumber+",100,,"+ts(0),
			w.shop.ID+",c,"+ledger.NewCardNumber()+",100,,"+ts(0))
		lines, err := repair.ParseReceipts(strings.NewReader(file))
		must(t, err)
		_, err = repair.Reconcile(w.ctx, w.db, lines)
		var ie *repair.InputError
		if !errors.As(err, &ie) {
			t.Fatalf("err = %v; want an InputError", err)
		}
		if len(ie.Errs) != 2 || ie.Errs[0].Line != 3 || ie.Errs[0].Field != "store_id" || ie.Errs[1].Line != 4 || ie.Errs[1].Field != "card_number" {
			t.Fatalf("errors %v", ie.Errs)
		}
	})
}

// TestApplyRefusalFailsAlone: a correction the ledger refuses fails alone,
// and is reported as failed every time, never as applied.
func TestApplyRefusalFailsAlone(t *testing.T) {
	onEachStore(t, func(t *testing.T, w *world) {
		alice := w.member("alice")
		w.earn(alice, "r1", 1000)
		cs := []repair.Correction{
			{Action: repair.ActionAdjust, MemberID: alice.ID, Points: p64(-500), Reason: "reconcile store=s receipt=r1: too much"},
			{Action: repair.ActionEarn, MemberID: alice.ID, StoreID: w.shop.ID, Receipt: "r2", PurchaseAmount: p64(100), Points: p64(5)},
			{Action: repair.ActionEarn, MemberID: alice.ID, StoreID: w.shop.ID, Receipt: "r1", PurchaseAmount: p64(100), Points: p64(5)},
		}
		for range 2 {
			st, results := applyAll(t, w, cs)
			if st.Failed != 2 || results[0].Status != repair.StatusFailed || ledger.ErrorCode(results[0].Err) != ledger.CodeInsufficientPoints ||
				ledger.ErrorCode(results[2].Err) != ledger.CodeReceiptEarned {
				t.Fatalf("%+v: %v", st, results)
			}
		}
		if got := w.balance(alice); got != 55 {
			t.Fatalf("balance %d, want 55", got)
		}
		w.mustBeSound()
	})
}
