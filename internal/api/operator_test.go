package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/notice"
)

// operatorServer is a harness whose server the test holds (to flush key
// usage), with the key cache TTL given.
func operatorServer(t *testing.T, ttl time.Duration, opts ...option) (*harness, *Server) {
	t.Helper()
	h := newHarness(t, opts...)
	s := New(Config{Mode: h.cfg.mode, KeyCacheTTL: ttl}, h.store, h.store, h.writer, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	h.srv = httptest.NewServer(s.Handler())
	t.Cleanup(h.srv.Close)
	return h, s
}

// makeAPIKey creates a key through POST /v1/keys and returns it.
func (h *harness) makeAPIKey(body map[string]any) keyResponse {
	h.t.Helper()
	return want[keyResponse](h.t, h.post("/v1/keys", h.admin, h.idem(), body), http.StatusCreated)
}

func (h *harness) patch(path, key string, body any) reply {
	h.t.Helper()
	return h.do(req{method: http.MethodPatch, path: path, key: key, idem: h.idem(), body: body})
}

func (h *harness) auditLog(query string) []backoffice.Entry {
	h.t.Helper()
	return want[page[backoffice.Entry]](h.t, h.get("/v1/audit-log"+query, h.admin), http.StatusOK).Items
}

// TestRolesAndOwnership is the table of every role against every endpoint:
// what each caller is refused, with which status and code, and that a
// refusal writes nothing (not a ledger transaction, not an audit entry).
// Reads an operator may make are also answered to viewers.
func TestRolesAndOwnership(t *testing.T) {
	h, _ := operatorServer(t, 0)
	w := h.newWorld()
	viewer := h.makeAPIKey(map[string]any{"role": "viewer", "name": "back office"}).Key
	app := h.makeAPIKey(map[string]any{"role": "app", "name": "member app"}).Key
	earned := h.earn(w.posA, w.storeA, w.member.ID, 100_000)
	hold := want[opResponse](t, h.post("/v1/holds", w.posA, h.idem(), map[string]any{
		"member_id": w.member.ID, "store_id": w.storeA, "points": 10}), http.StatusCreated)
	keys := want[page[keyInfo]](t, h.get("/v1/keys", h.admin), http.StatusOK).Items
	anyKey := keys[0].ID
	pub := want[notice.Notice](t, h.post("/v1/notices", h.admin, h.idem(), map[string]any{"title": "t", "body": "b"}), http.StatusCreated)

	type role string
	const (
		admin, view, posA, posB, appK, none role = "admin", "viewer", "pos", "pos of another merchant", "app", "no key"
	)
	secret := map[role]string{admin: h.admin, view: viewer, posA: w.posA, posB: w.posB, appK: app, none: ""}
	roles := []role{admin, view, posA, posB, appK, none}

	earn := map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": "R-table", "purchase_amount": 1000}
	spend := map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": "R-table", "points": 1}
	// An answer a role is refused with; ok is admitted (any answer but 401
	// and 403, which the test checks is not a refusal of the caller).
	type refusal struct {
		status int
		code   string
	}
	ok := refusal{}
	forbidden := refusal{http.StatusForbidden, ledger.CodeForbidden}
	unauth := refusal{http.StatusUnauthorized, codeUnauthorized}
	hidden := func(code string) refusal { return refusal{http.StatusNotFound, code} }

	// Only admins: every change of the directory, keys and adjustments.
	adminOnly := map[role]refusal{admin: ok, view: forbidden, posA: forbidden, posB: forbidden, appK: forbidden, none: unauth}
	// Operators' reads: admin and viewer.
	office := map[role]refusal{admin: ok, view: ok, posA: forbidden, posB: forbidden, appK: forbidden, none: unauth}
	// Reads of members, which the coalition shares.
	shared := map[role]refusal{admin: ok, view: ok, posA: ok, posB: ok, appK: forbidden, none: unauth}
	// Reads of what belongs to merchant A: another merchant's key is told it
	// does not exist.
	ownedRead := func(code string) map[role]refusal {
		return map[role]refusal{admin: ok, view: ok, posA: ok, posB: hidden(code), appK: forbidden, none: unauth}
	}
	// Ledger operations at merchant A: operators' viewers and apps may not,
	// another merchant's POS is forbidden by the ledger itself.
	ledgerOp := map[role]refusal{admin: ok, view: forbidden, posA: ok, posB: forbidden, appK: forbidden, none: unauth}
	everyKey := map[role]refusal{admin: ok, view: ok, posA: ok, posB: ok, appK: ok, none: unauth}
	appOrAdmin := map[role]refusal{admin: ok, view: forbidden, posA: forbidden, posB: forbidden, appK: ok, none: unauth}
	login := map[role]refusal{admin: forbidden, view: forbidden, posA: forbidden, posB: forbidden, appK: ok, none: ok}
	sessionOnly := map[role]refusal{admin: forbidden, view: forbidden, posA: forbidden, posB: forbidden, appK: forbidden, none: unauth}

	cases := []struct {
		method, path string
		body         any
		want         map[role]refusal
		writes       bool // an admitted call would change something: only refusals are sent
	}{
		{"POST", "/v1/merchants", map[string]any{"name": "x", "earn_rate_bp": 1}, adminOnly, true},
		{"GET", "/v1/merchants", nil, office, false},
		{"GET", "/v1/merchants/" + w.merchantA, nil, ownedRead(ledger.CodeMerchantNotFound), false},
		{"PATCH", "/v1/merchants/" + w.merchantA, map[string]any{"name": "x"}, adminOnly, true},
		{"POST", "/v1/merchants/" + w.merchantA + "/suspend", map[string]any{}, adminOnly, true},
		{"POST", "/v1/merchants/" + w.merchantA + "/reactivate", map[string]any{}, adminOnly, true},
		{"POST", "/v1/merchants/" + w.merchantA + "/stores", map[string]any{"name": "x"}, adminOnly, true},
		{"GET", "/v1/merchants/" + w.merchantA + "/stores", nil, ownedRead(ledger.CodeMerchantNotFound), false},
		{"GET", "/v1/stores/" + w.storeA, nil, ownedRead(ledger.CodeStoreNotFound), false},
		{"PATCH", "/v1/stores/" + w.storeA, map[string]any{"name": "x"}, adminOnly, true},
		{"POST", "/v1/stores/" + w.storeA + "/suspend", map[string]any{}, adminOnly, true},
		{"POST", "/v1/stores/" + w.storeA + "/reactivate", map[string]any{}, adminOnly, true},
		{"POST", "/v1/members", map[string]any{"phone": "+15550009999", "name": "x"},
			map[role]refusal{admin: ok, view: forbidden, posA: ok, posB: ok, appK: forbidden, none: unauth}, true},
		{"GET", "/v1/members?card_number=" + w.member.CardNumber, nil, shared, false},
		{"GET", "/v1/members?name=Ada", nil, office, false},
		{"GET", "/v1/members/" + w.member.ID, nil, shared, false},
		{"GET", "/v1/members/" + w.member.ID + "/balance", nil, shared, false},
		{"GET", "/v1/members/" + w.member.ID + "/transactions", nil, shared, false},
		{"GET", "/v1/members/" + w.member.ID + "/lots", nil, shared, false},
		{"POST", "/v1/members/" + w.member.ID + "/suspend", map[string]any{"reason": "x"}, adminOnly, true},
		{"POST", "/v1/members/" + w.member.ID + "/reactivate", map[string]any{}, adminOnly, true},
		{"POST", "/v1/members/" + w.member.ID + "/merge", map[string]any{"from_member_id": earned.MemberID, "reason": "x"}, adminOnly, true},
		{"POST", "/v1/keys", map[string]any{"role": "admin"}, adminOnly, true},
		{"GET", "/v1/keys", nil, office, false},
		{"POST", "/v1/keys/" + anyKey + "/revoke", map[string]any{}, adminOnly, true},
		{"POST", "/v1/keys/" + anyKey + "/rotate", map[string]any{"overlap_seconds": 0}, adminOnly, true},
		{"GET", "/v1/audit-log", nil, office, false},
		{"POST", "/v1/earns", earn, ledgerOp, true},
		{"POST", "/v1/redemptions", spend, ledgerOp, true},
		{"POST", "/v1/holds", map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "points": 1}, ledgerOp, true},
		{"GET", "/v1/holds/" + hold.Hold.ID, nil, ownedRead(ledger.CodeHoldNotFound), false},
		{"POST", "/v1/holds/" + hold.Hold.ID + "/capture", map[string]any{}, ledgerOp, true},
		{"POST", "/v1/holds/" + hold.Hold.ID + "/void", map[string]any{}, ledgerOp, true},
		{"POST", "/v1/cancellations", map[string]any{"transaction_id": earned.ID, "points": 1}, ledgerOp, true},
		{"POST", "/v1/adjustments", map[string]any{"member_id": w.member.ID, "points": 1, "reason": "x"}, adminOnly, true},
		{"GET", "/v1/transactions/" + earned.ID, nil, ownedRead(ledger.CodeTransactionNotFound), false},
		{"GET", "/debug/pprof/", nil, adminOnly, false},
		// The member side: logins take no key or an app key (another key is
		// refused rather than ignored); /v1/me is a member's own session
		// only (me_test.go has the sessions' side of the table).
		{"POST", "/v1/auth/otp", map[string]any{"phone": "+15550001111"}, login, true},
		{"POST", "/v1/auth/sessions", map[string]any{"phone": "+15550001111", "code": "000000"}, login, true},
		{"DELETE", "/v1/auth/sessions/current", nil, sessionOnly, true},
		{"GET", "/v1/me", nil, sessionOnly, false},
		{"PATCH", "/v1/me", map[string]any{"name": "x"}, sessionOnly, true},
		{"GET", "/v1/me/balance", nil, sessionOnly, false},
		{"GET", "/v1/me/transactions", nil, sessionOnly, false},
		{"GET", "/v1/me/code", nil, sessionOnly, false},
		{"GET", "/v1/me/code.svg", nil, sessionOnly, false},
		{"DELETE", "/v1/me", nil, sessionOnly, true},
		{"GET", "/v1/me/badges", nil, sessionOnly, false},
		{"POST", "/v1/me/badges/seen", map[string]any{}, sessionOnly, true},
		// Notices: admins publish, every key reads (member sessions too:
		// readpath_test.go); badges by member id are for admin and app keys.
		{"POST", "/v1/notices", map[string]any{"title": "x", "body": "y"}, adminOnly, true},
		{"GET", "/v1/notices", nil, everyKey, false},
		{"GET", "/v1/notices/" + pub.ID, nil, everyKey, false},
		{"GET", "/v1/members/" + w.member.ID + "/badges", nil, appOrAdmin, false},
		{"POST", "/v1/members/" + w.member.ID + "/badges/seen", map[string]any{}, appOrAdmin, true},
	}
	// The table covers every route the server registers.
	covered := map[string]bool{"POST /v1/ping": true, "GET /healthz": true, "GET /readyz": true, "GET /v1/openapi.json": true, "GET /metrics": true}
	for _, c := range cases {
		p := c.path
		for _, id := range []string{w.merchantA, w.storeA, w.member.ID, anyKey, hold.Hold.ID, earned.ID, pub.ID} {
			p = strings.ReplaceAll(p, id, "{id}")
		}
		p, _, _ = strings.Cut(p, "?")
		covered[c.method+" "+p] = true
	}
	for r := range registeredRoutes(t) {
		if !covered[r] && !strings.HasPrefix(r, "GET /debug/pprof/") && !strings.HasPrefix(r, "POST /debug/pprof/") {
			t.Errorf("the role table does not cover %s", r)
		}
	}

	before := h.snap(w.member.ID)
	auditBefore := len(h.auditLog("?limit=200"))
	for _, c := range cases {
		for _, r := range roles {
			want := c.want[r]
			if want == ok && c.writes {
				continue
			}
			t.Run(fmt.Sprintf("%s %s as %s", c.method, c.path, r), func(t *testing.T) {
				h := h.at(t)
				rep := h.do(req{method: c.method, path: c.path, key: secret[r], idem: h.idem(), body: c.body})
				if want == ok {
					if rep.status == http.StatusUnauthorized || rep.status == http.StatusForbidden || rep.status == http.StatusNotFound {
						t.Fatalf("refused: %s", rep)
					}
					return
				}
				problem(t, rep, want.status, want.code, "-")
			})
		}
	}
	h.unchanged(before, w.member.ID)
	if n := len(h.auditLog("?limit=200")); n != auditBefore {
		t.Errorf("refused calls wrote %d audit entries", n-auditBefore)
	}

	t.Run("a pos key reads only its own merchant's part of a member's history", func(t *testing.T) {
		h := h.at(t)
		h.earn(w.posB, w.storeB, w.member.ID, 1000)
		for _, c := range []struct {
			key, merchant string
		}{{w.posA, w.merchantA}, {w.posB, w.merchantB}} {
			p := want[page[ledger.Transaction]](t, h.get("/v1/members/"+w.member.ID+"/transactions", c.key), http.StatusOK)
			if len(p.Items) == 0 {
				t.Fatal("an empty history")
			}
			for _, tx := range p.Items {
				if tx.MerchantID != c.merchant {
					t.Errorf("a pos key of %s reads a transaction of %s", c.merchant, tx.MerchantID)
				}
			}
		}
		all := want[page[ledger.Transaction]](t, h.get("/v1/members/"+w.member.ID+"/transactions", viewer), http.StatusOK)
		merchants := map[string]bool{}
		for _, tx := range all.Items {
			merchants[tx.MerchantID] = true
		}
		if !merchants[w.merchantA] || !merchants[w.merchantB] {
			t.Errorf("a viewer reads the history of merchants %v", merchants)
		}
	})
}

func TestKeyCreationByRole(t *testing.T) {
	h, _ := operatorServer(t, 0)
	w := h.newWorld()
	for _, c := range []struct {
		name  string
		body  map[string]any
		field string // "" when accepted
	}{
		{"a viewer key", map[string]any{"role": "viewer"}, ""},
		{"an app key with the app's name", map[string]any{"role": "app", "name": "Aurora app"}, ""},
		{"an app key without a name", map[string]any{"role": "app"}, "name"},
		{"a viewer key of a merchant", map[string]any{"role": "viewer", "merchant_id": w.merchantA}, "merchant_id"},
		{"an app key of a store", map[string]any{"role": "app", "name": "x", "store_id": w.storeA}, "store_id"},
		{"an admin key of a merchant", map[string]any{"role": "admin", "merchant_id": w.merchantA}, "merchant_id"},
		{"a pos key without a merchant", map[string]any{"role": "pos"}, "merchant_id"},
		{"a pos key of another merchant's store", map[string]any{"role": "pos", "merchant_id": w.merchantA, "store_id": w.storeB}, "store_id"},
		{"a member session", map[string]any{"role": "member"}, "role"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := h.at(t)
			rep := h.post("/v1/keys", h.admin, h.idem(), c.body)
			if c.field != "" {
				problem(t, rep, http.StatusBadRequest, ledger.CodeValidation, c.field)
				return
			}
			k := want[keyResponse](t, rep, http.StatusCreated)
			if string(k.Role) != c.body["role"] || !strings.HasPrefix(k.Key, k.Prefix) {
				t.Fatalf("created %+v", k)
			}
			want[map[string]any](t, h.post("/v1/ping", k.Key, "", map[string]any{}), http.StatusOK)
		})
	}
}

func TestOperators(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run(string(b), func(t *testing.T) {
			t.Run("suspending a merchant stops its keys and its trading at once", func(t *testing.T) { testSuspendMerchantAPI(t, b) })
			t.Run("a store suspension stops the store's keys and earns there", func(t *testing.T) { testSuspendStoreAPI(t, b) })
			t.Run("another instance follows a suspension within its key cache TTL", func(t *testing.T) { testOtherInstance(t, b) })
			t.Run("keys are listed by prefix, revoked at once and rotated with an overlap", func(t *testing.T) { testKeysAPI(t, b) })
			t.Run("a changed rate applies to later earns, and every action is in the audit log", func(t *testing.T) { testMerchantPatchAudit(t, b) })
			t.Run("members are found by name, suspended with a reason, and still adjusted", func(t *testing.T) { testMembersAPI(t, b) })
		})
	}
}

func testSuspendMerchantAPI(t *testing.T, b backend) {
	h, _ := operatorServer(t, time.Hour, withBackend(b)) // a long TTL: only the suspension may end the cached key
	w := h.newWorld()
	earned := h.earn(w.posA, w.storeA, w.member.ID, 100_000)
	want[map[string]any](t, h.post("/v1/ping", w.posA, "", map[string]any{}), http.StatusOK) // cached now

	m := want[ledger.Merchant](t, h.post("/v1/merchants/"+w.merchantA+"/suspend", h.admin, h.idem(), map[string]any{"reason": "contract ended"}), http.StatusOK)
	if m.Status != ledger.StatusSuspended {
		t.Fatalf("status %q", m.Status)
	}
	problem(t, h.post("/v1/ping", w.posA, "", map[string]any{}), http.StatusUnprocessableEntity, ledger.CodeMerchantSuspended, "")
	problem(t, h.get("/v1/members/"+w.member.ID, w.posA), http.StatusUnprocessableEntity, ledger.CodeMerchantSuspended, "")
	// Even an admin cannot earn, redeem or hold at the suspended merchant's stores.
	problem(t, h.post("/v1/earns", h.admin, h.idem(), map[string]any{"member_id": w.member.ID, "store_id": w.storeA,
		"receipt": h.receipt(), "purchase_amount": 1000}), http.StatusUnprocessableEntity, ledger.CodeMerchantSuspended, "")
	problem(t, h.post("/v1/holds", h.admin, h.idem(), map[string]any{"member_id": w.member.ID, "store_id": w.storeA,
		"points": 5}), http.StatusUnprocessableEntity, ledger.CodeMerchantSuspended, "")
	// A refund of an earlier purchase still goes through (by an operator).
	want[opResponse](t, h.post("/v1/cancellations", h.admin, h.idem(), map[string]any{"transaction_id": earned.ID, "points": 100}), http.StatusCreated)
	// Merchant B trades on.
	h.earn(w.posB, w.storeB, w.member.ID, 1000)
	// Suspending again changes nothing and writes no second entry.
	want[ledger.Merchant](t, h.post("/v1/merchants/"+w.merchantA+"/suspend", h.admin, h.idem(), map[string]any{}), http.StatusOK)

	want[ledger.Merchant](t, h.post("/v1/merchants/"+w.merchantA+"/reactivate", h.admin, h.idem(), nil), http.StatusOK)
	h.earn(w.posA, w.storeA, w.member.ID, 1000)

	log := h.auditLog("?target=" + w.merchantA)
	if len(log) != 3 || log[0].Action != backoffice.ActionMerchantReactivate || log[1].Action != backoffice.ActionMerchantSuspend ||
		log[1].Reason != "contract ended" || log[2].Action != backoffice.ActionMerchantCreate {
		t.Fatalf("audit log of the merchant: %+v", log)
	}
	if !strings.Contains(string(log[1].Before), `"status":"active"`) || !strings.Contains(string(log[1].After), `"status":"suspended"`) {
		t.Errorf("suspension before %s after %s", log[1].Before, log[1].After)
	}
}

func testSuspendStoreAPI(t *testing.T, b backend) {
	h, _ := operatorServer(t, time.Hour, withBackend(b))
	w := h.newWorld()
	other := h.createStore(w.merchantA, "A second")
	bound := h.createPOSKey(w.merchantA, w.storeA)
	want[map[string]any](t, h.post("/v1/ping", bound, "", map[string]any{}), http.StatusOK)
	st := want[ledger.Shop](t, h.post("/v1/stores/"+w.storeA+"/suspend", h.admin, h.idem(), map[string]any{}), http.StatusOK)
	if st.Status != ledger.StatusSuspended {
		t.Fatalf("store %+v", st)
	}
	problem(t, h.post("/v1/ping", bound, "", map[string]any{}), http.StatusUnprocessableEntity, ledger.CodeStoreSuspended, "")
	// The merchant's own key works, but not at the suspended store.
	problem(t, h.post("/v1/earns", w.posA, h.idem(), map[string]any{"member_id": w.member.ID, "store_id": w.storeA,
		"receipt": h.receipt(), "purchase_amount": 1000}), http.StatusUnprocessableEntity, ledger.CodeStoreSuspended, "")
	h.earn(w.posA, other.ID, w.member.ID, 1000)
	renamed := want[ledger.Shop](t, h.patch("/v1/stores/"+w.storeA, h.admin, map[string]any{"name": "A main street (closed)"}), http.StatusOK)
	if renamed.Name != "A main street (closed)" || renamed.Status != ledger.StatusSuspended {
		t.Fatalf("renamed %+v", renamed)
	}
	stores := want[page[ledger.Shop]](t, h.get("/v1/merchants/"+w.merchantA+"/stores?limit=1", w.posA), http.StatusOK)
	if len(stores.Items) != 1 || stores.NextCursor == "" {
		t.Fatalf("first page %+v", stores)
	}
	rest := want[page[ledger.Shop]](t, h.get("/v1/merchants/"+w.merchantA+"/stores?limit=1&cursor="+stores.NextCursor, w.posA), http.StatusOK)
	if len(rest.Items) != 1 || rest.Items[0].ID == stores.Items[0].ID || rest.NextCursor != "" {
		t.Fatalf("second page %+v", rest)
	}
	want[ledger.Shop](t, h.post("/v1/stores/"+w.storeA+"/reactivate", h.admin, h.idem(), map[string]any{}), http.StatusOK)
	want[map[string]any](t, h.post("/v1/ping", bound, "", map[string]any{}), http.StatusOK)
}

// testOtherInstance runs a second server on the same database: it learns
// of a suspension when its cached key expires (the documented bound), while
// the ledger refuses the merchant's earns there from the start.
func testOtherInstance(t *testing.T, b backend) {
	const ttl = 300 * time.Millisecond
	h, _ := operatorServer(t, ttl, withBackend(b))
	w := h.newWorld()
	other := New(Config{Mode: h.cfg.mode, KeyCacheTTL: ttl}, h.store, h.store, h.writer, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	srv2 := httptest.NewServer(other.Handler())
	t.Cleanup(srv2.Close)
	h2 := *h
	h2.srv = srv2
	want[map[string]any](t, h2.post("/v1/ping", w.posA, "", map[string]any{}), http.StatusOK)

	want[ledger.Merchant](t, h.post("/v1/merchants/"+w.merchantA+"/suspend", h.admin, h.idem(), map[string]any{}), http.StatusOK)
	problem(t, h2.post("/v1/earns", w.posA, h.idem(), map[string]any{"member_id": w.member.ID, "store_id": w.storeA,
		"receipt": h.receipt(), "purchase_amount": 1000}), http.StatusUnprocessableEntity, ledger.CodeMerchantSuspended, "")
	deadline := time.Now().Add(ttl + 5*time.Second)
	for {
		rep := h2.post("/v1/ping", w.posA, "", map[string]any{})
		if rep.status == http.StatusUnprocessableEntity {
			problem(t, rep, http.StatusUnprocessableEntity, ledger.CodeMerchantSuspended, "")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other instance still accepts the suspended merchant's key after %v: %s", ttl, rep)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testKeysAPI(t *testing.T, b backend) {
	h, s := operatorServer(t, time.Hour, withBackend(b))
	w := h.newWorld()
	created := h.makeAPIKey(map[string]any{"role": "pos", "merchant_id": w.merchantA, "name": "till 7"})
	want[map[string]any](t, h.post("/v1/ping", created.Key, "", map[string]any{}), http.StatusOK)
	if err := s.FlushKeyUsage(h.ctx); err != nil {
		t.Fatal(err)
	}
	list := want[page[keyInfo]](t, h.get("/v1/keys?limit=200", h.admin), http.StatusOK)
	var found keyInfo
	for _, k := range list.Items {
		if k.ID == created.ID {
			found = k
		}
	}
	if found.ID == "" || found.Prefix != created.Prefix || found.LastUsedAt == nil || found.RevokedAt != nil || found.MerchantID != w.merchantA {
		t.Fatalf("listed %+v", found)
	}
	if strings.Contains(string(h.get("/v1/keys?limit=200", h.admin).body), created.Key) {
		t.Fatal("the key list shows a secret")
	}
	// Paging by one walks every key once.
	seen := map[string]bool{}
	cursor := ""
	for range 50 {
		q := "?limit=1"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		p := want[page[keyInfo]](t, h.get("/v1/keys"+q, h.admin), http.StatusOK)
		for _, k := range p.Items {
			if seen[k.ID] {
				t.Fatalf("key %s twice", k.ID)
			}
			seen[k.ID] = true
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != len(list.Items) {
		t.Fatalf("paged %d keys of %d", len(seen), len(list.Items))
	}

	// A rotation with an overlap: both keys work, then only the new one.
	rot := want[rotateResponse](t, h.post("/v1/keys/"+created.ID+"/rotate", h.admin, h.idem(), map[string]any{"overlap_seconds": 1}), http.StatusCreated)
	if rot.Replaces != created.ID || rot.Key == "" || rot.Key == created.Key || rot.Role != auth.RolePOS || rot.MerchantID != w.merchantA || rot.Name != "till 7" {
		t.Fatalf("rotated %+v", rot)
	}
	want[map[string]any](t, h.post("/v1/ping", created.Key, "", map[string]any{}), http.StatusOK)
	h.earn(rot.Key, w.storeA, w.member.ID, 1000)
	time.Sleep(time.Until(rot.ReplacedExpiresAt) + 50*time.Millisecond)
	problem(t, h.post("/v1/ping", created.Key, "", map[string]any{}), http.StatusUnauthorized, codeUnauthorized, "")
	want[map[string]any](t, h.post("/v1/ping", rot.Key, "", map[string]any{}), http.StatusOK)
	problem(t, h.post("/v1/keys/"+created.ID+"/rotate", h.admin, h.idem(), map[string]any{"overlap_seconds": 0}), http.StatusConflict, ledger.CodeConflict, "")

	// A rotation without overlap ends the old key at once; so does a revocation.
	rot2 := want[rotateResponse](t, h.post("/v1/keys/"+rot.ID+"/rotate", h.admin, h.idem(), map[string]any{"overlap_seconds": 0}), http.StatusCreated)
	problem(t, h.post("/v1/ping", rot.Key, "", map[string]any{}), http.StatusUnauthorized, codeUnauthorized, "")
	want[map[string]any](t, h.post("/v1/ping", rot2.Key, "", map[string]any{}), http.StatusOK)
	info := want[keyInfo](t, h.post("/v1/keys/"+rot2.ID+"/revoke", h.admin, h.idem(), nil), http.StatusOK)
	if info.RevokedAt == nil {
		t.Fatalf("revoked %+v", info)
	}
	problem(t, h.post("/v1/ping", rot2.Key, "", map[string]any{}), http.StatusUnauthorized, codeUnauthorized, "")
	problem(t, h.post("/v1/keys/no-such-key/revoke", h.admin, h.idem(), nil), http.StatusNotFound, ledger.CodeNotFound, "")
	problem(t, h.post("/v1/keys/"+rot2.ID+"/rotate", h.admin, h.idem(), map[string]any{"overlap_seconds": 30*24*3600 + 1}), http.StatusBadRequest, ledger.CodeValidation, "overlap_seconds")
	problem(t, h.post("/v1/keys/"+rot2.ID+"/rotate", h.admin, h.idem(), map[string]any{}), http.StatusBadRequest, ledger.CodeValidation, "overlap_seconds")

	// The same rotation sent again does not mint a second key.
	idem := h.idem()
	fresh := h.makeAPIKey(map[string]any{"role": "viewer"})
	want[rotateResponse](t, h.post("/v1/keys/"+fresh.ID+"/rotate", h.admin, idem, map[string]any{"overlap_seconds": 60}), http.StatusCreated)
	problem(t, h.post("/v1/keys/"+fresh.ID+"/rotate", h.admin, idem, map[string]any{"overlap_seconds": 60}), http.StatusUnprocessableEntity, ledger.CodeIdempotencyReused, "")

	log := h.auditLog("?target=" + created.ID)
	if len(log) != 2 || log[0].Action != backoffice.ActionKeyRotate || log[1].Action != backoffice.ActionKeyCreate ||
		!strings.Contains(string(log[0].After), rot.ID) {
		t.Fatalf("audit log of the key: %+v", log)
	}
	if len(h.auditLog("?target="+rot2.ID)) != 1 { // its revocation
		t.Fatalf("audit log of the revoked key: %+v", h.auditLog("?target="+rot2.ID))
	}
}

func testMerchantPatchAudit(t *testing.T, b backend) {
	h, _ := operatorServer(t, 0, withBackend(b))
	w := h.newWorld()
	before := h.earn(w.posA, w.storeA, w.member.ID, 10_000)
	m := want[ledger.Merchant](t, h.patch("/v1/merchants/"+w.merchantA, h.admin, map[string]any{"earn_rate_bp": 1000, "point_validity_days": 30}), http.StatusOK)
	if m.EarnRateBP != 1000 || m.PointValidityDays != 30 || m.Name != "Merchant A" {
		t.Fatalf("patched %+v", m)
	}
	after := h.earn(w.posA, w.storeA, w.member.ID, 10_000)
	if before.Points != 10_000*rateA/10_000 || after.Points != 1000 {
		t.Fatalf("earned %d then %d", before.Points, after.Points)
	}
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{}, "name"},
		{map[string]any{"earn_rate_bp": -1}, "earn_rate_bp"},
		{map[string]any{"earn_rate_bp": 10_001}, "earn_rate_bp"},
		{map[string]any{"point_validity_days": 0}, "point_validity_days"},
		{map[string]any{"name": ""}, "name"},
		{map[string]any{"status": "suspended"}, "status"},
	} {
		problem(t, h.patch("/v1/merchants/"+w.merchantA, h.admin, c.body), http.StatusBadRequest, ledger.CodeValidation, c.field)
	}
	problem(t, h.patch("/v1/merchants/nope", h.admin, map[string]any{"name": "x"}), http.StatusNotFound, ledger.CodeMerchantNotFound, "")

	list := want[page[ledger.Merchant]](t, h.get("/v1/merchants?limit=1", h.admin), http.StatusOK)
	next := want[page[ledger.Merchant]](t, h.get("/v1/merchants?cursor="+list.NextCursor, h.admin), http.StatusOK)
	if len(list.Items) != 1 || len(next.Items) != 1 || next.NextCursor != "" || list.Items[0].ID == next.Items[0].ID {
		t.Fatalf("merchant pages %+v then %+v", list, next)
	}
	problem(t, h.get("/v1/merchants?cursor=bogus", h.admin), http.StatusBadRequest, ledger.CodeValidation, "cursor")

	adj := want[opResponse](t, h.post("/v1/adjustments", h.admin, h.idem(), map[string]any{"member_id": w.member.ID, "points": -50, "reason": "duplicate receipt"}), http.StatusCreated)

	// Every operator action is there, newest first, with who did it.
	log := h.auditLog("?limit=200")
	var actions []string
	for _, e := range log {
		actions = append(actions, e.Action)
		if e.ActorPrefix == "" || e.ActorKeyID == "" || e.At.IsZero() {
			t.Errorf("entry without its actor or time: %+v", e)
		}
		if strings.Contains(string(e.After)+string(e.Before), w.member.Phone[2:]) {
			t.Errorf("a phone number in the audit log: %+v", e)
		}
	}
	wantActions := []string{"adjustment", "merchant.update", "key.create", "key.create", "member.create",
		"store.create", "merchant.create", "store.create", "merchant.create"}
	if strings.Join(actions, " ") != strings.Join(wantActions, " ") {
		t.Fatalf("audit actions %v, want %v", actions, wantActions)
	}
	if log[0].TxnID != adj.ID || log[0].TargetID != w.member.ID || log[0].Reason != "duplicate receipt" || string(log[0].After) != `{"points":-50}` {
		t.Errorf("adjustment entry %+v", log[0])
	}
	if !strings.Contains(string(log[1].Before), `"earn_rate_bp":150`) || !strings.Contains(string(log[1].After), `"earn_rate_bp":1000`) {
		t.Errorf("update entry %s → %s", log[1].Before, log[1].After)
	}
	if !strings.Contains(string(log[4].After), `"phone":"+15 `) || !strings.Contains(string(log[4].After), "*") {
		t.Errorf("member creation entry %s: want a masked phone", log[4].After)
	}
	mine := want[page[backoffice.Entry]](t, h.get("/v1/audit-log?limit=2&actor="+log[0].ActorKeyID, h.admin), http.StatusOK)
	if len(mine.Items) != 2 || mine.NextCursor == "" {
		t.Fatalf("by actor %+v", mine)
	}
	more := want[page[backoffice.Entry]](t, h.get("/v1/audit-log?limit=200&actor="+log[0].ActorKeyID+"&cursor="+mine.NextCursor, h.admin), http.StatusOK)
	if len(more.Items)+2 != len(log) {
		t.Fatalf("the second page has %d entries of %d", len(more.Items), len(log))
	}
}

func testMembersAPI(t *testing.T, b backend) {
	h, _ := operatorServer(t, 0, withBackend(b))
	w := h.newWorld()
	viewer := h.makeAPIKey(map[string]any{"role": "viewer"}).Key
	for i, name := range []string{"Kim Min-jun", "Park Kimberly", "Lee Ji-woo"} {
		h.createMember(fmt.Sprintf("+8210%08d", i), name)
	}
	found := want[page[ledger.Member]](t, h.get("/v1/members?name=kim", viewer), http.StatusOK)
	if len(found.Items) != 2 {
		t.Fatalf("found %+v", found.Items)
	}
	for _, m := range found.Items {
		if !strings.Contains(m.Phone, "*") || strings.Contains(m.Phone, "0000000") || !strings.HasPrefix(m.Phone, "+82 10-") {
			t.Errorf("phone %q is not masked", m.Phone)
		}
	}
	first := want[page[ledger.Member]](t, h.get("/v1/members?name=KIM&limit=1", viewer), http.StatusOK)
	second := want[page[ledger.Member]](t, h.get("/v1/members?name=KIM&limit=1&cursor="+url.QueryEscape(first.NextCursor), viewer), http.StatusOK)
	if len(first.Items) != 1 || len(second.Items) != 1 || first.Items[0].ID == second.Items[0].ID || second.NextCursor != "" {
		t.Fatalf("pages %+v %+v", first, second)
	}
	problem(t, h.get("/v1/members?name=", viewer), http.StatusBadRequest, ledger.CodeValidation, "name")
	problem(t, h.get("/v1/members?name=a&phone=%2B15550000000", viewer), http.StatusBadRequest, ledger.CodeValidation, "name")

	earned := h.earn(w.posA, w.storeA, w.member.ID, 100_000)
	problem(t, h.post("/v1/members/"+w.member.ID+"/suspend", h.admin, h.idem(), map[string]any{}), http.StatusBadRequest, ledger.CodeValidation, "reason")
	m := want[ledger.Member](t, h.post("/v1/members/"+w.member.ID+"/suspend", h.admin, h.idem(), map[string]any{"reason": "card reported stolen"}), http.StatusOK)
	if m.Status != ledger.StatusSuspended {
		t.Fatalf("member %+v", m)
	}
	problem(t, h.post("/v1/earns", w.posA, h.idem(), map[string]any{"member_id": w.member.ID, "store_id": w.storeA,
		"receipt": h.receipt(), "purchase_amount": 1000}), http.StatusUnprocessableEntity, ledger.CodeMemberSuspended, "")
	problem(t, h.post("/v1/redemptions", w.posA, h.idem(), map[string]any{"member_id": w.member.ID, "store_id": w.storeA,
		"receipt": h.receipt(), "points": 1}), http.StatusUnprocessableEntity, ledger.CodeMemberSuspended, "")
	want[opResponse](t, h.post("/v1/cancellations", w.posA, h.idem(), map[string]any{"transaction_id": earned.ID, "points": 10}), http.StatusCreated)
	want[opResponse](t, h.post("/v1/adjustments", h.admin, h.idem(), map[string]any{"member_id": w.member.ID, "points": 5, "reason": "goodwill"}), http.StatusCreated)
	// An operator sees the whole picture of a suspended member.
	if bal := want[ledger.Balance](t, h.get("/v1/members/"+w.member.ID+"/balance", viewer), http.StatusOK); bal.Balance != 1500-10+5 {
		t.Fatalf("balance %+v", bal)
	}
	want[page[json.RawMessage]](t, h.get("/v1/members/"+w.member.ID+"/lots", viewer), http.StatusOK)
	want[ledger.Member](t, h.post("/v1/members/"+w.member.ID+"/reactivate", h.admin, h.idem(), nil), http.StatusOK)
	h.earn(w.posA, w.storeA, w.member.ID, 1000)
	log := h.auditLog("?target=" + w.member.ID)
	var actions []string
	for _, e := range log {
		actions = append(actions, e.Action)
	}
	if strings.Join(actions, " ") != "member.reactivate adjustment member.suspend member.create" || log[2].Reason != "card reported stolen" {
		t.Fatalf("member audit %v %+v", actions, log)
	}
}

// touchCounter counts the back office's last-used writes.
type touchCounter struct {
	testStore
	bo    backoffice.Store
	mu    sync.Mutex
	calls int
	keys  int
}

func (c *touchCounter) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	c.mu.Lock()
	c.calls++
	c.keys += len(used)
	c.mu.Unlock()
	return c.bo.TouchKeys(ctx, used)
}

// The rest of backoffice.Store passes through.
func (c *touchCounter) UpdateMerchant(ctx context.Context, id string, ch backoffice.Change[ledger.Merchant]) (ledger.Merchant, error) {
	return c.bo.UpdateMerchant(ctx, id, ch)
}
func (c *touchCounter) UpdateStore(ctx context.Context, id string, ch backoffice.Change[ledger.Shop]) (ledger.Shop, error) {
	return c.bo.UpdateStore(ctx, id, ch)
}
func (c *touchCounter) UpdateMemberStatus(ctx context.Context, id string, ch backoffice.Change[ledger.Member]) (ledger.Member, error) {
	return c.bo.UpdateMemberStatus(ctx, id, ch)
}
func (c *touchCounter) ListMerchants(ctx context.Context, after string, limit int) ([]ledger.Merchant, error) {
	return c.bo.ListMerchants(ctx, after, limit)
}
func (c *touchCounter) ListStores(ctx context.Context, m, after string, limit int) ([]ledger.Shop, error) {
	return c.bo.ListStores(ctx, m, after, limit)
}
func (c *touchCounter) SearchMembers(ctx context.Context, name, after string, limit int) ([]ledger.Member, error) {
	return c.bo.SearchMembers(ctx, name, after, limit)
}
func (c *touchCounter) ListKeys(ctx context.Context, after string, limit int) ([]auth.Key, error) {
	return c.bo.ListKeys(ctx, after, limit)
}
func (c *touchCounter) Key(ctx context.Context, id string) (auth.Key, error) {
	return c.bo.Key(ctx, id)
}
func (c *touchCounter) UpdateKey(ctx context.Context, id string, add *auth.Key, ch backoffice.Change[auth.Key]) (auth.Key, error) {
	return c.bo.UpdateKey(ctx, id, add, ch)
}
func (c *touchCounter) AppendAudit(ctx context.Context, e backoffice.Entry) error {
	return c.bo.AppendAudit(ctx, e)
}
func (c *touchCounter) AuditLog(ctx context.Context, f backoffice.AuditFilter) ([]backoffice.Entry, error) {
	return c.bo.AuditLog(ctx, f)
}

// TestLastUsedIsBatched: a thousand authenticated requests write no
// last-used time at all within the flush interval, and one flush then
// writes each key once.
func TestLastUsedIsBatched(t *testing.T) {
	h := newHarness(t)
	w := h.newWorld()
	c := &touchCounter{testStore: h.store, bo: h.store.(backoffice.Store)}
	s := New(Config{Mode: h.cfg.mode}, c, h.store, h.writer, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	h.srv = httptest.NewServer(s.Handler())
	t.Cleanup(h.srv.Close)
	for i := range 1000 {
		key := w.posA
		if i%2 == 1 {
			key = w.posB
		}
		want[map[string]any](t, h.post("/v1/ping", key, "", map[string]any{}), http.StatusOK)
	}
	c.mu.Lock()
	calls := c.calls
	c.mu.Unlock()
	if calls != 0 {
		t.Fatalf("%d last-used writes during 1000 requests (flush interval %v)", calls, keyUsageFlushEvery)
	}
	if err := s.FlushKeyUsage(h.ctx); err != nil {
		t.Fatal(err)
	}
	if c.calls != 1 || c.keys != 2 {
		t.Fatalf("a flush made %d writes of %d keys; want 1 write of the 2 keys used", c.calls, c.keys)
	}
	for _, k := range want[page[keyInfo]](t, h.get("/v1/keys?limit=200", h.admin), http.StatusOK).Items {
		if k.Role == auth.RolePOS && k.LastUsedAt == nil {
			t.Errorf("pos key %s has no last-used time after the flush", k.Prefix)
		}
	}
}

// BenchmarkKeyUsageNote is what recording a key's use costs a request: a map
// write under a mutex, no database work (the flush interval is not reached).
func BenchmarkKeyUsageNote(b *testing.B) {
	u := newKeyUsage(time.Hour)
	var bo backoffice.Store = (*touchCounter)(nil)
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			u.note(ids[i%len(ids)], bo)
			i++
		}
	})
}
