package api

import (
	"bytes"
	"net/http"
	"testing"
)

// A rotated key shares its predecessor's idempotency records: a retry under
// the new key of what the old key did replays the first answer and moves
// no point. The records belong to what owns the key (a POS key's merchant
// and store; the operator behind an admin key), not to the key.
func TestIdempotencySurvivesKeyRotation(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run(string(b), func(t *testing.T) { testIdempotencySurvivesKeyRotation(t, b) })
	}
}

func testIdempotencySurvivesKeyRotation(t *testing.T, b backend) {
	h := newHarness(t, withBackend(b))
	w := h.newWorld()
	pos := want[keyResponse](t, h.post("/v1/keys", h.admin, h.idem(), map[string]any{"role": "pos", "merchant_id": w.merchantA, "store_id": w.storeA, "name": "till 1"}), http.StatusCreated)
	h.earn(w.posA, w.storeA, w.member.ID, 100_000) // 1500 points to spend
	hold := want[opResponse](t, h.post("/v1/holds", pos.Key, h.idem(), map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "points": 40}), http.StatusCreated)
	earned := h.earn(pos.Key, w.storeA, w.member.ID, 10_000)

	type call struct {
		name, path, idem string
		body             any
		first            reply
	}
	calls := []*call{
		{name: "an earn", path: "/v1/earns", body: map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 5_000}},
		{name: "a redemption", path: "/v1/redemptions", body: map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "points": 100}},
		{name: "a hold", path: "/v1/holds", body: map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "points": 10}},
		{name: "a capture", path: "/v1/holds/" + hold.Hold.ID + "/capture", body: map[string]any{"points": 40}},
		{name: "a cancellation", path: "/v1/cancellations", body: map[string]any{"transaction_id": earned.ID, "points": 50}},
	}
	for _, c := range calls {
		c.idem = h.idem()
		c.first = h.post(c.path, pos.Key, c.idem, c.body)
		if c.first.status != http.StatusCreated {
			t.Fatalf("%s: %s", c.name, c.first)
		}
	}
	// Leave no hold behind for the audit to weigh.
	defer func() {
		o := want[opResponse](t, calls[2].first, http.StatusCreated)
		want[opResponse](t, h.post("/v1/holds/"+o.Hold.ID+"/void", w.posA, h.idem(), nil), http.StatusCreated)
	}()

	rotated := want[rotateResponse](t, h.post("/v1/keys/"+pos.ID+"/rotate", h.admin, h.idem(), map[string]any{"overlap_seconds": 0}), http.StatusCreated)
	// A second rotation: the records follow the whole chain.
	again := want[rotateResponse](t, h.post("/v1/keys/"+rotated.ID+"/rotate", h.admin, h.idem(), map[string]any{"overlap_seconds": 60}), http.StatusCreated)
	for _, key := range []string{rotated.Key, again.Key} {
		before := h.snap(w.member.ID)
		for _, c := range calls {
			t.Run(c.name, func(t *testing.T) {
				rep := h.at(t).post(c.path, key, c.idem, c.body)
				if rep.status != c.first.status || rep.header.Get(headerReplayed) != "true" || !bytes.Equal(rep.body, c.first.body) {
					t.Errorf("retry under the rotated key: %s (%s: %q); first answer %s", rep, headerReplayed, rep.header.Get(headerReplayed), c.first)
				}
			})
		}
		h.unchanged(before, w.member.ID)
	}

	// Another terminal of the same store (a key of its own) shares the
	// store's records; a terminal of another store does not.
	sibling := h.createPOSKey(w.merchantA, w.storeA)
	before := h.snap(w.member.ID)
	if rep := h.post(calls[1].path, sibling, calls[1].idem, calls[1].body); rep.header.Get(headerReplayed) != "true" {
		t.Errorf("a second key of the same store: %s, want a replay", rep)
	}
	h.unchanged(before, w.member.ID)

	t.Run("an admin key's records follow its rotation", func(t *testing.T) {
		h := h.at(t)
		admin := want[keyResponse](t, h.post("/v1/keys", h.admin, h.idem(), map[string]any{"role": "admin", "name": "ops"}), http.StatusCreated)
		adj := map[string]any{"member_id": w.member.ID, "points": 7, "reason": "goodwill"}
		idem := h.idem()
		first := h.post("/v1/adjustments", admin.Key, idem, adj)
		if first.status != http.StatusCreated {
			t.Fatal(first)
		}
		nk := want[rotateResponse](t, h.post("/v1/keys/"+admin.ID+"/rotate", admin.Key, h.idem(), map[string]any{"overlap_seconds": 0}), http.StatusCreated)
		before := h.snap(w.member.ID)
		rep := h.post("/v1/adjustments", nk.Key, idem, adj)
		if rep.header.Get(headerReplayed) != "true" || !bytes.Equal(rep.body, first.body) {
			t.Errorf("adjustment retried under the rotated admin key: %s; first %s", rep, first)
		}
		h.unchanged(before, w.member.ID)
		// Another operator's key is another scope: the same Idempotency-Key
		// there is a new request.
		if rep := h.post("/v1/adjustments", h.admin, idem, adj); rep.status != http.StatusCreated || rep.header.Get(headerReplayed) != "" {
			t.Errorf("another admin key with the same Idempotency-Key: %s", rep)
		}
	})
}
