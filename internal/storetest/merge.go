package storetest

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
)

// The merge of two members who are one person (docs/api.md, "Merging
// members"): cases of the conformance suite.
var mergeCases = []suiteCase{
	{"a merge moves the balance and every open lot with its expiry, and the merged member ends merged", testMergeMoves},
	{"a merged member's card finds the member it went into, and its history reads under it", testMergeCardHistory},
	{"refunds of a merged member's earns and redemptions reach the member it went into", testMergeRefunds},
	{"a merge is refused into itself, from or into a merged or withdrawn member, and with points held", testMergeRefusals},
	{"a debt moves with a merge, and a debt of the member merged into is paid first", testMergeDebt},
	{"a merge is idempotent", testMergeIdempotent},
	{"members merged into a merged member follow it", testMergeChain},
	{"in one batch, what comes before a merge reaches the merged member and what comes after is refused", testMergeInBatch},
	{"a merge revokes the merged member's sessions", testMergeSessions},
}

func (e *env) merge(into, from ledger.Member) ledger.Result {
	e.t.Helper()
	return e.do(ledger.Op{Kind: ledger.OpMerge, MemberID: into.ID, FromMemberID: from.ID, Reason: "one person, two cards"})
}

func (e *env) mustMember(id string) ledger.Member {
	e.t.Helper()
	m, err := e.raw.Member(e.ctx, id)
	if err != nil {
		e.t.Fatalf("member %s: %v", id, err)
	}
	return m
}

func testMergeMoves(t *testing.T, e *env) {
	w := e.world()
	a, b := e.member(), e.member()
	ownA := e.earnPoints(a, w.a1, 100) // expires in 30 days
	e.clock.Advance(24 * time.Hour)
	b1 := e.earnPoints(b, w.a1, 50) // 30 days from a day later
	e.clock.Advance(24 * time.Hour)
	b2 := e.earnPoints(b, w.b1, 200) // 90 days
	e.redeem(b, w.a2, 30)            // from b1 first: 20 left
	exp1, exp2 := ledger.ExpiryAt(epoch.Add(24*time.Hour), 30), ledger.ExpiryAt(epoch.Add(48*time.Hour), 90)
	e.wantLots(b, ledger.Lot{ID: b1.Transaction.ID, Remaining: 20, ExpiresAt: exp1}, ledger.Lot{ID: b2.Transaction.ID, Remaining: 200, ExpiresAt: exp2})
	before := e.accountBalances()

	res := e.merge(a, b)
	tx := res.Transaction
	if tx.Type != ledger.TxMerge || tx.MemberID != a.ID || tx.RefID != b.ID || tx.Points != 220 || tx.Reason == "" {
		t.Fatalf("merge transaction %+v; want a merge of 220 points of %s into %s with its reason", tx, b.ID, a.ID)
	}
	want := []ledger.Posting{{AccountID: a.AccountID, Amount: 220}, {AccountID: b.AccountID, Amount: -220}}
	slices.SortFunc(want, func(x, y ledger.Posting) int { return int(x.AccountID - y.AccountID) })
	if !slices.Equal(tx.Postings, want) {
		t.Fatalf("merge postings %+v; want %+v", tx.Postings, want)
	}
	if res.Balance != (ledger.Balance{MemberID: a.ID, Balance: 320, Available: 320}) {
		t.Fatalf("merge answers balance %+v; want 320 for the member merged into", res.Balance)
	}
	stored := e.txn(tx.ID)
	if stored.Type != ledger.TxMerge || stored.RefID != b.ID || stored.Points != 220 || !slices.Equal(stored.Postings, want) ||
		stored.Reason != tx.Reason || !bytes.Equal(stored.Hash, ledger.ChainHash(stored.PrevHash, &stored)) {
		t.Fatalf("stored merge %+v; want what was answered, hash-chained", stored)
	}
	e.wantBalance(a, 320, 0)
	e.wantBalance(b, 0, 0)
	// Every open lot of b is a's now, with its own id, points and expiry;
	// a's own lot stays as it was. Nothing else moved.
	e.wantLots(a,
		ledger.Lot{ID: ownA.Transaction.ID, Remaining: 100, ExpiresAt: ledger.ExpiryAt(epoch, 30)},
		ledger.Lot{ID: b1.Transaction.ID, Points: 50, Remaining: 20, ExpiresAt: exp1},
		ledger.Lot{ID: b2.Transaction.ID, Points: 200, Remaining: 200, ExpiresAt: exp2})
	e.wantLots(b)
	after := e.accountBalances()
	for id, bal := range after {
		d := bal - before[id]
		switch id {
		case a.AccountID:
			if d != 220 {
				t.Errorf("the member merged into gained %d; want 220", d)
			}
		case b.AccountID:
			if d != -220 {
				t.Errorf("the merged member lost %d; want 220", -d)
			}
		default:
			if d != 0 {
				t.Errorf("account %d changed by %d in a merge", id, d)
			}
		}
	}
	mb := e.mustMember(b.ID)
	if mb.Status != ledger.StatusMerged || mb.MergedInto != a.ID {
		t.Fatalf("merged member reads %+v; want status merged into %s", mb, a.ID)
	}
	if ma := e.mustMember(a.ID); ma.Status != ledger.StatusActive || ma.MergedInto != "" {
		t.Fatalf("member merged into reads %+v; want it active and merged into nothing", ma)
	}
	// Nothing reaches the merged member any more; the refusal names where
	// it went.
	head := e.head()
	for _, op := range []ledger.Op{
		{Kind: ledger.OpEarn, MemberID: b.ID, StoreID: w.a1.ID, Receipt: "after", PurchaseAmount: ptr(1000)},
		{Kind: ledger.OpRedeem, MemberID: b.ID, StoreID: w.a1.ID, Receipt: "after", Points: ptr(1)},
		{Kind: ledger.OpHold, MemberID: b.ID, StoreID: w.a1.ID, Points: ptr(1)},
		{Kind: ledger.OpAdjust, MemberID: b.ID, Points: ptr(5), Reason: "x"},
	} {
		le := e.fail(ledger.CodeMemberMerged, op)
		if !bytes.Contains([]byte(le.Message), []byte(a.ID)) {
			t.Errorf("%s refused with %q; want the message to name %s", op.Kind, le.Message, a.ID)
		}
	}
	if e.head() != head {
		t.Fatal("refused operations on a merged member wrote transactions")
	}
	// The points spend and expire as a's, each lot on its own date.
	e.redeem(a, w.a1, 110) // a's own 100 (earliest), then 10 of b1
	e.wantLots(a, ledger.Lot{ID: b1.Transaction.ID, Remaining: 10}, ledger.Lot{ID: b2.Transaction.ID, Remaining: 200})
	e.clock.Advance(40 * 24 * time.Hour)
	e.expireDue()
	e.wantBalance(a, 200, 0)
	e.wantLots(a, ledger.Lot{ID: b2.Transaction.ID, Remaining: 200, ExpiresAt: exp2})
}

func testMergeCardHistory(t *testing.T, e *env) {
	w := e.world()
	a, b := e.member(), e.member()
	e.earnPoints(a, w.a1, 10)
	bEarn := e.earnPoints(b, w.b1, 20)
	bRedeem := e.redeem(b, w.b1, 5)
	ownB, err := e.raw.MemberTransactions(e.ctx, b.ID, 0, 100)
	if err != nil || len(ownB) != 2 {
		t.Fatalf("b's history before the merge: %d entries, %v", len(ownB), err)
	}
	m := e.merge(a, b)
	got, err := e.raw.MemberByCard(e.ctx, b.CardNumber)
	if err != nil || got.ID != a.ID {
		t.Fatalf("b's card finds %+v, %v; want member %s", got, err, a.ID)
	}
	if got, err := e.raw.MemberByCard(e.ctx, a.CardNumber); err != nil || got.ID != a.ID {
		t.Fatalf("a's card finds %+v, %v; want a", got, err)
	}
	// An earn by b's card goes to a (the API resolves cards through
	// MemberByCard): shown here by earning on what the card found.
	e.earnPoints(got, w.a1, 7)
	e.wantBalance(a, 32, 0)
	// a's history holds b's transactions and the merge, newest first.
	hist, err := e.raw.MemberTransactions(e.ctx, a.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, tx := range hist {
		ids = append(ids, tx.ID)
		if i > 0 && tx.Seq >= hist[i-1].Seq {
			t.Fatalf("a's history is not newest first")
		}
	}
	for _, id := range []string{bEarn.Transaction.ID, bRedeem.Transaction.ID, m.Transaction.ID} {
		if !slices.Contains(ids, id) {
			t.Fatalf("a's history %v lacks %s", ids, id)
		}
	}
	if len(hist) != 5 {
		t.Fatalf("a's history has %d entries; want 5 (2 own earns, b's earn and redemption, the merge)", len(hist))
	}
	// Pages still go back through all of it.
	var paged []string
	before := int64(0)
	for range 10 {
		page, err := e.raw.MemberTransactions(e.ctx, a.ID, before, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, tx := range page {
			paged = append(paged, tx.ID)
		}
		before = page[len(page)-1].Seq
	}
	if !slices.Equal(paged, ids) {
		t.Fatalf("paging a's history by 2: %v; want %v", paged, ids)
	}
	// The member side's filtered history reads the same way.
	if ms, ok := e.raw.(member.Store); ok {
		h, err := ms.History(e.ctx, a.ID, member.HistoryFilter{Types: []ledger.TxType{ledger.TxRedeem}}, 0, 10)
		if err != nil || len(h) != 1 || h[0].ID != bRedeem.Transaction.ID {
			t.Fatalf("a's redemptions: %+v, %v; want b's redemption", h, err)
		}
	}
	// b's own history is still b's.
	if again, err := e.raw.MemberTransactions(e.ctx, b.ID, 0, 100); err != nil || len(again) != 2 {
		t.Fatalf("b's history after the merge: %d entries, %v; want its 2", len(again), err)
	}
}

func testMergeRefunds(t *testing.T, e *env) {
	w := e.world()
	a, b := e.member(), e.member()
	e.earnPoints(a, w.a1, 100)
	bEarn := e.earn(b, w.a1, "R-1", 10_000) // 150 points
	bRedeem := e.redeem(b, w.a1, 40)
	e.merge(a, b)
	e.wantBalance(a, 210, 0)
	// A POS of the merchant refunds b's purchase: the points come back
	// from a, and first from the lot that purchase made.
	c := e.do(ledger.Op{Kind: ledger.OpCancel, Actor: pos(w.a, w.a1.ID), TransactionID: bEarn.Transaction.ID, PurchaseAmount: ptr(5000)})
	if c.Transaction.MemberID != a.ID || c.Transaction.Points != 75 {
		t.Fatalf("refund of b's earn %+v; want 75 points taken from %s", c.Transaction, a.ID)
	}
	e.wantBalance(a, 135, 0)
	e.wantBalance(b, 0, 0)
	e.wantLots(a, ledger.Lot{Remaining: 100}, ledger.Lot{ID: bEarn.Transaction.ID, Remaining: 35})
	r := e.do(ledger.Op{Kind: ledger.OpCancel, TransactionID: bRedeem.Transaction.ID})
	if r.Transaction.MemberID != a.ID || r.Transaction.Points != 40 {
		t.Fatalf("refund of b's redemption %+v; want 40 points given to %s", r.Transaction, a.ID)
	}
	e.wantBalance(a, 175, 0)
	e.wantBalance(b, 0, 0)
}

func testMergeRefusals(t *testing.T, e *env) {
	w := e.world()
	a, b, c := e.member(), e.member(), e.member()
	e.earnPoints(a, w.a1, 10)
	e.earnPoints(b, w.a1, 50)
	head := e.head()
	le := e.fail(ledger.CodeValidation, ledger.Op{Kind: ledger.OpMerge, MemberID: a.ID, FromMemberID: a.ID, Reason: "x"})
	if le.Field != "from_member_id" {
		t.Fatalf("a merge into itself names %q; want from_member_id", le.Field)
	}
	if le := e.fail(ledger.CodeValidation, ledger.Op{Kind: ledger.OpMerge, MemberID: a.ID, FromMemberID: b.ID}); le.Field != "reason" {
		t.Fatalf("a merge without a reason names %q; want reason", le.Field)
	}
	if le := e.fail(ledger.CodeMemberNotFound, ledger.Op{Kind: ledger.OpMerge, MemberID: a.ID, FromMemberID: "nobody", Reason: "x"}); le.Field != "from_member_id" {
		t.Fatalf("an unknown merged member names %q; want from_member_id", le.Field)
	}
	if le := e.fail(ledger.CodeMemberNotFound, ledger.Op{Kind: ledger.OpMerge, MemberID: "nobody", FromMemberID: b.ID, Reason: "x"}); le.Field != "member_id" {
		t.Fatalf("an unknown member merged into names %q; want member_id", le.Field)
	}
	if got := e.head(); got != head {
		t.Fatalf("refused merges moved the chain head from %v to %v", head, got)
	}
	// Points held: the hold's capture or void belongs to the merged member.
	h := e.hold(b, w.a1, 20, 600)
	head = e.head()
	le = e.fail(ledger.CodeMergeRefused, ledger.Op{Kind: ledger.OpMerge, MemberID: a.ID, FromMemberID: b.ID, Reason: "x"})
	if !bytes.Contains([]byte(le.Message), []byte("capture or void")) {
		t.Fatalf("refusal for a hold says %q; want it to say to capture or void it", le.Message)
	}
	if got := e.head(); got != head {
		t.Fatalf("a merge refused for a hold moved the chain head from %v to %v", head, got)
	}
	e.do(ledger.Op{Kind: ledger.OpVoid, HoldID: h.Hold.ID})
	// Points held by the member merged into do not matter.
	e.hold(a, w.a1, 5, 600)
	e.merge(a, b)
	e.wantBalance(a, 60, 5)
	head = e.head()
	// Merged: neither side again.
	if le := e.fail(ledger.CodeMemberMerged, ledger.Op{Kind: ledger.OpMerge, MemberID: c.ID, FromMemberID: b.ID, Reason: "x"}); !bytes.Contains([]byte(le.Message), []byte(a.ID)) {
		t.Fatalf("merging a merged member says %q; want it to name %s", le.Message, a.ID)
	}
	e.fail(ledger.CodeMemberMerged, ledger.Op{Kind: ledger.OpMerge, MemberID: b.ID, FromMemberID: c.ID, Reason: "x"})
	// Withdrawn: neither side.
	if ms, ok := e.raw.(member.Store); ok {
		must(t, ms.Withdraw(e.ctx, c.ID, e.clock.Now()))
		e.fail(ledger.CodeMergeRefused, ledger.Op{Kind: ledger.OpMerge, MemberID: a.ID, FromMemberID: c.ID, Reason: "x"})
		e.fail(ledger.CodeMergeRefused, ledger.Op{Kind: ledger.OpMerge, MemberID: c.ID, FromMemberID: a.ID, Reason: "x"})
	}
	if e.head() != head {
		t.Fatal("refused merges wrote transactions")
	}
	if got := e.mustMember(a.ID); got.Status != ledger.StatusActive {
		t.Fatalf("a refused merge changed the member merged into: %+v", got)
	}
}

func testMergeDebt(t *testing.T, e *env) {
	w := e.world()
	a, b := e.member(), e.member()
	aLot := e.earnPoints(a, w.a1, 50)
	spent := e.earnPoints(b, w.a1, 100)
	e.redeem(b, w.a1, 80)
	e.do(ledger.Op{Kind: ledger.OpCancel, TransactionID: spent.Transaction.ID}) // b owes 80
	e.wantBalance(b, -80, 0)
	m := e.merge(a, b)
	if m.Transaction.Points != -80 {
		t.Fatalf("merge of a debt moved %d; want -80", m.Transaction.Points)
	}
	// b's debt is a's now: paid from a's 50, 30 still owed.
	e.wantBalance(a, -30, 0)
	e.wantBalance(b, 0, 0)
	e.wantLots(a)
	_ = aLot
	e.earnPoints(a, w.a1, 100)
	e.wantBalance(a, 70, 0)

	// The other way: a member in debt receives lots; the debt is paid first.
	c, d := e.member(), e.member()
	x := e.earnPoints(c, w.a1, 40)
	e.redeem(c, w.a1, 40)
	e.do(ledger.Op{Kind: ledger.OpCancel, TransactionID: x.Transaction.ID}) // c owes 40
	dl := e.earnPoints(d, w.b1, 100)
	e.merge(c, d)
	e.wantBalance(c, 60, 0)
	e.wantLots(c, ledger.Lot{ID: dl.Transaction.ID, Points: 100, Remaining: 60})
}

func testMergeIdempotent(t *testing.T, e *env) {
	w := e.world()
	a, b := e.member(), e.member()
	e.earnPoints(b, w.a1, 30)
	op := ledger.Op{Kind: ledger.OpMerge, Actor: e.admin, IdempotencyKey: newKey(), MemberID: a.ID, FromMemberID: b.ID, Reason: "dup"}
	first := e.do(op)
	head := e.head()
	again, err := e.submit(op)
	if err != nil || !again.Replayed || !bytes.Equal(again.Body, first.Body) {
		t.Fatalf("retry of a merge: %+v, %v; want the first answer replayed", again, err)
	}
	if e.head() != head {
		t.Fatal("a replayed merge wrote a transaction")
	}
	other := op
	other.Reason = "another reason"
	e.fail(ledger.CodeIdempotencyReused, other)
	e.wantBalance(a, 30, 0)
}

func testMergeChain(t *testing.T, e *env) {
	w := e.world()
	a, b, c := e.member(), e.member(), e.member()
	cEarn := e.earnPoints(c, w.a1, 10)
	e.earnPoints(b, w.a1, 20)
	e.merge(b, c)
	e.merge(a, b)
	if got := e.mustMember(c.ID); got.Status != ledger.StatusMerged || got.MergedInto != a.ID {
		t.Fatalf("c after b went into a: %+v; want merged into %s", got, a.ID)
	}
	if got, err := e.raw.MemberByCard(e.ctx, c.CardNumber); err != nil || got.ID != a.ID {
		t.Fatalf("c's card finds %+v, %v; want a", got, err)
	}
	e.wantBalance(a, 30, 0)
	hist, err := e.raw.MemberTransactions(e.ctx, a.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 4 { // c's earn, b's earn, both merges
		t.Fatalf("a's history has %d entries; want 4", len(hist))
	}
	c2 := e.do(ledger.Op{Kind: ledger.OpCancel, TransactionID: cEarn.Transaction.ID})
	if c2.Transaction.MemberID != a.ID {
		t.Fatalf("refund of c's earn reached %s; want a", c2.Transaction.MemberID)
	}
	e.wantBalance(a, 20, 0)
}

func testMergeInBatch(t *testing.T, e *env) {
	w := e.world()
	a, b := e.member(), e.member()
	e.earnPoints(b, w.a1, 10)
	ops := []ledger.Op{
		{Kind: ledger.OpEarn, Actor: e.admin, IdempotencyKey: newKey(), MemberID: b.ID, StoreID: w.b1.ID, Receipt: "b-1", PurchaseAmount: ptr(0), Points: ptr(25)},
		{Kind: ledger.OpMerge, Actor: e.admin, IdempotencyKey: newKey(), MemberID: a.ID, FromMemberID: b.ID, Reason: "same batch"},
		{Kind: ledger.OpEarn, Actor: e.admin, IdempotencyKey: newKey(), MemberID: b.ID, StoreID: w.b1.ID, Receipt: "b-2", PurchaseAmount: ptr(0), Points: ptr(5)},
		{Kind: ledger.OpEarn, Actor: e.admin, IdempotencyKey: newKey(), MemberID: a.ID, StoreID: w.b1.ID, Receipt: "a-1", PurchaseAmount: ptr(0), Points: ptr(1)},
	}
	res, errs := e.concurrently(ops)
	if errs[0] != nil || errs[1] != nil || errs[3] != nil {
		t.Fatalf("earn, merge, earn on the member merged into: %v, %v, %v", errs[0], errs[1], errs[3])
	}
	wantCode(t, errs[2], ledger.CodeMemberMerged)
	if res[1].Transaction.Points != 35 {
		t.Fatalf("the merge moved %d; want the 35 points b had by then", res[1].Transaction.Points)
	}
	e.wantBalance(a, 36, 0)
	e.wantBalance(b, 0, 0)
	e.wantLots(b)
	// Same expiry: by id, the order the earns were made in.
	e.wantLots(a, ledger.Lot{Remaining: 10}, ledger.Lot{ID: res[0].Transaction.ID, Remaining: 25}, ledger.Lot{ID: res[3].Transaction.ID, Remaining: 1})
}

func testMergeSessions(t *testing.T, e *env) {
	ms, ok := e.raw.(member.Store)
	if !ok {
		t.Skip("the store has no member side")
	}
	a, b := e.member(), e.member()
	now := e.clock.Now()
	for i, who := range []ledger.Member{a, b} {
		must(t, ms.CreateSession(e.ctx, member.Session{ID: "merge-s" + who.ID, Hash: []byte{9, byte(i)}, Prefix: "p", MemberID: who.ID,
			Mode: "live", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	}
	e.merge(a, b)
	sb, err := ms.SessionByHash(e.ctx, []byte{9, 1})
	if err != nil || sb.RevokedAt.IsZero() {
		t.Fatalf("the merged member's session after the merge: %+v, %v; want it revoked", sb, err)
	}
	sa, err := ms.SessionByHash(e.ctx, []byte{9, 0})
	if err != nil || !sa.RevokedAt.IsZero() {
		t.Fatalf("the session of the member merged into: %+v, %v; want it working", sa, err)
	}
}
