package api

import (
	"net/http"
	"testing"

	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
)

// Explicit points on an earn are an adjustment in all but name: a POS key
// may name them only up to its merchant's max_explicit_points (0 by
// default), every such earn says why, and each writes an audit entry.
func TestExplicitPointsOnEarns(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run(string(b), func(t *testing.T) { testExplicitPointsOnEarns(t, b) })
	}
}

func testExplicitPointsOnEarns(t *testing.T, b backend) {
	h, _ := operatorServer(t, 0, withBackend(b))
	w := h.newWorld()
	earn := func(points int64, reason string) map[string]any {
		body := map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 0, "points": points}
		if reason != "" {
			body["reason"] = reason
		}
		return body
	}
	explicit := func(memberID string) []backoffice.Entry {
		var out []backoffice.Entry
		for _, e := range h.auditLog("?target=" + memberID + "&limit=200") {
			if e.Action == backoffice.ActionExplicitEarn {
				out = append(out, e)
			}
		}
		return out
	}

	t.Run("by default a POS may name no points", func(t *testing.T) {
		h := h.at(t)
		before := h.snap(w.member.ID)
		problem(t, h.post("/v1/earns", w.posA, h.idem(), earn(1_000_000_000, "promotion")), http.StatusUnprocessableEntity, ledger.CodeExplicitPoints, "points")
		problem(t, h.post("/v1/earns", w.posA, h.idem(), earn(1, "promotion")), http.StatusUnprocessableEntity, ledger.CodeExplicitPoints, "points")
		h.unchanged(before, w.member.ID)
		if n := len(explicit(w.member.ID)); n != 0 {
			t.Errorf("%d audit entries for refused earns", n)
		}
	})

	t.Run("a reason goes with points, and only with them", func(t *testing.T) {
		h := h.at(t)
		before := h.snap(w.member.ID)
		problem(t, h.post("/v1/earns", h.admin, h.idem(), earn(10, "")), http.StatusBadRequest, ledger.CodeValidation, "reason")
		problem(t, h.post("/v1/earns", h.admin, h.idem(), earn(10, "a\tb")), http.StatusBadRequest, ledger.CodeValidation, "reason")
		problem(t, h.post("/v1/earns", w.posA, h.idem(), map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 100, "reason": "x"}),
			http.StatusBadRequest, ledger.CodeValidation, "reason")
		h.unchanged(before, w.member.ID)
	})

	t.Run("PATCH /v1/merchants/{id} sets the cap, admin only and audited", func(t *testing.T) {
		h := h.at(t)
		problem(t, h.patch("/v1/merchants/"+w.merchantA, w.posA, map[string]any{"max_explicit_points": 500}), http.StatusForbidden, ledger.CodeForbidden, "-")
		problem(t, h.patch("/v1/merchants/"+w.merchantA, h.admin, map[string]any{"max_explicit_points": -1}), http.StatusBadRequest, ledger.CodeValidation, "max_explicit_points")
		m := want[ledger.Merchant](t, h.patch("/v1/merchants/"+w.merchantA, h.admin, map[string]any{"max_explicit_points": 500}), http.StatusOK)
		if m.MaxExplicitPoints != 500 {
			t.Fatalf("merchant %+v", m)
		}
		if got := want[ledger.Merchant](t, h.get("/v1/merchants/"+w.merchantA, h.admin), http.StatusOK); got.MaxExplicitPoints != 500 {
			t.Errorf("read back %+v", got)
		}
		log := h.auditLog("?target=" + w.merchantA)
		if len(log) == 0 || log[0].Action != backoffice.ActionMerchantUpdate || string(log[0].After) == string(log[0].Before) {
			t.Errorf("audit of the change: %+v", log)
		}
	})

	t.Run("within the cap a POS earn with a reason is accepted and audited; over it refused", func(t *testing.T) {
		h := h.at(t)
		before := h.balance(w.member.ID)
		idem := h.idem()
		body := earn(500, "promotion: app download")
		got := want[opResponse](t, h.post("/v1/earns", w.posA, idem, body), http.StatusCreated)
		if got.Points != 500 || got.Balance != before.Balance+500 {
			t.Errorf("earn %+v", got)
		}
		// A retry replays and writes no second entry.
		if rep := h.post("/v1/earns", w.posA, idem, body); rep.header.Get(headerReplayed) != "true" {
			t.Errorf("retry: %s", rep)
		}
		entries := explicit(w.member.ID)
		if len(entries) != 1 || entries[0].TxnID != got.ID || entries[0].Reason != "promotion: app download" || entries[0].ActorKeyID == "" {
			t.Errorf("audit entries %+v", entries)
		}
		snap := h.snap(w.member.ID)
		problem(t, h.post("/v1/earns", w.posA, h.idem(), earn(501, "x")), http.StatusUnprocessableEntity, ledger.CodeExplicitPoints, "points")
		h.unchanged(snap, w.member.ID)
		// Another merchant's cap is its own.
		problem(t, h.post("/v1/earns", w.posB, h.idem(), map[string]any{"member_id": w.member.ID, "store_id": w.storeB, "receipt": h.receipt(), "purchase_amount": 0, "points": 1, "reason": "x"}),
			http.StatusUnprocessableEntity, ledger.CodeExplicitPoints, "points")
	})

	t.Run("an admin key is an operator: no cap, but a reason and an audit entry", func(t *testing.T) {
		h := h.at(t)
		got := want[opResponse](t, h.post("/v1/earns", h.admin, h.idem(), map[string]any{"member_id": w.member.ID, "store_id": w.storeB, "receipt": h.receipt(), "purchase_amount": 0, "points": 5000, "reason": "missed promotion"}), http.StatusCreated)
		found := false
		for _, e := range explicit(w.member.ID) {
			found = found || e.TxnID == got.ID
		}
		if !found {
			t.Errorf("no audit entry for the admin's explicit earn %s", got.ID)
		}
	})
}
