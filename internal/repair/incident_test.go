package repair_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/repair"
)

// TestIncidentListsAWindow places transactions before, in and after a
// window with the writer's clock and checks the summary, the findings and
// the listing, in text and JSON, for all stores and for one.
func TestIncidentListsAWindow(t *testing.T) {
	onEachStore(t, func(t *testing.T, w *world) {
		alice, bob, carol, dave := w.member("alice"), w.member("bob"), w.member("carol"), w.member("dave")
		other := w.newShop()
		h := time.Hour
		m := time.Minute

		w.at(30 * m)
		e0 := w.earn(alice, "r0", 2000) // 100, before the window
		w.at(40 * m)
		w.earn(bob, "rb0", 1000) // 50

		// The window: 10:00 to 11:00.
		w.at(h + 5*m)
		e1 := w.earn(alice, "r1", 1000)
		w.at(h + 10*m)
		cancelE0 := w.do(ledger.Op{Kind: ledger.OpCancel, TransactionID: e0.ID})
		w.at(h + 15*m)
		w.do(ledger.Op{Kind: ledger.OpRedeem, MemberID: bob.ID, StoreID: other.ID, Receipt: "p1", Points: p64(40)})
		w.at(h + 20*m)
		c1 := w.earn(carol, "r2", 2000) // 100
		w.at(h + 21*m)
		w.do(ledger.Op{Kind: ledger.OpRedeem, MemberID: carol.ID, StoreID: w.shop.ID, Receipt: "p2", Points: p64(80)})
		w.at(h + 22*m)
		cancelC1 := w.do(ledger.Op{Kind: ledger.OpCancel, TransactionID: c1.ID}) // carol: 20 - 100 = -80
		w.at(h + 30*m)
		held := w.do(ledger.Op{Kind: ledger.OpHold, MemberID: bob.ID, StoreID: w.shop.ID, Points: p64(5), HoldSeconds: 7200})
		w.at(h + 35*m)
		lapsed := w.do(ledger.Op{Kind: ledger.OpHold, MemberID: alice.ID, StoreID: w.shop.ID, Points: p64(10), HoldSeconds: 60})
		w.at(h + 40*m)
		expired := w.do(ledger.Op{Kind: ledger.OpExpireHold, HoldID: lapsed.ID})
		w.at(h + 50*m)
		e2 := w.earn(alice, "r3", 1000)
		w.at(h + 55*m)
		w.do(ledger.Op{Kind: ledger.OpAdjust, MemberID: alice.ID, Points: p64(7), Reason: "goodwill"})

		// After it.
		w.at(2 * h) // the end is excluded
		w.earn(dave, "r4", 1000)
		w.at(2*h + 10*m)
		w.do(ledger.Op{Kind: ledger.OpCancel, TransactionID: e2.ID, PurchaseAmount: p64(500)})

		q := repair.IncidentQuery{From: base.Add(h), To: base.Add(2 * h), Now: w.clock.Now()}
		s, err := repair.Summarize(w.ctx, w.db, q)
		must(t, err)
		if s.Count != 11 || s.FirstSeq != e1.Seq || s.LastSeq != e1.Seq+10 {
			t.Fatalf("%d operations, seq %d to %d; want 11 from %d", s.Count, s.FirstSeq, s.LastSeq, e1.Seq)
		}
		var byType []string
		for _, x := range s.ByType {
			byType = append(byType, fmt.Sprintf("%s/%s:%d,%d,%d", x.Type, x.Outcome, x.Count, x.Points, x.PurchaseAmount))
		}
		wantTypes := []string{
			"earn/cancelled:1,100,2000", "earn/kept:1,50,1000", "earn/partly_cancelled:1,50,1000",
			"redeem/kept:2,120,0", "hold/active:1,5,0", "hold/expired:1,10,0", "hold_expire/committed:1,10,0",
			"cancel_earn/committed:2,200,4000", "adjust/committed:1,7,0",
		}
		if !slices.Equal(byType, wantTypes) {
			t.Errorf("by type:\n got %v\nwant %v", byType, wantTypes)
		}
		var byStore []string
		for _, x := range s.ByStore {
			if x.StoreID == other.ID || x.StoreID == "" {
				byStore = append(byStore, fmt.Sprintf("%s/%s:%d,%d", map[bool]string{true: "other", false: "-"}[x.StoreID == other.ID], x.Type, x.Count, x.Points))
			}
		}
		if want := []string{"-/adjust:1,7", "other/redeem:1,40"}; !slices.Equal(byStore, want) {
			t.Errorf("by store: %v, want %v", byStore, want)
		}

		var got []string
		for _, f := range s.Findings {
			got = append(got, f.Kind+":"+f.TransactionID)
		}
		want := []string{
			repair.FindNegative + ":" + cancelC1.ID,
			repair.FindCancelsBefore + ":" + cancelE0.ID,
			repair.FindEarnCancelled + ":" + c1.ID,
			repair.FindEarnCancelled + ":" + e2.ID,
			repair.FindHoldExpired + ":" + expired.ID,
			repair.FindHoldActive + ":" + held.ID,
		}
		if !slices.Equal(got, want) {
			t.Fatalf("findings:\n got %v\nwant %v", got, want)
		}
		neg := s.Findings[0]
		if neg.MemberID != carol.ID || *neg.Balance != -80 || *neg.BalanceNow != -80 {
			t.Errorf("negative balance: %+v", neg)
		}
		if d := s.Findings[3].Detail; !strings.Contains(d, "in part") || !strings.Contains(d, "25 of 50 points") {
			t.Errorf("partly cancelled earn: %s", d)
		}
		if d := s.Findings[5].Detail; strings.Contains(d, "overdue") {
			t.Errorf("a hold that is not due is called overdue: %s", d)
		}

		// The text report: summary, findings, then one line per operation.
		var out bytes.Buffer
		_, err = repair.WriteIncident(w.ctx, w.db, q, &out, false)
		must(t, err)
		report := out.String()
		_, listing, ok := strings.Cut(report, "seq created_at type store receipt member points ref purchase outcome\n")
		if !ok {
			t.Fatalf("no listing:\n%s", report)
		}
		lines := strings.Split(strings.TrimSuffix(listing, "\n"), "\n")
		if len(lines) != 11 {
			t.Fatalf("%d operation lines, want 11:\n%s", len(lines), report)
		}
		wantFirst := fmt.Sprintf("%d %s earn %s r1 %s 50 - 1000 kept", e1.Seq, "2026-03-02T10:05:00.000000Z", w.shop.ID, alice.ID)
		if lines[0] != wantFirst {
			t.Errorf("first line\n got %q\nwant %q", lines[0], wantFirst)
		}
		if last := lines[10]; !strings.HasSuffix(last, " adjust - - "+alice.ID+" 7 - 0 committed") {
			t.Errorf("last line %q", last)
		}
		for _, want := range []string{"findings (6)", "negative_balance", "balance fell to -80", "by store and type", "2026-03-02T11:00:00.000000Z"} {
			if !strings.Contains(report, want) {
				t.Errorf("the report does not say %q:\n%s", want, report)
			}
		}

		// JSON, for one store.
		q.StoreID = w.shop.ID
		out.Reset()
		_, err = repair.WriteIncident(w.ctx, w.db, q, &out, true)
		must(t, err)
		var doc struct {
			Count        int64                    `json:"count"`
			StoreID      string                   `json:"store_id"`
			Findings     []repair.IncidentFinding `json:"findings"`
			Transactions []repair.Operation       `json:"transactions"`
		}
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
			t.Fatalf("JSON report: %v\n%s", err, out.String())
		}
		if doc.Count != 9 || len(doc.Transactions) != 9 || doc.StoreID != w.shop.ID {
			t.Fatalf("one store: count %d, %d transactions, store %q; want 9", doc.Count, len(doc.Transactions), doc.StoreID)
		}
		for _, op := range doc.Transactions {
			if op.StoreID != w.shop.ID || op.CreatedAt.Before(q.From) || !op.CreatedAt.Before(q.To) {
				t.Errorf("listed %+v", op)
			}
		}
		if doc.Transactions[0].ID != e1.ID || doc.Transactions[0].Outcome != repair.OutcomeKept {
			t.Errorf("first: %+v", doc.Transactions[0])
		}

		// An empty window and a window the wrong way round.
		out.Reset()
		_, err = repair.WriteIncident(w.ctx, w.db, repair.IncidentQuery{From: base.Add(5 * h), To: base.Add(6 * h)}, &out, false)
		must(t, err)
		if !strings.Contains(out.String(), "no ledger operations in the window") {
			t.Errorf("empty window:\n%s", out.String())
		}
		if _, err := repair.Summarize(w.ctx, w.db, repair.IncidentQuery{From: base.Add(h), To: base}); err == nil {
			t.Error("a window that ends before it starts was accepted")
		}
		w.mustBeSound()
	})
}
