//go:build linux

package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/alert"
	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/metrics"
	"github.com/pointd/pointd/internal/postgres"
	"github.com/pointd/pointd/internal/postgres/pgtest"
)

// TestDatabaseOutage runs pointd on a PostgreSQL of the test's own, stops
// that database hard and later freezes every one of its processes, and
// sends valid earns (by member id and by card), redemptions, holds,
// captures, voids and cancellations meanwhile. Every answer must be a 201
// (or its replay) or a 503 database_unavailable with Retry-After, never a
// 500; /readyz must say not ready; the retries with the same Idempotency-Key
// after the database is back must learn the outcome (a replay for what a
// frozen batch committed late); and in the end every acknowledged operation
// is in the ledger exactly once, the balance adds up and the audit is sound.
func TestDatabaseOutage(t *testing.T) {
	pg := pgtest.NewInstance(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, pg.DSN(), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w := ledger.NewWriter(db, ledger.WriterConfig{})
	t.Cleanup(w.Close)
	ready := func(ctx context.Context) error { // what pointd serve probes
		_, err := db.Balance(ctx, "readiness-probe")
		if ledger.ErrorCode(err) == ledger.CodeMemberNotFound {
			return nil
		}
		return err
	}
	mt := metrics.New()
	engine, err := alert.New(alert.Config{Gatherer: mt.Registry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	engine.Evaluate() // the rules' first sample: nothing refused yet
	// Keys stay trusted for a minute, so that the operations reach the
	// writer; a key never used before the outage shows the key lookup.
	cfg := Config{Mode: auth.ModeLive, RequestTimeout: time.Second, KeyCacheTTL: time.Minute, Metrics: mt}
	s := New(cfg, db, db, w, slog.New(slog.NewTextHandler(io.Discard, nil)), ready)
	srv := httptest.NewServer(s.Handler())
	// Twenty times the request's deadline: an answer later than that was
	// held by a database call that ignored the deadline (no speed is measured).
	srv.Client().Timeout = 20 * time.Second
	t.Cleanup(srv.Close)
	h := &harness{t: t, ctx: ctx, cfg: harnessConfig{backend: onPostgres, mode: auth.ModeLive}, store: db,
		writer: w, srv: srv, api: s, seq: new(atomic.Int64)}
	h.admin = h.makeKey(auth.Key{Role: auth.RoleAdmin, Name: "test admin"}, auth.ModeLive)
	t.Cleanup(h.mustBeSound)

	wd := h.newWorld()
	pos, store, member := wd.posA, wd.storeA, wd.member
	var (
		mu        sync.Mutex
		acked     = map[string]bool{} // transaction ids acknowledged
		balance   int64               // what the acknowledged operations add up to
		outage503 int                 // database_unavailable answers seen
	)
	// check classifies one answer: 201, or 503 database_unavailable with a
	// Retry-After; anything else fails the test.
	check := func(what string, r reply) (ok bool, res opResponse) {
		t.Helper()
		switch r.status {
		case http.StatusCreated:
			if err := json.Unmarshal(r.body, &res); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			return true, res
		case http.StatusServiceUnavailable:
			var p Problem
			if err := json.Unmarshal(r.body, &p); err != nil || p.Code != ledger.CodeDatabaseUnavailable {
				t.Errorf("%s: 503 without database_unavailable: %s", what, r)
			}
			if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("%s: 503 without a Retry-After: %q", what, r.header.Get("Retry-After"))
			}
			mu.Lock()
			outage503++
			mu.Unlock()
			return false, res
		}
		t.Errorf("%s: want 201 or 503 database_unavailable, got %s", what, r)
		return false, res
	}
	type op struct {
		what, path, key, idem string
		body                  map[string]any
		delta                 int64 // on the balance, once acknowledged
	}
	// done records an acknowledged operation, once however often replayed.
	done := func(o op, res opResponse) {
		mu.Lock()
		defer mu.Unlock()
		if res.ID == "" {
			t.Errorf("%s: a 201 without a transaction", o.what)
			return
		}
		if !acked[res.ID] {
			acked[res.ID] = true
			balance += o.delta
		}
	}
	// settle retries o with its Idempotency-Key until it is acknowledged,
	// after Retry-After (capped: the test need not wait seconds), and says
	// whether the acknowledgement was a replay.
	settle := func(o op) (replayed bool) {
		t.Helper()
		for range 300 {
			r, err := h.send(req{method: http.MethodPost, path: o.path, key: o.key, idem: o.idem, body: o.body})
			if err != nil {
				t.Fatal(err)
			}
			if ok, res := check(o.what, r); ok {
				done(o, res)
				return r.header.Get(headerReplayed) == "true"
			}
			if t.Failed() {
				t.FailNow()
			}
			ra, _ := strconv.Atoi(r.header.Get("Retry-After"))
			time.Sleep(min(time.Duration(ra)*time.Second, 100*time.Millisecond))
		}
		t.Fatalf("%s: never acknowledged", o.what)
		return false
	}
	earn := func(key string, byCard bool) op {
		body := map[string]any{"store_id": store, "receipt": h.receipt(), "purchase_amount": 10000}
		if byCard {
			body["card_number"] = member.CardNumber
		} else {
			body["member_id"] = member.ID
		}
		return op{what: "earn", path: "/v1/earns", key: key, idem: h.idem(), body: body, delta: 150}
	}
	// Points to spend through both outages.
	settle(op{what: "first earn", path: "/v1/earns", key: pos, idem: h.idem(), delta: 15000,
		body: map[string]any{"member_id": member.ID, "store_id": store, "receipt": h.receipt(), "purchase_amount": 1_000_000}})

	// outage prepares what the operations need while the database serves,
	// takes it away (down), sends one of each operation and a few reads,
	// checks that each is answered 503 database_unavailable and that
	// /readyz is not ready, brings the database back (up) and retries each
	// operation until it is acknowledged. It returns how many of the
	// retries were replays.
	outage := func(name string, down, up func()) int {
		t.Helper()
		holdOp := func(points int64) op {
			return op{what: "hold", path: "/v1/holds", key: pos, idem: h.idem(), delta: 0,
				body: map[string]any{"member_id": member.ID, "store_id": store, "points": points, "expires_in_seconds": 3600}}
		}
		var prep [3]opResponse
		for i, o := range []op{holdOp(40), holdOp(20), earn(pos, false)} {
			r := h.do(req{method: http.MethodPost, path: o.path, key: o.key, idem: o.idem, body: o.body})
			ok, res := check(name+": prepare "+o.what, r)
			if !ok {
				t.Fatalf("%s: the database serves, yet %s", name, r)
			}
			done(o, res)
			prep[i] = res
		}
		fresh := h.makeKey(auth.Key{Role: auth.RolePOS, MerchantID: wd.merchantA, Name: "never used"}, auth.ModeLive)
		ops := []op{
			earn(pos, false),
			earn(pos, true),    // the card is looked up before the writer
			earn(fresh, false), // the key is looked up first
			{what: "redemption", path: "/v1/redemptions", key: pos, idem: h.idem(), delta: -50,
				body: map[string]any{"member_id": member.ID, "store_id": store, "receipt": h.receipt(), "points": 50}},
			holdOp(10),
			{what: "capture", path: "/v1/holds/" + prep[0].ID + "/capture", key: pos, idem: h.idem(), delta: -30,
				body: map[string]any{"points": 30}},
			{what: "void", path: "/v1/holds/" + prep[1].ID + "/void", key: pos, idem: h.idem(), delta: 0, body: map[string]any{}},
			{what: "cancellation", path: "/v1/cancellations", key: pos, idem: h.idem(), delta: -10,
				body: map[string]any{"transaction_id": prep[2].ID, "points": 10}},
		}
		down()
		downAt := time.Now()
		var wg sync.WaitGroup
		for _, o := range ops {
			wg.Go(func() {
				r, err := h.send(req{method: http.MethodPost, path: o.path, key: o.key, idem: o.idem, body: o.body})
				if err != nil {
					t.Error(err)
					return
				}
				if r.status != http.StatusServiceUnavailable {
					t.Errorf("%s: %s while the database is out: %s", name, o.what, r)
				}
				check(name+": "+o.what, r)
			})
		}
		for _, path := range []string{"/v1/members/" + member.ID + "/transactions", "/v1/members?card_number=" + member.CardNumber} {
			wg.Go(func() {
				r, err := h.send(req{method: http.MethodGet, path: path, key: h.admin})
				if err != nil {
					t.Error(err)
					return
				}
				if r.status != http.StatusServiceUnavailable {
					t.Errorf("%s: GET %s while the database is out: %s", name, path, r)
				}
				check(name+": GET "+path, r)
			})
		}
		wg.Go(func() {
			// The balance may be served stale from the cache, or refused.
			r, err := h.send(req{method: http.MethodGet, path: "/v1/members/" + member.ID + "/balance", key: pos})
			if err == nil && r.status != http.StatusOK {
				check(name+": balance", r)
			}
		})
		wg.Wait()
		// An outage of several seconds, as a restart or a hung machine
		// gives: the answers above came at their deadline, not at its end.
		time.Sleep(time.Until(downAt.Add(4 * time.Second)))
		r := h.get("/readyz", "")
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("%s: /readyz while the database is out: %s", name, r)
		}
		check(name+": readyz", r)
		up()
		for i := 0; h.get("/readyz", "").status != http.StatusOK; i++ {
			if i > 600 {
				t.Fatalf("%s: /readyz never ready again", name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		replays := 0
		for _, o := range ops {
			if settle(o) {
				replays++
			}
		}
		return replays
	}

	if n := outage("stopped hard", pg.StopHard, pg.Start); n != 0 {
		// Nothing can commit while the database is stopped.
		t.Errorf("stopped hard: %d retries replayed an operation the stopped database committed", n)
	}
	engine.Evaluate()
	firing := false
	for _, a := range engine.Alerts() {
		firing = firing || a.Name == "DatabaseUnavailable" && a.State == alert.StateFiring
	}
	if !firing {
		t.Errorf("the DatabaseUnavailable alert does not fire after the outage: %+v", engine.Alerts())
	}
	// Whether a retry here is a replay depends on whether the writer had
	// taken a batch before the freeze held it: every retry must still be
	// acknowledged, once.
	outage("frozen", pg.Freeze, pg.Thaw)

	// Every acknowledged operation is in the ledger once, nothing else is,
	// and the balance is what they add up to.
	hist := h.history(member.ID, 200)
	seen := map[string]int{}
	for _, tx := range hist {
		seen[tx.ID]++
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged transaction %s is %d times in the history", id, seen[id])
		}
	}
	if len(hist) != len(acked) {
		t.Errorf("the history holds %d transactions, %d were acknowledged", len(hist), len(acked))
	}
	if b := h.balance(member.ID); b.Balance != balance {
		t.Errorf("balance %d, the acknowledged operations add up to %d", b.Balance, balance)
	}

	fams, err := mt.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var refused, errors500 float64
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case f.GetName() == "pointd_refusals_total" && labels["reason"] == metrics.ReasonDatabase:
				refused = m.GetCounter().GetValue()
			case f.GetName() == "pointd_http_requests_total" && labels["status"] == "500":
				errors500 += m.GetCounter().GetValue()
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if refused != float64(outage503) || outage503 == 0 {
		t.Errorf("pointd_refusals_total{reason=%q} = %v, %d such answers were seen", metrics.ReasonDatabase, refused, outage503)
	}
	if errors500 != 0 {
		t.Errorf("%v answers were 500", errors500)
	}
}
