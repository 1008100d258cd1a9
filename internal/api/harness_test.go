package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/cache"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/postgres"
	"github.com/pointd/pointd/internal/postgres/pgtest"
	"github.com/pointd/pointd/internal/sqlite"
)

// The tests here drive the real handler over real HTTP, on a real store with
// a real batched writer: nothing of pointd is mocked.

// testStore is what a pointd database offers: the ledger's store and the keys.
type testStore interface {
	ledger.Store
	auth.KeyStore
}

type backend string

const (
	onSQLite   backend = "SQLite"
	onPostgres backend = "PostgreSQL"
)

// harnessConfig tunes one test server.
type harnessConfig struct {
	backend backend
	mode    auth.Mode
	writer  ledger.WriterConfig
	gate    chan struct{} // when set, every ledger write waits until it is closed
	keys    func(auth.KeyStore) auth.KeyStore
	shared  *cache.Shared             // the read path's Redis (readpath_test.go)
	wrap    func(testStore) testStore // what the server and writer see of the store
	server  func(*Config)             // when set, changes the server's Config (overload tests)
	entered chan struct{}             // when set with gate, told each time a write reaches the gate
	slow    time.Duration             // when set, every ledger write takes at least this long
}

type option func(*harnessConfig)

func withBackend(b backend) option            { return func(c *harnessConfig) { c.backend = b } }
func withMode(m auth.Mode) option             { return func(c *harnessConfig) { c.mode = m } }
func withWriter(w ledger.WriterConfig) option { return func(c *harnessConfig) { c.writer = w } }
func withGate(g chan struct{}) option         { return func(c *harnessConfig) { c.gate = g } }

// withSlowWrites makes every ledger write take at least d.
func withSlowWrites(d time.Duration) option { return func(c *harnessConfig) { c.slow = d } }

// slowStore is the store of withSlowWrites.
type slowStore struct {
	ledger.Store
	d time.Duration
}

func (s slowStore) Write(ctx context.Context, fn func(ledger.BatchTx) error) error {
	time.Sleep(s.d)
	return s.Store.Write(ctx, fn)
}

// withGateEntered is told (without blocking) each time a write waits at the gate.
func withGateEntered(ch chan struct{}) option { return func(c *harnessConfig) { c.entered = ch } }

// withConfig changes the server's Config before it starts.
func withConfig(f func(*Config)) option { return func(c *harnessConfig) { c.server = f } }

// withKeys wraps the key store the server sees.
func withKeys(f func(auth.KeyStore) auth.KeyStore) option {
	return func(c *harnessConfig) { c.keys = f }
}

// gatedStore holds every ledger write until its gate closes, so that a test
// can fill the writer's queue deterministically.
type gatedStore struct {
	ledger.Store
	gate    chan struct{}
	entered chan struct{}
}

func (g gatedStore) Write(ctx context.Context, fn func(ledger.BatchTx) error) error {
	if g.entered != nil {
		select {
		case g.entered <- struct{}{}:
		default:
		}
	}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Store.Write(ctx, fn)
}

// harness is one running pointd: the handler behind an httptest server, its
// store, its writer and an admin key made through the store.
type harness struct {
	t      *testing.T
	ctx    context.Context
	cfg    harnessConfig
	store  testStore
	writer *ledger.Writer
	srv    *httptest.Server
	api    *Server       // the server behind srv, to reconfigure (UseMembers)
	dsn    string        // the PostgreSQL schema's DSN; "" on SQLite
	admin  string        // the admin key's secret
	seq    *atomic.Int64 // numbers fresh receipts and idempotency keys
}

// at returns h reporting to t: subtests call its helpers through it so that
// a fatal failure stops the subtest, not its parent.
func (h *harness) at(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

// newHarness starts a server. When the test ends the HTTP server stops, the
// writer drains, and the audit must find the ledger sound.
func newHarness(t *testing.T, opts ...option) *harness {
	t.Helper()
	cfg := harnessConfig{backend: onSQLite, mode: auth.ModeLive}
	for _, o := range opts {
		o(&cfg)
	}
	ctx := context.Background()
	var store testStore
	var dsn string
	switch cfg.backend {
	case onSQLite:
		db, err := sqlite.Open(ctx, t.TempDir())
		if err != nil {
			t.Fatalf("open SQLite: %v", err)
		}
		store = db
	case onPostgres:
		dsn = pgtest.DSN(t) // fails the test, never skips it, without a database
		db, err := postgres.Open(ctx, dsn, 4)
		if err != nil {
			t.Fatalf("open PostgreSQL: %v", err)
		}
		store = db
	default:
		t.Fatalf("unknown backend %q", cfg.backend)
	}
	h := &harness{t: t, ctx: ctx, cfg: cfg, store: store, seq: new(atomic.Int64), dsn: dsn}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	t.Cleanup(h.mustBeSound)

	seen := store
	if cfg.wrap != nil {
		seen = cfg.wrap(store)
	}
	var ws ledger.Store = seen
	if cfg.gate != nil {
		ws = gatedStore{Store: seen, gate: cfg.gate, entered: cfg.entered}
	}
	if cfg.slow > 0 {
		ws = slowStore{Store: ws, d: cfg.slow}
	}
	h.writer = ledger.NewWriter(ws, cfg.writer)
	t.Cleanup(h.writer.Close)

	h.admin = h.makeKey(auth.Key{Role: auth.RoleAdmin, Name: "test admin"}, cfg.mode)

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var keys auth.KeyStore = seen
	if cfg.keys != nil {
		keys = cfg.keys(seen)
	}
	scfg := Config{Mode: cfg.mode, Shared: cfg.shared}
	if cfg.server != nil {
		cfg.server(&scfg)
	}
	s := New(scfg, seen, keys, h.writer, log, nil)
	h.api = s
	h.srv = httptest.NewServer(s.Handler())
	t.Cleanup(h.srv.Close)
	return h
}

// makeKey creates a key through the store, as `pointd keys create` does, and
// returns its secret.
func (h *harness) makeKey(k auth.Key, mode auth.Mode) string {
	h.t.Helper()
	secret, nk := auth.NewSecret(mode)
	nk.ID, nk.Role, nk.MerchantID, nk.StoreID, nk.Name, nk.RevokedAt = ledger.NewID(), k.Role, k.MerchantID, k.StoreID, k.Name, k.RevokedAt
	if err := h.store.CreateKey(h.ctx, nk); err != nil {
		h.t.Fatalf("create key: %v", err)
	}
	return secret
}

// mustBeSound runs the audit over the whole ledger.
func (h *harness) mustBeSound() {
	h.t.Helper()
	rep, err := ledger.Verify(h.ctx, h.store.Audit())
	if err != nil {
		h.t.Errorf("audit: %v", err)
		return
	}
	if !rep.Sound() {
		h.t.Errorf("the audit finds the ledger unsound: %+v", rep.Discrepancies)
	}
}

// idem returns a fresh Idempotency-Key.
func (h *harness) idem() string { return fmt.Sprintf("idem-%d-%s", h.seq.Add(1), ledger.NewID()) }

// receipt returns a fresh receipt number.
func (h *harness) receipt() string { return fmt.Sprintf("R-%d", h.seq.Add(1)) }

// reply is an HTTP answer, read in full.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// req describes one request. body is sent as is when it is a string or
// []byte, JSON-encoded otherwise, and not at all when nil.
type req struct {
	method, path string
	key          string // the API key's secret; "" for none
	idem         string // the Idempotency-Key; "" for none
	body         any
	header       map[string]string // more headers, overriding the defaults
}

func (h *harness) do(r req) reply {
	h.t.Helper()
	rep, err := h.send(r)
	if err != nil {
		h.t.Fatal(err)
	}
	return rep
}

// send is do for goroutines other than the test's: it reports instead of
// failing.
func (h *harness) send(r req) (reply, error) {
	var body io.Reader
	hasBody := false
	switch b := r.body.(type) {
	case nil:
	case string:
		body, hasBody = strings.NewReader(b), true
	case []byte:
		body, hasBody = bytes.NewReader(b), true
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return reply{}, fmt.Errorf("encode request: %w", err)
		}
		body, hasBody = bytes.NewReader(j), true
	}
	hr, err := http.NewRequestWithContext(h.ctx, r.method, h.srv.URL+r.path, body)
	if err != nil {
		return reply{}, fmt.Errorf("new request: %w", err)
	}
	if hasBody {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.key != "" {
		hr.Header.Set("Authorization", "Bearer "+r.key)
	}
	if r.idem != "" {
		hr.Header.Set("Idempotency-Key", r.idem)
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	resp, err := h.srv.Client().Do(hr)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: read body: %w", r.method, r.path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func (h *harness) get(path, key string) reply {
	h.t.Helper()
	return h.do(req{method: http.MethodGet, path: path, key: key})
}

func (h *harness) post(path, key, idem string, body any) reply {
	h.t.Helper()
	return h.do(req{method: http.MethodPost, path: path, key: key, idem: idem, body: body})
}

// want checks the status of r and decodes its JSON body into v (when not nil).
func want[T any](t *testing.T, r reply, status int) T {
	t.Helper()
	var v T
	if r.status != status {
		t.Fatalf("status %d, want %d; body: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json; body: %s", ct, r.body)
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, r.body, err)
	}
	return v
}

// problem checks that r is an RFC 9457 problem with status and code, and
// (when field is not "-") that it names field.
func problem(t *testing.T, r reply, status int, code, field string) Problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (%s); body: %s", r.status, status, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json; body: %s", ct, r.body)
	}
	var p Problem
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode problem from %s: %v", r.body, err)
	}
	if p.Code != code {
		t.Fatalf("code %q, want %q; body: %s", p.Code, code, r.body)
	}
	if p.Status != status {
		t.Errorf("problem status %d, want %d", p.Status, status)
	}
	if p.Type != "https://pointd.dev/problems/"+code {
		t.Errorf("problem type %q does not name the code %q", p.Type, code)
	}
	if p.Title != http.StatusText(status) || p.Detail == "" {
		t.Errorf("problem wants a title and a detail: %s", r.body)
	}
	if p.RequestID == "" || p.RequestID != r.header.Get("X-Request-Id") {
		t.Errorf("problem request_id %q, header X-Request-Id %q", p.RequestID, r.header.Get("X-Request-Id"))
	}
	if field != "-" && p.Field != field {
		t.Fatalf("field %q, want %q; body: %s", p.Field, field, r.body)
	}
	return p
}

// opResponse is the answer of every ledger operation.
type opResponse struct {
	ledger.Transaction
	Balance   int64        `json:"balance"`
	Held      int64        `json:"held"`
	Available int64        `json:"available"`
	Hold      *ledger.Hold `json:"hold"`
}

// world is the directory most tests start from: two merchants, each with a
// store and a POS key, and a member.
type world struct {
	merchantA, storeA, posA string
	merchantB, storeB, posB string
	member                  ledger.Member
}

const rateA = 150 // earn rate of merchant A in basis points

// createMerchant, createStore, createMember and createPOSKey go through the
// API with the admin key.
func (h *harness) createMerchant(name string, rateBP int64) ledger.Merchant {
	h.t.Helper()
	return want[ledger.Merchant](h.t, h.post("/v1/merchants", h.admin, h.idem(),
		map[string]any{"name": name, "earn_rate_bp": rateBP}), http.StatusCreated)
}

func (h *harness) createStore(merchantID, name string) ledger.Shop {
	h.t.Helper()
	return want[ledger.Shop](h.t, h.post("/v1/merchants/"+merchantID+"/stores", h.admin, h.idem(),
		map[string]any{"name": name}), http.StatusCreated)
}

func (h *harness) createMember(phone, name string) ledger.Member {
	h.t.Helper()
	m := want[ledger.Member](h.t, h.post("/v1/members", h.admin, h.idem(),
		map[string]any{"phone": phone, "name": name}), http.StatusCreated)
	if !strings.Contains(m.Phone, "*") {
		h.t.Fatalf("a new member's answer carries phone %q, not masked", m.Phone)
	}
	m.Phone = phone // the answer masks it; the tests log in with the number they gave
	return m
}

func (h *harness) createPOSKey(merchantID, storeID string) string {
	h.t.Helper()
	body := map[string]any{"role": "pos", "merchant_id": merchantID, "name": "till"}
	if storeID != "" {
		body["store_id"] = storeID
	}
	k := want[keyResponse](h.t, h.post("/v1/keys", h.admin, h.idem(), body), http.StatusCreated)
	if k.Role != auth.RolePOS || k.MerchantID != merchantID || !strings.HasPrefix(k.Key, "pd_"+string(h.cfg.mode)+"_") {
		h.t.Fatalf("created key %+v", k)
	}
	return k.Key
}

func (h *harness) newWorld() world {
	h.t.Helper()
	ma := h.createMerchant("Merchant A", rateA)
	sa := h.createStore(ma.ID, "A main street")
	mb := h.createMerchant("Merchant B", 100)
	sb := h.createStore(mb.ID, "B station")
	m := h.createMember(fmt.Sprintf("+1555%07d", h.seq.Add(1)), "Ada")
	return world{
		merchantA: ma.ID, storeA: sa.ID, posA: h.createPOSKey(ma.ID, ""),
		merchantB: mb.ID, storeB: sb.ID, posB: h.createPOSKey(mb.ID, ""),
		member: m,
	}
}

// earn earns purchase at store for member with key and wants a 201.
func (h *harness) earn(key, store, memberID string, purchase int64) opResponse {
	h.t.Helper()
	return want[opResponse](h.t, h.post("/v1/earns", key, h.idem(), map[string]any{
		"member_id": memberID, "store_id": store, "receipt": h.receipt(), "purchase_amount": purchase,
	}), http.StatusCreated)
}

func (h *harness) balance(memberID string) ledger.Balance {
	h.t.Helper()
	return want[ledger.Balance](h.t, h.get("/v1/members/"+memberID+"/balance", h.admin), http.StatusOK)
}

// history reads all of a member's transactions, page by page.
func (h *harness) history(memberID string, limit int) []ledger.Transaction {
	h.t.Helper()
	var all []ledger.Transaction
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10_000 {
			h.t.Fatal("history does not end")
		}
		q := url.Values{"limit": {fmt.Sprint(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		p := want[page[ledger.Transaction]](h.t, h.get("/v1/members/"+memberID+"/transactions?"+q.Encode(), h.admin), http.StatusOK)
		if len(p.Items) > limit {
			h.t.Fatalf("a page of %d items, limit %d", len(p.Items), limit)
		}
		all = append(all, p.Items...)
		if p.NextCursor == "" {
			return all
		}
		if len(p.Items) == 0 {
			h.t.Fatal("an empty page with a next_cursor")
		}
		cursor = p.NextCursor
	}
}

// headSeq is the last sequence number of the ledger: any transaction written
// moves it.
func (h *harness) headSeq() int64 {
	h.t.Helper()
	seq, _, err := h.store.Audit().Head(h.ctx)
	if err != nil {
		h.t.Fatalf("head: %v", err)
	}
	return seq
}

// snapshot is what a refused write must leave as it was.
type snapshot struct {
	head    int64
	balance ledger.Balance
	history string
}

func (h *harness) snap(memberID string) snapshot {
	h.t.Helper()
	hist, err := json.Marshal(h.history(memberID, maxPageSize))
	if err != nil {
		h.t.Fatal(err)
	}
	return snapshot{head: h.headSeq(), balance: h.balance(memberID), history: string(hist)}
}

// unchanged fails unless nothing was written since before.
func (h *harness) unchanged(before snapshot, memberID string) {
	t := h.t
	t.Helper()
	after := h.snap(memberID)
	if after.head != before.head {
		t.Errorf("the ledger moved from seq %d to %d", before.head, after.head)
	}
	if after.balance != before.balance {
		t.Errorf("balance %+v, was %+v", after.balance, before.balance)
	}
	if after.history != before.history {
		t.Errorf("history changed:\nnow %s\nwas %s", after.history, before.history)
	}
}

func ptr[T any](v T) *T { return &v }
