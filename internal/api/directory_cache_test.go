package api

import (
	"net/http"
	"testing"

	"github.com/pointd/pointd/internal/ledger"
)

// The read path caches directory rows; every change of one is read back at
// once by the next request, and a suspended member's session stops working.
func TestDirectoryChangesAreReadAtOnce(t *testing.T) {
	m := newMemberSide(t, nil)
	w := m.newWorld()
	h := m.harness
	s := m.login(w.member.Phone)

	// Warm every cache first.
	want[ledger.Merchant](t, h.get("/v1/merchants/"+w.merchantA, h.admin), http.StatusOK)
	want[ledger.Shop](t, h.get("/v1/stores/"+w.storeA, h.admin), http.StatusOK)
	want[ledger.Member](t, h.get("/v1/members/"+w.member.ID, h.admin), http.StatusOK)
	h.get("/v1/me", s.Token)

	t.Run("a renamed merchant", func(t *testing.T) {
		h := h.at(t)
		want[ledger.Merchant](t, h.patch("/v1/merchants/"+w.merchantA, h.admin, map[string]any{"name": "Renamed Mart"}), http.StatusOK)
		if got := want[ledger.Merchant](t, h.get("/v1/merchants/"+w.merchantA, h.admin), http.StatusOK); got.Name != "Renamed Mart" {
			t.Errorf("merchant read back as %q", got.Name)
		}
	})
	t.Run("a suspended store", func(t *testing.T) {
		h := h.at(t)
		want[ledger.Shop](t, h.post("/v1/stores/"+w.storeA+"/suspend", h.admin, h.idem(), map[string]any{}), http.StatusOK)
		if got := want[ledger.Shop](t, h.get("/v1/stores/"+w.storeA, h.admin), http.StatusOK); got.Status != ledger.StatusSuspended {
			t.Errorf("store read back as %q", got.Status)
		}
	})
	t.Run("a suspended member's session is refused", func(t *testing.T) {
		h := h.at(t)
		want[ledger.Member](t, h.post("/v1/members/"+w.member.ID+"/suspend", h.admin, h.idem(), map[string]any{"reason": "fraud check"}), http.StatusOK)
		if got := want[ledger.Member](t, h.get("/v1/members/"+w.member.ID, h.admin), http.StatusOK); got.Status != ledger.StatusSuspended {
			t.Errorf("member read back as %q", got.Status)
		}
		problem(t, h.get("/v1/me", s.Token), http.StatusUnprocessableEntity, ledger.CodeMemberSuspended, "-")
		want[ledger.Member](t, h.post("/v1/members/"+w.member.ID+"/reactivate", h.admin, h.idem(), map[string]any{}), http.StatusOK)
		if r := h.get("/v1/me", s.Token); r.status != http.StatusOK {
			t.Errorf("after reactivation: %s", r)
		}
	})
	t.Run("a withdrawn member's data is gone from every read", func(t *testing.T) {
		h := h.at(t)
		if r := h.do(req{method: http.MethodDelete, path: "/v1/me", key: s.Token}); r.status != http.StatusOK {
			t.Fatalf("withdraw: %s", r)
		}
		got := want[ledger.Member](t, h.get("/v1/members/"+w.member.ID, h.admin), http.StatusOK)
		if got.Phone != "" || got.Name == w.member.Name || got.Status != ledger.StatusWithdrawn {
			t.Errorf("after withdrawal the member reads as %+v", got)
		}
	})
}
