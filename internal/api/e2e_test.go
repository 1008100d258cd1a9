package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/privacy"
)

// TestEndToEnd walks one member's life through the API, on both stores: an
// admin sets up a merchant, a store, a member and a POS key; the POS earns,
// redeems, holds, captures, voids and cancels; an admin adjusts; the history
// pages back everything newest first.
func TestEndToEnd(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run("on "+string(b), func(t *testing.T) {
			endToEnd(t, newHarness(t, withBackend(b)))
		})
	}
}

func endToEnd(t *testing.T, h0 *harness) {
	var (
		merchant ledger.Merchant
		shop     ledger.Shop
		member   ledger.Member
		pos      string
		balance  int64    // what the member should have
		ids      []string // every transaction of the member, oldest first
		earns    = map[int64]opResponse{}
		redeem   opResponse
	)
	// step runs one step; a failed step stops the walk.
	step := func(name string, f func(t *testing.T, h *harness)) {
		t.Helper()
		if !t.Run(name, func(t *testing.T) { f(t, h0.at(t)) }) {
			t.FailNow()
		}
	}
	// op posts a ledger operation with key and checks the balances it answers.
	op := func(t *testing.T, h *harness, path, key string, body any, typ ledger.TxType, points, delta, held int64) opResponse {
		t.Helper()
		r := want[opResponse](t, h.post(path, key, h.idem(), body), http.StatusCreated)
		balance += delta
		if r.Type != typ || r.Points != points || r.MemberID != member.ID {
			t.Errorf("got a %s of %d points for %s, want a %s of %d for %s", r.Type, r.Points, r.MemberID, typ, points, member.ID)
		}
		if r.Balance != balance || r.Held != held || r.Available != balance-held {
			t.Errorf("answered balance %d held %d available %d, want %d, %d, %d", r.Balance, r.Held, r.Available, balance, held, balance-held)
		}
		var sum int64
		for _, p := range r.Postings {
			sum += p.Amount
		}
		if sum != 0 {
			t.Errorf("postings %+v do not sum to zero", r.Postings)
		}
		if r.ID == "" || r.Seq == 0 || r.CreatedAt.IsZero() {
			t.Errorf("transaction without id, seq or time: %+v", r.Transaction)
		}
		ids = append(ids, r.ID)
		return r
	}

	step("an admin creates a merchant earning 150 basis points", func(t *testing.T, h *harness) {
		merchant = h.createMerchant("Café Aurora", rateA)
		if merchant.ID == "" || merchant.EarnRateBP != rateA || merchant.PointValidityDays != 365 || merchant.Status != "active" || merchant.Name != "Café Aurora" {
			t.Fatalf("merchant %+v", merchant)
		}
		got := want[ledger.Merchant](t, h.get("/v1/merchants/"+merchant.ID, h.admin), http.StatusOK)
		if got.ID != merchant.ID || got.EarnRateBP != rateA {
			t.Fatalf("read back %+v, created %+v", got, merchant)
		}
	})
	step("the admin opens a store of the merchant", func(t *testing.T, h *harness) {
		shop = h.createStore(merchant.ID, "Harbour street")
		if shop.ID == "" || shop.MerchantID != merchant.ID || shop.Name != "Harbour street" {
			t.Fatalf("store %+v", shop)
		}
		got := want[ledger.Shop](t, h.get("/v1/stores/"+shop.ID, h.admin), http.StatusOK)
		if got.ID != shop.ID || got.MerchantID != merchant.ID {
			t.Fatalf("read back %+v, created %+v", got, shop)
		}
	})
	step("the admin enrols a member whose card number passes the Luhn check", func(t *testing.T, h *harness) {
		member = h.createMember("+1 (555) 010-4477", "Ada Lovelace")
		if !ledger.ValidCardNumber(member.CardNumber) {
			t.Fatalf("card number %q fails the Luhn check", member.CardNumber)
		}
		// Answers mask the phone; an admin reads it whole only by asking.
		whole := want[ledger.Member](t, h.get("/v1/members/"+member.ID+"?reveal=phone", h.admin), http.StatusOK)
		if whole.Phone != "+15550104477" || member.Name != "Ada Lovelace" || member.Status != "active" {
			t.Fatalf("member %+v, revealed %+v", member, whole)
		}
		member.Phone = whole.Phone
		if b := h.balance(member.ID); b != (ledger.Balance{MemberID: member.ID}) {
			t.Fatalf("a new member has %+v", b)
		}
	})
	step("the admin issues a POS key bound to the merchant", func(t *testing.T, h *harness) {
		pos = h.createPOSKey(merchant.ID, "")
		p := want[map[string]any](t, h.post("/v1/ping", pos, "", nil), http.StatusOK)
		if p["pong"] != true {
			t.Fatalf("ping with the new key: %v", p)
		}
	})

	step("the POS earns floor(amount × 150 ÷ 10000) points on each purchase", func(t *testing.T, h *harness) {
		for _, c := range []struct {
			name           string
			amount, points int64
			byCard         bool
		}{
			{"a purchase of 12345 earns 185 points, rounded down", 12345, 185, true},
			{"a purchase of 10000 earns exactly 150 points", 10000, 150, false},
			{"a purchase of 99 earns 1 point", 99, 1, true},
			{"a purchase of 66 earns no point at all", 66, 0, false},
			{"a purchase of 1000000 earns 15000 points", 1_000_000, 15000, false},
		} {
			t.Run(c.name, func(t *testing.T) {
				h := h.at(t)
				body := map[string]any{"store_id": shop.ID, "receipt": h.receipt(), "purchase_amount": c.amount}
				if c.byCard {
					body["card_number"] = member.CardNumber
				} else {
					body["member_id"] = member.ID
				}
				r := op(t, h, "/v1/earns", pos, body, ledger.TxEarn, c.points, c.points, 0)
				if r.MerchantID != merchant.ID || r.StoreID != shop.ID || r.Receipt != body["receipt"] || r.PurchaseAmount != c.amount {
					t.Errorf("earn %+v", r.Transaction)
				}
				earns[c.amount] = r
			})
		}
	})
	step("the balance answers balance, held and available", func(t *testing.T, h *harness) {
		raw := want[map[string]any](t, h.get("/v1/members/"+member.ID+"/balance", pos), http.StatusOK)
		keys := make([]string, 0, len(raw))
		for k := range raw {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"available", "balance", "held", "member_id"}) {
			t.Errorf("balance has fields %v", keys)
		}
		if b := h.balance(member.ID); b != (ledger.Balance{MemberID: member.ID, Balance: balance, Available: balance}) {
			t.Errorf("balance %+v, want %d", b, balance)
		}
	})
	step("the POS redeems points", func(t *testing.T, h *harness) {
		redeem = op(t, h, "/v1/redemptions", pos, map[string]any{
			"member_id": member.ID, "store_id": shop.ID, "receipt": h.receipt(), "points": 200,
		}, ledger.TxRedeem, 200, -200, 0)
	})
	step("a redemption of more than the member has is refused and writes nothing", func(t *testing.T, h *harness) {
		before := h.snap(member.ID)
		problem(t, h.post("/v1/redemptions", pos, h.idem(), map[string]any{
			"member_id": member.ID, "store_id": shop.ID, "receipt": h.receipt(), "points": balance + 1,
		}), http.StatusUnprocessableEntity, ledger.CodeInsufficientPoints, "-")
		h.unchanged(before, member.ID)
	})
	step("a card number sent as member_id is refused with where it goes, and writes nothing", func(t *testing.T, h *harness) {
		before := h.snap(member.ID)
		for path, body := range map[string]map[string]any{
			"/v1/earns":       {"store_id": shop.ID, "receipt": h.receipt(), "purchase_amount": 1000},
			"/v1/redemptions": {"store_id": shop.ID, "receipt": h.receipt(), "points": 1},
			"/v1/holds":       {"store_id": shop.ID, "points": 1},
		} {
			body["member_id"] = member.CardNumber
			p := problem(t, h.post(path, pos, h.idem(), body), http.StatusBadRequest, ledger.CodeValidation, "member_id")
			if !strings.Contains(p.Detail, "send it as card_number") {
				t.Errorf("%s: detail %q does not say to send card_number", path, p.Detail)
			}
		}
		h.unchanged(before, member.ID)
	})
	step("a hold captured in part posts the part and releases the rest", func(t *testing.T, h *harness) {
		hold := op(t, h, "/v1/holds", pos, map[string]any{
			"card_number": member.CardNumber, "store_id": shop.ID, "points": 100, "expires_in_seconds": 600,
		}, ledger.TxHold, 100, 0, 100)
		if hold.Hold == nil || hold.Hold.ID != hold.ID || hold.Hold.Status != ledger.HoldActive || hold.Hold.Points != 100 {
			t.Fatalf("hold %+v", hold.Hold)
		}
		got := want[ledger.Hold](t, h.get("/v1/holds/"+hold.ID, pos), http.StatusOK)
		if got.Status != ledger.HoldActive || got.Points != 100 {
			t.Fatalf("hold reads %+v", got)
		}
		if b := h.balance(member.ID); b.Held != 100 || b.Available != balance-100 || b.Balance != balance {
			t.Fatalf("while held: %+v, balance %d", b, balance)
		}
		c := op(t, h, "/v1/holds/"+hold.ID+"/capture", pos, map[string]any{"points": 60}, ledger.TxRedeem, 60, -60, 0)
		if c.RefID != hold.ID || c.Hold == nil || c.Hold.Status != ledger.HoldCaptured {
			t.Errorf("capture %+v, hold %+v", c.Transaction, c.Hold)
		}
		if got := want[ledger.Hold](t, h.get("/v1/holds/"+hold.ID, pos), http.StatusOK); got.Status != ledger.HoldCaptured {
			t.Errorf("the hold reads %s after its capture", got.Status)
		}
		before := h.snap(member.ID)
		problem(t, h.post("/v1/holds/"+hold.ID+"/capture", pos, h.idem(), nil), http.StatusConflict, ledger.CodeHoldNotActive, "-")
		problem(t, h.post("/v1/holds/"+hold.ID+"/void", pos, h.idem(), nil), http.StatusConflict, ledger.CodeHoldNotActive, "-")
		h.unchanged(before, member.ID)
	})
	step("a voided hold gives every point back", func(t *testing.T, h *harness) {
		hold := op(t, h, "/v1/holds", pos, map[string]any{"member_id": member.ID, "store_id": shop.ID, "points": 30},
			ledger.TxHold, 30, 0, 30)
		v := op(t, h, "/v1/holds/"+hold.ID+"/void", pos, nil, ledger.TxHoldVoid, 30, 0, 0)
		if v.RefID != hold.ID || v.Hold == nil || v.Hold.Status != ledger.HoldVoided {
			t.Errorf("void %+v, hold %+v", v.Transaction, v.Hold)
		}
	})
	step("cancelling an earn in full takes back all its points, once", func(t *testing.T, h *harness) {
		e := earns[12345]
		c := op(t, h, "/v1/cancellations", pos, map[string]any{"transaction_id": e.ID}, ledger.TxCancelEarn, 185, -185, 0)
		if c.RefID != e.ID || c.PurchaseAmount != 12345 {
			t.Errorf("cancel %+v", c.Transaction)
		}
		before := h.snap(member.ID)
		problem(t, h.post("/v1/cancellations", pos, h.idem(), map[string]any{"transaction_id": e.ID}),
			http.StatusUnprocessableEntity, ledger.CodeCancelExceeds, "-")
		h.unchanged(before, member.ID)
	})
	step("cancelling an earn in part by points never takes more than is left", func(t *testing.T, h *harness) {
		e := earns[1_000_000]
		op(t, h, "/v1/cancellations", pos, map[string]any{"transaction_id": e.ID, "points": 5000}, ledger.TxCancelEarn, 5000, -5000, 0)
		before := h.snap(member.ID)
		problem(t, h.post("/v1/cancellations", pos, h.idem(), map[string]any{"transaction_id": e.ID, "points": 10001}),
			http.StatusUnprocessableEntity, ledger.CodeCancelExceeds, "-")
		h.unchanged(before, member.ID)
		got := want[ledger.Transaction](t, h.get("/v1/transactions/"+e.ID, pos), http.StatusOK)
		if got.CancelledPoints != 5000 {
			t.Errorf("the earn counts %d points cancelled, want 5000", got.CancelledPoints)
		}
	})
	step("partial cancels by purchase amount sum to exactly the original points", func(t *testing.T, h *harness) {
		e := earns[10000] // 150 points
		// floor(150 × 3333 ÷ 10000) = 49; the last refund takes what is left: 101.
		op(t, h, "/v1/cancellations", pos, map[string]any{"transaction_id": e.ID, "purchase_amount": 3333}, ledger.TxCancelEarn, 49, -49, 0)
		op(t, h, "/v1/cancellations", pos, map[string]any{"transaction_id": e.ID, "purchase_amount": 6667}, ledger.TxCancelEarn, 101, -101, 0)
		got := want[ledger.Transaction](t, h.get("/v1/transactions/"+e.ID, pos), http.StatusOK)
		if got.CancelledPoints != 150 || got.CancelledAmount != 10000 {
			t.Errorf("the earn counts %d points and %d of the amount cancelled, want 150 and 10000", got.CancelledPoints, got.CancelledAmount)
		}
		before := h.snap(member.ID)
		problem(t, h.post("/v1/cancellations", pos, h.idem(), map[string]any{"transaction_id": e.ID, "purchase_amount": 1}),
			http.StatusUnprocessableEntity, ledger.CodeCancelExceeds, "-")
		h.unchanged(before, member.ID)
	})
	step("cancelling a redemption in part gives points back", func(t *testing.T, h *harness) {
		c := op(t, h, "/v1/cancellations", pos, map[string]any{"transaction_id": redeem.ID, "points": 50}, ledger.TxCancelRedeem, 50, 50, 0)
		if c.RefID != redeem.ID {
			t.Errorf("cancel %+v", c.Transaction)
		}
	})
	step("an admin adjusts the balance up and down, with a reason", func(t *testing.T, h *harness) {
		a := op(t, h, "/v1/adjustments", h.admin, map[string]any{"card_number": member.CardNumber, "points": 500, "reason": "goodwill"},
			ledger.TxAdjust, 500, 500, 0)
		if a.Reason != "goodwill" {
			t.Errorf("adjustment %+v", a.Transaction)
		}
		op(t, h, "/v1/adjustments", h.admin, map[string]any{"member_id": member.ID, "points": -20, "reason": "typo at the desk"},
			ledger.TxAdjust, -20, -20, 0)
		if b := h.balance(member.ID); b != (ledger.Balance{MemberID: member.ID, Balance: balance, Available: balance}) {
			t.Errorf("balance %+v, want %d", b, balance)
		}
	})
	step("the lots of the member sum to the balance", func(t *testing.T, h *harness) {
		type lot struct {
			Remaining int64 `json:"remaining"`
		}
		type lots struct {
			Items       []lot  `json:"items"`
			OtherPoints *int64 `json:"other_points"`
		}
		// An operator sees every lot; a pos key its merchant's, and the
		// rest as one sum: either way they add up to the balance.
		for _, key := range []string{h.admin, pos} {
			p := want[lots](t, h.get("/v1/members/"+member.ID+"/lots", key), http.StatusOK)
			var sum int64
			for _, l := range p.Items {
				sum += l.Remaining
			}
			if (p.OtherPoints != nil) != (key == pos) {
				t.Errorf("other_points %v; want it for a pos key only", p.OtherPoints)
			}
			if p.OtherPoints != nil {
				sum += *p.OtherPoints
			}
			if sum != balance {
				t.Errorf("lots hold %d points, the balance is %d", sum, balance)
			}
		}
	})

	step("the history pages by cursor, newest first, without duplicates", func(t *testing.T, h *harness) {
		newestFirst := slices.Clone(ids)
		slices.Reverse(newestFirst)
		for _, limit := range []int{1, 3, 7, len(ids) - 1, len(ids), len(ids) + 1, maxPageSize} {
			got := h.history(member.ID, limit)
			seen := map[string]bool{}
			var gotIDs []string
			for i, tx := range got {
				if seen[tx.ID] {
					t.Fatalf("limit %d: transaction %s twice", limit, tx.ID)
				}
				seen[tx.ID] = true
				if i > 0 && tx.Seq >= got[i-1].Seq {
					t.Fatalf("limit %d: seq %d after %d: not newest first", limit, tx.Seq, got[i-1].Seq)
				}
				if tx.MemberID != member.ID {
					t.Fatalf("limit %d: a transaction of member %s", limit, tx.MemberID)
				}
				gotIDs = append(gotIDs, tx.ID)
			}
			if !slices.Equal(gotIDs, newestFirst) {
				t.Fatalf("limit %d: history\n%v\nwant\n%v", limit, gotIDs, newestFirst)
			}
		}
		first := want[page[ledger.Transaction]](t, h.get("/v1/members/"+member.ID+"/transactions?limit=2", pos), http.StatusOK)
		if len(first.Items) != 2 || first.NextCursor == "" {
			t.Fatalf("first page of 2: %d items, next_cursor %q", len(first.Items), first.NextCursor)
		}
		all := want[page[ledger.Transaction]](t, h.get("/v1/members/"+member.ID+"/transactions", h.admin), http.StatusOK)
		if len(all.Items) != len(ids) || all.NextCursor != "" {
			t.Fatalf("the default page has %d items and next_cursor %q; want all %d and none", len(all.Items), all.NextCursor, len(ids))
		}
		// A pos key sees its own merchant's transactions only: not the
		// operator's adjustments, nor what the member did elsewhere.
		var ofMerchant int
		for _, tx := range all.Items {
			if tx.MerchantID == shop.MerchantID {
				ofMerchant++
			}
		}
		mine := want[page[ledger.Transaction]](t, h.get("/v1/members/"+member.ID+"/transactions", pos), http.StatusOK)
		if len(mine.Items) != ofMerchant || ofMerchant == len(all.Items) || mine.NextCursor != "" {
			t.Fatalf("a pos key sees %d items (next_cursor %q); want its merchant's %d of %d", len(mine.Items), mine.NextCursor, ofMerchant, len(all.Items))
		}
		for _, tx := range mine.Items {
			if tx.MerchantID != shop.MerchantID {
				t.Fatalf("a pos key sees transaction %s of merchant %q", tx.ID, tx.MerchantID)
			}
		}
	})
	step("a transaction reads back by id as it was answered", func(t *testing.T, h *harness) {
		e := earns[99]
		for _, key := range []string{pos, h.admin} {
			got := want[ledger.Transaction](t, h.get("/v1/transactions/"+e.ID, key), http.StatusOK)
			a, _ := json.Marshal(got)
			b, _ := json.Marshal(e.Transaction)
			if string(a) != string(b) {
				t.Errorf("read back\n%s\nanswered\n%s", a, b)
			}
		}
		problem(t, h.get("/v1/transactions/"+ledger.NewID(), pos), http.StatusNotFound, ledger.CodeTransactionNotFound, "-")
	})
	step("a member is found by card number and by phone", func(t *testing.T, h *harness) {
		for _, c := range []struct {
			name  string
			query url.Values
			found bool
		}{
			{"by card number", url.Values{"card_number": {member.CardNumber}}, true},
			{"by phone as stored", url.Values{"phone": {"+15550104477"}}, true},
			{"by phone as typed", url.Values{"phone": {"+1 555-010-4477"}}, true},
			{"by an unknown phone, no one", url.Values{"phone": {"+15550109999"}}, false},
			{"by an unknown card number, no one", url.Values{"card_number": {unknownCard(t, member.CardNumber)}}, false},
		} {
			t.Run(c.name, func(t *testing.T) {
				h := h.at(t)
				p := want[page[ledger.Member]](t, h.get("/v1/members?"+c.query.Encode(), pos), http.StatusOK)
				switch {
				case c.found && (len(p.Items) != 1 || p.Items[0].ID != member.ID || p.Items[0].CardNumber != member.CardNumber):
					t.Errorf("found %+v, want %s", p.Items, member.ID)
				case !c.found && len(p.Items) != 0:
					t.Errorf("found %+v, want no one", p.Items)
				}
			})
		}
		got := want[map[string]any](t, h.get("/v1/members/"+member.ID, pos), http.StatusOK)
		if len(got) != 3 || got["id"] != member.ID || got["card_number"] != member.CardNumber || got["name_initial"] != "A" {
			t.Errorf("a pos key reads member %v, created %+v; want its id, card and initial only", got, member)
		}
		op := want[ledger.Member](t, h.get("/v1/members/"+member.ID, h.admin), http.StatusOK)
		if op.ID != member.ID || op.Name != member.Name || op.Phone != privacy.Mask(member.Phone) {
			t.Errorf("an admin reads member %+v, created %+v; want it with the phone masked", op, member)
		}
	})
	step("the final balance is what every answer added up to", func(t *testing.T, h *harness) {
		// 185+150+1+0+15000 −200 −60 −185 −5000 −150 +50 +500 −20
		if balance != 10271 {
			t.Errorf("the walk adds up to %d, want 10271", balance)
		}
		if b := h.balance(member.ID); b.Balance != balance || b.Held != 0 {
			t.Errorf("balance %+v, want %d", b, balance)
		}
	})
}

// unknownCard returns a valid card number that is not card.
func unknownCard(t *testing.T, card string) string {
	t.Helper()
	for _, c := range []string{"9410000000000005", "9410000000000013"} {
		if !ledger.ValidCardNumber(c) {
			t.Fatalf("%s is not a valid card number", c)
		}
		if c != card {
			return c
		}
	}
	t.Fatal("no unknown card number")
	return ""
}
