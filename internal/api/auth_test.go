package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

func TestAuthentication(t *testing.T) {
	h := newHarness(t)
	w := h.newWorld()
	testKey := h.makeKey(auth.Key{Role: auth.RoleAdmin}, auth.ModeTest)
	revoked := h.makeKey(auth.Key{Role: auth.RoleAdmin, RevokedAt: time.Now().Add(-time.Minute)}, auth.ModeLive)
	unknown, _ := auth.NewSecret(auth.ModeLive)
	earn := func() map[string]any {
		return map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 1000}
	}

	for _, c := range []struct {
		name          string
		authorization string
		code          string
		detail        []string
	}{
		{"no key is unauthorized", "", codeUnauthorized, nil},
		{"a Basic credential is unauthorized", "Basic dXNlcjpwYXNz", codeUnauthorized, nil},
		{"an empty bearer is unauthorized", "Bearer ", codeUnauthorized, nil},
		{"garbage is unauthorized", "Bearer garbage", codeUnauthorized, []string{"not a pointd API key"}},
		{"an unknown key is unauthorized", "Bearer " + unknown, codeUnauthorized, []string{"unknown or revoked"}},
		{"an overlong key is unauthorized", "Bearer pd_live_" + strings.Repeat("a", 200), codeUnauthorized, nil},
		{"a revoked key is unauthorized", "Bearer " + revoked, codeUnauthorized, []string{"unknown or revoked"}},
		{"a test key on a live server says so", "Bearer " + testKey, codeKeyModeMismatch, []string{"test key", "server is live"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := h.at(t)
			for _, e := range []struct{ method, path string }{
				{"POST", "/v1/earns"}, {"GET", "/v1/members/" + w.member.ID + "/balance"}, {"POST", "/v1/ping"},
			} {
				before := h.snap(w.member.ID)
				var body any
				if e.method == "POST" {
					body = earn()
				}
				r := h.do(req{method: e.method, path: e.path, idem: h.idem(), body: body, header: map[string]string{"Authorization": c.authorization}})
				p := problem(t, r, http.StatusUnauthorized, c.code, "")
				for _, d := range c.detail {
					if !strings.Contains(p.Detail, d) {
						t.Errorf("%s %s: the detail %q does not say %q", e.method, e.path, p.Detail, d)
					}
				}
				h.unchanged(before, w.member.ID)
			}
		})
	}

	t.Run("a live key on a test server says so", func(t *testing.T) {
		th := newHarness(t, withMode(auth.ModeTest))
		live := th.makeKey(auth.Key{Role: auth.RoleAdmin}, auth.ModeLive)
		p := problem(t, th.post("/v1/ping", live, "", nil), http.StatusUnauthorized, codeKeyModeMismatch, "")
		if !strings.Contains(p.Detail, "live key") || !strings.Contains(p.Detail, "server is test") {
			t.Errorf("detail %q", p.Detail)
		}
		want[map[string]any](t, th.post("/v1/ping", th.admin, "", nil), http.StatusOK)
	})

	t.Run("a 401 carries a WWW-Authenticate challenge (RFC 9110 §15.5.2)", func(t *testing.T) {
		r := h.at(t).post("/v1/ping", "", "", nil)
		if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("status %d, WWW-Authenticate %q; want 401 with a Bearer challenge", r.status, r.header.Get("WWW-Authenticate"))
		}
	})

	t.Run("the authentication scheme is case-insensitive (RFC 9110 §11.1)", func(t *testing.T) {
		h := h.at(t)
		r := h.do(req{method: "POST", path: "/v1/ping", header: map[string]string{"Authorization": "bearer " + h.admin}})
		want[map[string]any](t, r, http.StatusOK)
	})
}

func TestAuthorization(t *testing.T) {
	h := newHarness(t)
	w := h.newWorld()
	earnB := h.earn(w.posB, w.storeB, w.member.ID, 100_000) // 1000 points at B
	holdB := want[opResponse](t, h.post("/v1/holds", w.posB, h.idem(),
		map[string]any{"member_id": w.member.ID, "store_id": w.storeB, "points": 10}), http.StatusCreated)

	t.Run("a POS key may not use admin endpoints", func(t *testing.T) {
		for _, e := range []struct {
			name, path string
			body       any
		}{
			{"creating a merchant", "/v1/merchants", map[string]any{"name": "Rogue", "earn_rate_bp": 10000}},
			{"opening a store", "/v1/merchants/" + w.merchantA + "/stores", map[string]any{"name": "Rogue"}},
			{"adjusting a balance", "/v1/adjustments", map[string]any{"member_id": w.member.ID, "points": 1000, "reason": "self-service"}},
			{"creating a key", "/v1/keys", map[string]any{"role": "admin"}},
			{"creating a POS key of its own merchant", "/v1/keys", map[string]any{"role": "pos", "merchant_id": w.merchantA}},
		} {
			t.Run(e.name, func(t *testing.T) {
				h := h.at(t)
				before := h.snap(w.member.ID)
				problem(t, h.post(e.path, w.posA, h.idem(), e.body), http.StatusForbidden, ledger.CodeForbidden, "")
				h.unchanged(before, w.member.ID)
			})
		}
	})

	t.Run("a POS key of merchant A cannot touch merchant B", func(t *testing.T) {
		for _, e := range []struct {
			name, method, path string
			body               any
			notFound           string
		}{
			{"earning at B's store", "POST", "/v1/earns", map[string]any{"member_id": w.member.ID, "store_id": w.storeB, "receipt": h.receipt(), "purchase_amount": 1000}, ledger.CodeStoreNotFound},
			{"redeeming at B's store", "POST", "/v1/redemptions", map[string]any{"member_id": w.member.ID, "store_id": w.storeB, "receipt": h.receipt(), "points": 1}, ledger.CodeStoreNotFound},
			{"holding at B's store", "POST", "/v1/holds", map[string]any{"member_id": w.member.ID, "store_id": w.storeB, "points": 1}, ledger.CodeStoreNotFound},
			{"cancelling B's earn", "POST", "/v1/cancellations", map[string]any{"transaction_id": earnB.ID}, ledger.CodeTransactionNotFound},
			{"cancelling part of B's earn", "POST", "/v1/cancellations", map[string]any{"transaction_id": earnB.ID, "points": 1}, ledger.CodeTransactionNotFound},
			{"capturing B's hold", "POST", "/v1/holds/" + holdB.ID + "/capture", map[string]any{"points": 1}, ledger.CodeHoldNotFound},
			{"voiding B's hold", "POST", "/v1/holds/" + holdB.ID + "/void", nil, ledger.CodeHoldNotFound},
			{"reading B's transaction", "GET", "/v1/transactions/" + earnB.ID, nil, ledger.CodeTransactionNotFound},
			{"reading B's hold", "GET", "/v1/holds/" + holdB.ID, nil, ledger.CodeHoldNotFound},
			{"reading B's store", "GET", "/v1/stores/" + w.storeB, nil, ledger.CodeStoreNotFound},
			{"reading B", "GET", "/v1/merchants/" + w.merchantB, nil, ledger.CodeMerchantNotFound},
		} {
			t.Run(e.name+" is refused and writes nothing", func(t *testing.T) {
				h := h.at(t)
				before := h.snap(w.member.ID)
				r := h.do(req{method: e.method, path: e.path, key: w.posA, idem: h.idem(), body: e.body})
				switch r.status {
				case http.StatusForbidden:
					problem(t, r, http.StatusForbidden, ledger.CodeForbidden, "")
				case http.StatusNotFound:
					p := problem(t, r, http.StatusNotFound, e.notFound, "")
					if strings.Contains(r.String(), earnB.MemberID) {
						t.Errorf("the refusal leaks the member: %s", p.Detail)
					}
				default:
					t.Fatalf("answers %s; want 403 forbidden or 404 %s", r, e.notFound)
				}
				h.unchanged(before, w.member.ID)
			})
		}
		// B's own key still can: the refusals above were about the caller.
		want[ledger.Transaction](t, h.at(t).get("/v1/transactions/"+earnB.ID, w.posB), http.StatusOK)
		want[opResponse](t, h.at(t).post("/v1/holds/"+holdB.ID+"/void", w.posB, h.idem(), nil), http.StatusCreated)
	})

	t.Run("a POS key sees only its own merchant's part of a member's history", func(t *testing.T) {
		h := h.at(t)
		h.earn(w.posA, w.storeA, w.member.ID, 10_000)
		for _, c := range []struct{ key, merchant string }{{w.posA, w.merchantA}, {w.posB, w.merchantB}} {
			p := want[page[ledger.Transaction]](t, h.get("/v1/members/"+w.member.ID+"/transactions", c.key), http.StatusOK)
			if len(p.Items) == 0 {
				t.Fatalf("merchant %s sees nothing of its own", c.merchant)
			}
			for _, tx := range p.Items {
				if tx.MerchantID != c.merchant {
					t.Fatalf("a POS key of %s sees transaction %s of %q", c.merchant, tx.ID, tx.MerchantID)
				}
			}
		}
		// With one transaction a page, paging still ends and never leaks.
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("the history of merchant B does not end")
			}
			p := want[page[ledger.Transaction]](t, h.get("/v1/members/"+w.member.ID+"/transactions?limit=1&cursor="+cursor, w.posB), http.StatusOK)
			for _, tx := range p.Items {
				if tx.MerchantID != w.merchantB {
					t.Fatalf("a POS key of B sees transaction %s of %q", tx.ID, tx.MerchantID)
				}
			}
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
		}
	})

	t.Run("a POS key bound to one store acts there only", func(t *testing.T) {
		h := h.at(t)
		other := h.createStore(w.merchantA, "A airport")
		bound := h.createPOSKey(w.merchantA, w.storeA)
		before := h.snap(w.member.ID)
		problem(t, h.post("/v1/earns", bound, h.idem(), map[string]any{
			"member_id": w.member.ID, "store_id": other.ID, "receipt": h.receipt(), "purchase_amount": 1000,
		}), http.StatusForbidden, ledger.CodeForbidden, "")
		h.unchanged(before, w.member.ID)
		e := want[opResponse](t, h.post("/v1/earns", bound, h.idem(), map[string]any{
			"member_id": w.member.ID, "receipt": h.receipt(), "purchase_amount": 1000,
		}), http.StatusCreated)
		if e.StoreID != w.storeA || e.Points != 15 {
			t.Errorf("an earn without a store by a store-bound key: %+v", e.Transaction)
		}
	})
}
