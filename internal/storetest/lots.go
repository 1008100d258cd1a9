package storetest

import (
	"testing"

	"github.com/pointd/pointd/internal/ledger"
)

var lotCases = []suiteCase{
	{"a member's lots say the merchant that earned them, through merges; an adjustment's none", testLotMerchants},
}

// testLotMerchants: what a pos key may see of a member's lots is decided by
// the merchant of the earn that made each (the API shows a merchant only
// its own), so the store must name it for every lot, a lot that moved in a
// merge too, and name none for points no merchant gave.
func testLotMerchants(t *testing.T, e *env) {
	w := e.world()
	m, other := e.member(), e.member()
	atA := e.earnPoints(m, w.a1, 10)
	atB := e.earnPoints(m, w.b1, 20)
	adj := e.do(ledger.Op{Kind: ledger.OpAdjust, MemberID: m.ID, Points: ptr(30), Reason: "goodwill"})
	moved := e.earnPoints(other, w.b1, 40)
	e.merge(m, other)

	lots, err := e.raw.MemberLots(e.ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{atA.Transaction.ID: w.a.ID, atB.Transaction.ID: w.b.ID,
		adj.Transaction.ID: "", moved.Transaction.ID: w.b.ID}
	if len(lots) != len(want) {
		t.Fatalf("lots %s; want one for each of the 4 credits", fmtLots(lots))
	}
	for _, l := range lots {
		mid, ok := want[l.ID]
		if !ok || l.MerchantID != mid {
			t.Errorf("lot %s (%d points) says merchant %q; want %q", l.ID, l.Remaining, l.MerchantID, mid)
		}
	}
}
