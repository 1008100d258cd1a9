package api

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
)

// lotAnswer is one lot of GET /v1/members/{id}/lots.
type lotAnswer struct {
	ID        string `json:"id"`
	Remaining int64  `json:"remaining"`
	ExpiresAt string `json:"expires_at"`
}

// mergeAnswer is the answer of POST /v1/members/{id}/merge.
type mergeAnswer struct {
	Member      ledger.Member `json:"member"`
	Transaction opResponse    `json:"transaction"`
}

func TestMergeEndpoint(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run(string(b), func(t *testing.T) { testMergeEndpoint(t, b) })
	}
}

func testMergeEndpoint(t *testing.T, b backend) {
	h, _ := operatorServer(t, 0, withBackend(b))
	w := h.newWorld()
	phone := func() string { return fmt.Sprintf("+1555%07d", h.seq.Add(1)) }
	into := w.member
	h.earn(w.posA, w.storeA, into.ID, 10_000) // 150 points
	from := h.createMember(phone(), "Ada L.")
	h.earn(w.posB, w.storeB, from.ID, 20_000) // 200 points at merchant B's 1 %
	fromLots := want[page[lotAnswer]](t, h.get("/v1/members/"+from.ID+"/lots", h.admin), http.StatusOK).Items
	path := "/v1/members/" + into.ID + "/merge"
	body := map[string]any{"from_member_id": from.ID, "reason": "same person, two phone spellings"}

	t.Run("a POS, viewer or app key is forbidden and nothing moves", func(t *testing.T) {
		h := h.at(t)
		viewer := h.makeAPIKey(map[string]any{"role": "viewer", "name": "v"}).Key
		app := h.makeAPIKey(map[string]any{"role": "app", "name": "a"}).Key
		before := h.snap(from.ID)
		for _, k := range []string{w.posA, w.posB, viewer, app} {
			problem(t, h.post(path, k, h.idem(), body), http.StatusForbidden, ledger.CodeForbidden, "-")
		}
		h.unchanged(before, from.ID)
	})

	t.Run("refusals move nothing", func(t *testing.T) {
		h := h.at(t)
		before := h.snap(from.ID)
		problem(t, h.post(path, h.admin, h.idem(), map[string]any{"from_member_id": from.ID}), http.StatusBadRequest, ledger.CodeValidation, "reason")
		problem(t, h.post(path, h.admin, h.idem(), map[string]any{"from_member_id": from.ID, "reason": "a\nb"}), http.StatusBadRequest, ledger.CodeValidation, "reason")
		problem(t, h.post(path, h.admin, h.idem(), map[string]any{"from_member_id": into.ID, "reason": "x"}), http.StatusBadRequest, ledger.CodeValidation, "from_member_id")
		problem(t, h.post(path, h.admin, "", body), http.StatusBadRequest, codeIdemKeyMissing, "Idempotency-Key")
		problem(t, h.post(path, h.admin, h.idem(), map[string]any{"from_member_id": ledger.NewID(), "reason": "x"}), http.StatusNotFound, ledger.CodeMemberNotFound, "from_member_id")
		problem(t, h.post("/v1/members/"+ledger.NewID()+"/merge", h.admin, h.idem(), body), http.StatusNotFound, ledger.CodeMemberNotFound, "member_id")
		// Points held by an active hold of the merged member belong to
		// that hold's capture or void.
		hold := want[opResponse](t, h.post("/v1/holds", w.posB, h.idem(), map[string]any{"member_id": from.ID, "store_id": w.storeB, "points": 20}), http.StatusCreated)
		mid := h.snap(from.ID)
		problem(t, h.post(path, h.admin, h.idem(), body), http.StatusUnprocessableEntity, ledger.CodeMergeRefused, "-")
		h.unchanged(mid, from.ID)
		want[opResponse](t, h.post("/v1/holds/"+hold.Hold.ID+"/void", w.posB, h.idem(), nil), http.StatusCreated)
		if got := h.balance(from.ID); got != before.balance {
			t.Errorf("balance after the voided hold %+v, want %+v", got, before.balance)
		}
	})

	idem := h.idem()
	intoBefore := h.balance(into.ID)
	fromBefore := h.balance(from.ID)
	first := h.post(path, h.admin, idem, body)
	got := want[mergeAnswer](t, first, http.StatusCreated)

	t.Run("the merge moves the balance and every lot, and answers the merged result", func(t *testing.T) {
		h := h.at(t)
		tx := got.Transaction
		if tx.Type != ledger.TxMerge || tx.MemberID != into.ID || tx.RefID != from.ID || tx.Points != fromBefore.Balance || tx.Reason != body["reason"] {
			t.Errorf("transaction %+v", tx.Transaction)
		}
		if tx.Balance != intoBefore.Balance+fromBefore.Balance {
			t.Errorf("answered balance %d, want %d + %d", tx.Balance, intoBefore.Balance, fromBefore.Balance)
		}
		if got.Member.ID != into.ID || got.Member.Status != ledger.StatusActive || got.Member.Phone == into.Phone {
			t.Errorf("answered member %+v (the phone must be masked)", got.Member)
		}
		if b := h.balance(into.ID); b.Balance != intoBefore.Balance+fromBefore.Balance {
			t.Errorf("balance of the member merged into %+v", b)
		}
		if b := h.balance(from.ID); b.Balance != 0 {
			t.Errorf("balance of the merged member %+v, want 0", b)
		}
		m := want[ledger.Member](t, h.get("/v1/members/"+from.ID, h.admin), http.StatusOK)
		if m.Status != ledger.StatusMerged || m.MergedInto != into.ID {
			t.Errorf("merged member %+v", m)
		}
		lots := want[page[lotAnswer]](t, h.get("/v1/members/"+into.ID+"/lots", h.admin), http.StatusOK).Items
		for _, fl := range fromLots {
			found := false
			for _, l := range lots {
				if l.ID == fl.ID && l.Remaining == fl.Remaining && l.ExpiresAt == fl.ExpiresAt {
					found = true
				}
			}
			if !found {
				t.Errorf("lot %+v did not move with its points and expiry: %+v", fl, lots)
			}
		}
		// The merged member takes no more operations.
		problem(t, h.post("/v1/earns", w.posA, h.idem(), map[string]any{"member_id": from.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 100}),
			http.StatusUnprocessableEntity, ledger.CodeMemberMerged, "member_id")
		entries := h.merges(from.ID)
		if len(entries) != 1 || entries[0].TxnID != tx.ID || entries[0].Reason != body["reason"] {
			t.Errorf("merge audit entries of the merged member: %+v", entries)
		}
	})

	t.Run("a retry with the same Idempotency-Key replays and moves nothing", func(t *testing.T) {
		h := h.at(t)
		before := h.snap(into.ID)
		again := h.post(path, h.admin, idem, body)
		if again.status != http.StatusCreated || again.header.Get(headerReplayed) != "true" {
			t.Fatalf("retry: %s (replayed %q)", again, again.header.Get(headerReplayed))
		}
		if a := want[mergeAnswer](t, again, http.StatusCreated); a.Transaction.ID != got.Transaction.ID || a.Transaction.Balance != got.Transaction.Balance {
			t.Errorf("replay answered %+v, first %+v", a.Transaction, got.Transaction)
		}
		h.unchanged(before, into.ID)
		if n := len(h.merges(from.ID)); n != 1 {
			t.Errorf("%d audit entries after the replay, want 1", n)
		}
		// The same key for another merge is refused.
		other := h.createMember(phone(), "Other")
		problem(t, h.post(path, h.admin, idem, map[string]any{"from_member_id": other.ID, "reason": "x"}),
			http.StatusUnprocessableEntity, ledger.CodeIdempotencyReused, "-")
	})

	t.Run("a member merged already is refused on either side", func(t *testing.T) {
		h := h.at(t)
		before := h.snap(into.ID)
		problem(t, h.post(path, h.admin, h.idem(), body), http.StatusUnprocessableEntity, ledger.CodeMemberMerged, "from_member_id")
		problem(t, h.post("/v1/members/"+from.ID+"/merge", h.admin, h.idem(), map[string]any{"from_member_id": into.ID, "reason": "x"}),
			http.StatusUnprocessableEntity, ledger.CodeMemberMerged, "member_id")
		h.unchanged(before, into.ID)
	})
}

// merges lists the audit log's merge entries of a merged member.
func (h *harness) merges(memberID string) []backoffice.Entry {
	var out []backoffice.Entry
	for _, e := range h.auditLog("?target=" + memberID) {
		if e.Action == backoffice.ActionMemberMerge {
			out = append(out, e)
		}
	}
	return out
}
