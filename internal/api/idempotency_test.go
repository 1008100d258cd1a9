package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

// writeEndpoint is one endpoint that changes state, with a valid body.
type writeEndpoint struct {
	name, path string
	key        string
	body       any
}

func (h *harness) writeEndpoints(w world, holdID, txnID string) []writeEndpoint {
	return []writeEndpoint{
		{"an earn", "/v1/earns", w.posA, map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 1000}},
		{"a redemption", "/v1/redemptions", w.posA, map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "points": 1}},
		{"a hold", "/v1/holds", w.posA, map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "points": 1}},
		{"a capture", "/v1/holds/" + holdID + "/capture", w.posA, map[string]any{"points": 1}},
		{"a void", "/v1/holds/" + holdID + "/void", w.posA, nil},
		{"a cancellation", "/v1/cancellations", w.posA, map[string]any{"transaction_id": txnID, "points": 1}},
		{"an adjustment", "/v1/adjustments", h.admin, map[string]any{"member_id": w.member.ID, "points": 5, "reason": "test"}},
		{"a merchant", "/v1/merchants", h.admin, map[string]any{"name": "M", "earn_rate_bp": 100}},
		{"a store", "/v1/merchants/" + w.merchantA + "/stores", h.admin, map[string]any{"name": "S"}},
		{"a member", "/v1/members", w.posA, map[string]any{"phone": "+4930123456", "name": "Grace"}},
		{"a key", "/v1/keys", h.admin, map[string]any{"role": "pos", "merchant_id": w.merchantA}},
	}
}

func TestIdempotency(t *testing.T) {
	h := newHarness(t)
	w := h.newWorld()
	earned := h.earn(w.posA, w.storeA, w.member.ID, 100_000) // 1500 points

	t.Run("a write without an Idempotency-Key is refused and writes nothing", func(t *testing.T) {
		hold := want[opResponse](t, h.at(t).post("/v1/holds", w.posA, h.idem(),
			map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "points": 1}), http.StatusCreated)
		for _, e := range h.writeEndpoints(w, hold.ID, earned.ID) {
			t.Run(e.name, func(t *testing.T) {
				h := h.at(t)
				before := h.snap(w.member.ID)
				problem(t, h.post(e.path, e.key, "", e.body), http.StatusBadRequest, codeIdemKeyMissing, "Idempotency-Key")
				h.unchanged(before, w.member.ID)
			})
		}
		// Leave no hold behind for the audit to weigh.
		want[opResponse](t, h.at(t).post("/v1/holds/"+hold.ID+"/void", w.posA, h.idem(), nil), http.StatusCreated)
	})

	t.Run("a retry with the same key answers the same bytes, marked as a replay, and writes nothing more", func(t *testing.T) {
		hold := want[opResponse](t, h.at(t).post("/v1/holds", w.posA, h.idem(),
			map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "points": 3}), http.StatusCreated)
		hold2 := want[opResponse](t, h.at(t).post("/v1/holds", w.posA, h.idem(),
			map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "points": 4}), http.StatusCreated)
		for _, e := range []writeEndpoint{
			{"an earn", "/v1/earns", w.posA, map[string]any{"card_number": w.member.CardNumber, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 2000}},
			{"a redemption", "/v1/redemptions", w.posA, map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "points": 7}},
			{"a hold", "/v1/holds", w.posA, map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "points": 2, "expires_in_seconds": 60}},
			{"a capture", "/v1/holds/" + hold.ID + "/capture", w.posA, map[string]any{"points": 2}},
			{"a void", "/v1/holds/" + hold2.ID + "/void", w.posA, nil},
			{"a cancellation", "/v1/cancellations", w.posA, map[string]any{"transaction_id": earned.ID, "points": 10}},
			{"an adjustment", "/v1/adjustments", h.admin, map[string]any{"member_id": w.member.ID, "points": 5, "reason": "test"}},
		} {
			t.Run(e.name, func(t *testing.T) {
				h := h.at(t)
				key := h.idem()
				first := h.post(e.path, e.key, key, e.body)
				want[opResponse](t, first, http.StatusCreated)
				if v := first.header.Get("Idempotent-Replayed"); v != "" {
					t.Errorf("the first answer is marked Idempotent-Replayed: %q", v)
				}
				before := h.snap(w.member.ID)
				for range 3 {
					again := h.post(e.path, e.key, key, e.body)
					want[opResponse](t, again, http.StatusCreated)
					if !bytes.Equal(again.body, first.body) {
						t.Errorf("the replay answers\n%s\nthe original\n%s", again.body, first.body)
					}
					if v := again.header.Get("Idempotent-Replayed"); v != "true" {
						t.Errorf("Idempotent-Replayed: %q, want true", v)
					}
				}
				h.unchanged(before, w.member.ID)
			})
		}
	})

	t.Run("the same key with a different request is refused and writes nothing", func(t *testing.T) {
		for _, c := range []struct {
			name, path  string
			first, then map[string]any
		}{
			{"an earn with another amount", "/v1/earns",
				map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": "same-1", "purchase_amount": 1000},
				map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": "same-1", "purchase_amount": 1001}},
			{"an earn with another receipt", "/v1/earns",
				map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": "same-2", "purchase_amount": 1000},
				map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": "same-3", "purchase_amount": 1000}},
			{"a redemption after an earn", "/v1/redemptions",
				map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": "same-4", "purchase_amount": 1000},
				map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": "same-4", "points": 1}},
			{"an adjustment with another reason", "/v1/adjustments",
				map[string]any{"member_id": w.member.ID, "points": 3, "reason": "one"},
				map[string]any{"member_id": w.member.ID, "points": 3, "reason": "two"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				h := h.at(t)
				key, firstPath, firstKey := h.idem(), "/v1/earns", w.posA
				if c.path == "/v1/adjustments" {
					firstPath, firstKey = c.path, h.admin
				}
				first := h.post(firstPath, firstKey, key, c.first)
				want[opResponse](t, first, http.StatusCreated)
				before := h.snap(w.member.ID)
				problem(t, h.post(c.path, firstKey, key, c.then), http.StatusUnprocessableEntity, ledger.CodeIdempotencyReused, "-")
				h.unchanged(before, w.member.ID)
				// The original still replays.
				if again := h.post(firstPath, firstKey, key, c.first); !bytes.Equal(again.body, first.body) {
					t.Errorf("after the refusal the key answers %s", again)
				}
			})
		}
	})

	t.Run("the same key from another merchant's or another operator's key is another request", func(t *testing.T) {
		h := h.at(t)
		key := h.idem()
		before := h.balance(w.member.ID).Balance
		a := want[opResponse](t, h.post("/v1/earns", w.posA, key, map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 1000}), http.StatusCreated)
		b := want[opResponse](t, h.post("/v1/earns", w.posB, key, map[string]any{"member_id": w.member.ID, "store_id": w.storeB, "receipt": h.receipt(), "purchase_amount": 1000}), http.StatusCreated)
		c := want[opResponse](t, h.post("/v1/adjustments", h.admin, key, map[string]any{"member_id": w.member.ID, "points": 1, "reason": "test"}), http.StatusCreated)
		if a.ID == b.ID || a.ID == c.ID {
			t.Errorf("two callers' keys met in one transaction %s", a.ID)
		}
		if got := h.balance(w.member.ID).Balance; got != before+15+10+1 {
			t.Errorf("balance %d, want %d", got, before+26)
		}
	})

	t.Run("the same key from another POS key of the same merchant is the same request", func(t *testing.T) {
		h := h.at(t)
		key := h.idem()
		other := h.createPOSKey(w.merchantA, "")
		body := map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 1000}
		first := h.post("/v1/earns", w.posA, key, body)
		want[opResponse](t, first, http.StatusCreated)
		before := h.snap(w.member.ID)
		if again := h.post("/v1/earns", other, key, body); again.header.Get(headerReplayed) != "true" || !bytes.Equal(again.body, first.body) {
			t.Errorf("the merchant's other key: %s, want the first answer replayed", again)
		}
		problem(t, h.post("/v1/earns", other, key, map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 1000}),
			http.StatusUnprocessableEntity, ledger.CodeIdempotencyReused, "-")
		h.unchanged(before, w.member.ID)
	})

	t.Run("a receipt earns once, whatever the Idempotency-Key", func(t *testing.T) {
		h := h.at(t)
		body := map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 5000}
		first := want[opResponse](t, h.post("/v1/earns", w.posA, h.idem(), body), http.StatusCreated)
		before := h.snap(w.member.ID)
		p := problem(t, h.post("/v1/earns", w.posA, h.idem(), body), http.StatusConflict, ledger.CodeReceiptEarned, "-")
		if !strings.Contains(p.Detail, first.ID) {
			t.Errorf("the refusal does not name the earn %s: %s", first.ID, p.Detail)
		}
		// Another POS key of the same merchant cannot earn it either.
		problem(t, h.post("/v1/earns", h.createPOSKey(w.merchantA, ""), h.idem(), body), http.StatusConflict, ledger.CodeReceiptEarned, "-")
		h.unchanged(before, w.member.ID)
	})

	t.Run("an Idempotency-Key longer than 255 characters is refused", func(t *testing.T) {
		h := h.at(t)
		before := h.snap(w.member.ID)
		problem(t, h.post("/v1/earns", w.posA, strings.Repeat("k", 256), map[string]any{
			"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 1000,
		}), http.StatusBadRequest, ledger.CodeValidation, "Idempotency-Key")
		h.unchanged(before, w.member.ID)
	})
}

func TestConcurrentRetriesCreditOnce(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run("on "+string(b), func(t *testing.T) {
			h := newHarness(t, withBackend(b))
			w := h.newWorld()
			const n = 50
			key := h.idem()
			body := map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 10_000}
			replies := make([]reply, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					replies[i], errs[i] = h.send(req{method: http.MethodPost, path: "/v1/earns", key: w.posA, idem: key, body: body})
				}()
			}
			close(start)
			wg.Wait()
			replayed := 0
			for i, r := range replies {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				if r.status != http.StatusCreated {
					t.Fatalf("request %d: %s", i, r)
				}
				if !bytes.Equal(r.body, replies[0].body) {
					t.Fatalf("request %d answered\n%s\nrequest 0\n%s", i, r.body, replies[0].body)
				}
				if r.header.Get("Idempotent-Replayed") == "true" {
					replayed++
				}
			}
			if replayed != n-1 {
				t.Errorf("%d answers marked as replays, want %d", replayed, n-1)
			}
			if b := h.balance(w.member.ID); b.Balance != 150 {
				t.Errorf("balance %d, want 150: credited once", b.Balance)
			}
			if hist := h.history(w.member.ID, maxPageSize); len(hist) != 1 {
				t.Errorf("%d transactions, want 1", len(hist))
			}
		})
	}
}

func TestDirectoryIdempotency(t *testing.T) {
	h := newHarness(t)
	w := h.newWorld()
	for _, c := range []struct {
		name, path  string
		first, then map[string]any
	}{
		{"a merchant", "/v1/merchants",
			map[string]any{"name": "Replay Merchant", "earn_rate_bp": 200},
			map[string]any{"name": "Replay Merchant", "earn_rate_bp": 201}},
		{"a merchant with another validity", "/v1/merchants",
			map[string]any{"name": "Validity", "earn_rate_bp": 200, "point_validity_days": 30},
			map[string]any{"name": "Validity", "earn_rate_bp": 200}},
		{"a store", "/v1/merchants/" + w.merchantA + "/stores",
			map[string]any{"name": "Replay Store"},
			map[string]any{"name": "Other Store"}},
		{"a member", "/v1/members",
			map[string]any{"phone": "+44 20 7946 0001", "name": "Replay Member"},
			map[string]any{"phone": "+44 20 7946 0002", "name": "Replay Member"}},
	} {
		t.Run(c.name+" replays with the same key and refuses a different body", func(t *testing.T) {
			h := h.at(t)
			key := h.idem()
			first := h.post(c.path, h.admin, key, c.first)
			created := want[map[string]any](t, first, http.StatusCreated)
			if first.header.Get("Idempotent-Replayed") != "" {
				t.Errorf("the first answer is marked as a replay")
			}
			again := h.post(c.path, h.admin, key, c.first)
			replayed := want[map[string]any](t, again, http.StatusCreated)
			if again.header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("the retry is not marked as a replay")
			}
			if replayed["id"] != created["id"] || !bytes.Equal(again.body, first.body) {
				t.Errorf("the retry answers\n%s\nthe original\n%s", again.body, first.body)
			}
			problem(t, h.post(c.path, h.admin, key, c.then), http.StatusUnprocessableEntity, ledger.CodeIdempotencyReused, "-")
		})
	}
	t.Run("a store with the same key under another merchant is refused", func(t *testing.T) {
		h := h.at(t)
		key := h.idem()
		want[ledger.Shop](t, h.post("/v1/merchants/"+w.merchantA+"/stores", h.admin, key, map[string]any{"name": "Twin"}), http.StatusCreated)
		problem(t, h.post("/v1/merchants/"+w.merchantB+"/stores", h.admin, key, map[string]any{"name": "Twin"}),
			http.StatusUnprocessableEntity, ledger.CodeIdempotencyReused, "-")
	})
	t.Run("a key is shown once: a retry is refused instead of minting another", func(t *testing.T) {
		h := h.at(t)
		key := h.idem()
		body := map[string]any{"role": "pos", "merchant_id": w.merchantA}
		k := want[keyResponse](t, h.post("/v1/keys", h.admin, key, body), http.StatusCreated)
		problem(t, h.post("/v1/keys", h.admin, key, body), http.StatusUnprocessableEntity, ledger.CodeIdempotencyReused, "-")
		// The first key still works.
		want[map[string]any](t, h.post("/v1/ping", k.Key, "", nil), http.StatusOK)
	})
	t.Run("a phone already taken is a conflict that names the phone", func(t *testing.T) {
		h := h.at(t)
		problem(t, h.post("/v1/members", h.admin, h.idem(), map[string]any{"phone": w.member.Phone, "name": "Twin"}),
			http.StatusConflict, ledger.CodeConflict, "phone")
	})
}

func TestConcurrentDirectoryRetriesCreateOnce(t *testing.T) {
	h := newHarness(t)
	w := h.newWorld()
	for _, c := range []struct {
		name, path string
		body       map[string]any
	}{
		{"a merchant", "/v1/merchants", map[string]any{"name": "Racy", "earn_rate_bp": 10}},
		{"a store", "/v1/merchants/" + w.merchantA + "/stores", map[string]any{"name": "Racy"}},
		{"a member", "/v1/members", map[string]any{"phone": "+81312345678", "name": "Racy"}},
	} {
		t.Run("20 concurrent retries create "+c.name+" once", func(t *testing.T) {
			h := h.at(t)
			key := h.idem()
			const n = 20
			replies := make([]reply, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					replies[i], errs[i] = h.send(req{method: http.MethodPost, path: c.path, key: h.admin, idem: key, body: c.body})
				}()
			}
			wg.Wait()
			var id any
			for i, r := range replies {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				got := want[map[string]any](t, r, http.StatusCreated)
				if i == 0 {
					id = got["id"]
				} else if got["id"] != id {
					t.Fatalf("reply %d created %v, reply 0 %v", i, got["id"], id)
				}
			}
		})
	}
}

// failingKeys is a key store whose writes fail, as a full disk would.
type failingKeys struct{ auth.KeyStore }

func (failingKeys) CreateKey(context.Context, auth.Key) error { return errors.New("disk I/O error") }

func TestKeyCreationFailure(t *testing.T) {
	h := newHarness(t, withKeys(func(k auth.KeyStore) auth.KeyStore { return failingKeys{k} }))
	t.Run("a key that could not be stored is a server error, not a reused Idempotency-Key", func(t *testing.T) {
		h := h.at(t)
		r := h.post("/v1/keys", h.admin, h.idem(), map[string]any{"role": "admin"})
		if r.status < 500 {
			t.Errorf("a failed write answers %s; want a 5xx (the Idempotency-Key was never used)", r)
		}
	})
}
