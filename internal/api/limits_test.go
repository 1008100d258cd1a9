package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/admission"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/metrics"
	"github.com/pointd/pointd/internal/ratelimit"
)

// The overload tests (overload.go): rate limits, admission, deadlines, the
// poll interval. Clocks are fake where counting depends on time, so nothing
// here depends on how fast the machine is.

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestClock() *testClock { return &testClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)} }

func ping(h *harness, key string, header map[string]string) reply {
	h.t.Helper()
	return h.do(req{method: http.MethodPost, path: "/v1/ping", key: key, body: map[string]any{"message": "hi"}, header: header})
}

func TestKeyRateLimit(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, withConfig(func(c *Config) {
		c.RateLimiter = ratelimit.NewLocal(clk.Now)
		c.KeyRate = ratelimit.Limit{PerSecond: 5, Burst: 20} // keys without their own limit
	}))
	w := h.newWorld()

	own := want[keyResponse](t, h.post("/v1/keys", h.admin, h.idem(), map[string]any{
		"role": "pos", "merchant_id": w.merchantA, "rate_limit_per_second": 2, "rate_limit_burst": 3,
	}), http.StatusCreated)
	if own.RateLimitPerSecond != 2 || own.RateLimitBurst != 3 {
		t.Fatalf("created key answers rate limit %d/%d, want 2/3", own.RateLimitPerSecond, own.RateLimitBurst)
	}

	t.Run("a key with its own limit gets exactly its burst, then 429", func(t *testing.T) {
		h := h.at(t)
		for i := range 3 {
			r := ping(h, own.Key, nil)
			if r.status != http.StatusOK {
				t.Fatalf("request %d: %s", i+1, r)
			}
			if got := r.header.Get("RateLimit-Remaining"); got != strconv.Itoa(2-i) {
				t.Errorf("request %d: RateLimit-Remaining %q, want %d", i+1, got, 2-i)
			}
			if got := r.header.Get("RateLimit-Limit"); got != "3" {
				t.Errorf("request %d: RateLimit-Limit %q, want 3", i+1, got)
			}
		}
		r := ping(h, own.Key, nil)
		p := problem(t, r, http.StatusTooManyRequests, codeRateLimited, "-")
		if r.header.Get("Retry-After") != "1" { // one request per 0.5 s: rounded up
			t.Errorf("Retry-After %q, want 1", r.header.Get("Retry-After"))
		}
		if r.header.Get("RateLimit-Remaining") != "0" || r.header.Get("RateLimit-Reset") != "2" {
			t.Errorf("RateLimit-Remaining %q, RateLimit-Reset %q; want 0 and 2 (the bucket is full again in 1.5 s)",
				r.header.Get("RateLimit-Remaining"), r.header.Get("RateLimit-Reset"))
		}
		if !strings.Contains(p.Detail, "limit of 2 requests per second") || p.RequestID == "" {
			t.Errorf("problem %+v: want the limit named and the request id", p)
		}
	})
	t.Run("it passes again one interval later, once", func(t *testing.T) {
		h := h.at(t)
		clk.Add(500 * time.Millisecond)
		if r := ping(h, own.Key, nil); r.status != http.StatusOK {
			t.Fatalf("after 0.5 s: %s", r)
		}
		problem(t, ping(h, own.Key, nil), http.StatusTooManyRequests, codeRateLimited, "-")
	})
	t.Run("a refused ledger write is not written", func(t *testing.T) {
		h := h.at(t)
		r := h.post("/v1/earns", own.Key, h.idem(), map[string]any{"member_id": w.member.ID, "store_id": w.storeA,
			"receipt": h.receipt(), "purchase_amount": 1000})
		problem(t, r, http.StatusTooManyRequests, codeRateLimited, "-")
		if b := h.balance(w.member.ID); b.Balance != 0 {
			t.Errorf("balance %d after a refused earn, want 0", b.Balance)
		}
	})
	t.Run("a key without its own limit gets the server's default", func(t *testing.T) {
		h := h.at(t)
		n := 0
		for range 30 {
			if ping(h, w.posB, nil).status == http.StatusOK {
				n++
			}
		}
		if n != 20 {
			t.Errorf("%d of 30 passed, want the default burst of 20", n)
		}
	})
	t.Run("an admin key without a limit of its own is not limited", func(t *testing.T) {
		h := h.at(t)
		for i := range 30 {
			if r := ping(h, h.admin, nil); r.status != http.StatusOK {
				t.Fatalf("admin request %d: %s", i+1, r)
			}
		}
	})
	t.Run("an admin key with a limit of its own is", func(t *testing.T) {
		h := h.at(t)
		k := want[keyResponse](t, h.post("/v1/keys", h.admin, h.idem(), map[string]any{
			"role": "admin", "rate_limit_per_second": 1, "rate_limit_burst": 2}), http.StatusCreated)
		n := 0
		for range 5 {
			if ping(h, k.Key, nil).status == http.StatusOK {
				n++
			}
		}
		if n != 2 {
			t.Errorf("%d of 5 passed, want its burst of 2", n)
		}
	})
	t.Run("keys have separate buckets", func(t *testing.T) {
		h := h.at(t)
		if r := ping(h, w.posA, nil); r.status != http.StatusOK {
			t.Fatalf("another key: %s", r)
		}
	})
	t.Run("health and readiness are never rate limited", func(t *testing.T) {
		h := h.at(t)
		for range 20 {
			if r := h.get("/healthz", ""); r.status != http.StatusOK {
				t.Fatalf("/healthz: %s", r)
			}
		}
	})
}

func TestKeyRateLimitValidation(t *testing.T) {
	h := newHarness(t)
	w := h.newWorld()
	for _, tc := range []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"a negative rate", map[string]any{"rate_limit_per_second": -1}, "rate_limit_per_second"},
		{"a rate above a million", map[string]any{"rate_limit_per_second": 1_000_001}, "rate_limit_per_second"},
		{"a fractional rate", map[string]any{"rate_limit_per_second": 2.5}, "rate_limit_per_second"},
		{"a rate as a string", map[string]any{"rate_limit_per_second": "10"}, "rate_limit_per_second"},
		{"a negative burst", map[string]any{"rate_limit_per_second": 10, "rate_limit_burst": -1}, "rate_limit_burst"},
		{"a burst without a rate", map[string]any{"rate_limit_burst": 10}, "rate_limit_burst"},
	} {
		t.Run(tc.name+" is refused, naming the field", func(t *testing.T) {
			h := h.at(t)
			body := map[string]any{"role": "pos", "merchant_id": w.merchantA}
			for k, v := range tc.body {
				body[k] = v
			}
			r := h.post("/v1/keys", h.admin, h.idem(), body)
			if r.status != http.StatusBadRequest {
				t.Fatalf("%s", r)
			}
			var p Problem
			if err := json.Unmarshal(r.body, &p); err != nil || p.Field != tc.field {
				t.Errorf("problem %s names %q, want %q", r.body, p.Field, tc.field)
			}
		})
	}
}

func TestIPRateLimit(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, withConfig(func(c *Config) {
		c.RateLimiter = ratelimit.NewLocal(clk.Now)
		c.IPRate = ratelimit.Limit{PerSecond: 1, Burst: 3}
	}))
	passed := 0
	for range 10 {
		// No key at all: the address's limit comes before authentication.
		r := h.get("/v1/openapi.json", "")
		switch r.status {
		case http.StatusOK:
			passed++
		case http.StatusTooManyRequests:
			p := problem(t, r, http.StatusTooManyRequests, codeRateLimited, "-")
			if !strings.Contains(p.Detail, "client address") || r.header.Get("Retry-After") != "1" {
				t.Errorf("refusal %+v, Retry-After %q", p, r.header.Get("Retry-After"))
			}
		default:
			t.Fatalf("%s", r)
		}
	}
	if passed != 3 {
		t.Errorf("%d of 10 passed from one address, want its burst of 3", passed)
	}
	problem(t, ping(h, h.admin, nil), http.StatusTooManyRequests, codeRateLimited, "-")
	if r := h.get("/healthz", ""); r.status != http.StatusOK {
		t.Errorf("/healthz is limited by address: %s", r)
	}
	clk.Add(time.Second)
	if r := ping(h, h.admin, nil); r.status != http.StatusOK {
		t.Errorf("a second later: %s", r)
	}
}

// TestHealthAnswersWhileEverythingIsSaturated holds every slot of every
// class (limits of 1, no queue): every API route is refused at once with
// 503 overloaded, while health, readiness and metrics still answer.
func TestHealthAnswersWhileEverythingIsSaturated(t *testing.T) {
	one := admission.LimiterConfig{Initial: 1, Min: 1, Max: 1, Queue: 0}
	ctl := admission.New(admission.Config{PollInterval: 10 * time.Second, Classes: map[admission.Class]admission.LimiterConfig{
		admission.LedgerWrite: one, admission.DBRead: one, admission.CachedRead: one,
	}})
	h := newHarness(t, withConfig(func(c *Config) {
		c.Admission = ctl
		c.Metrics = metrics.New()
	}))
	w := h.newWorld()

	if got := h.get("/v1/members/"+w.member.ID, w.posA).header.Get(headerPollInterval); got != "10" {
		t.Errorf("Poll-Interval %q when calm, want 10", got)
	}
	var held []*admission.Token
	for _, cl := range admission.Classes {
		tok, err := ctl.Acquire(context.Background(), cl)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tok)
	}
	t.Cleanup(func() {
		for _, tok := range held {
			tok.Done(false)
		}
	})

	for _, r := range []struct {
		name string
		rep  reply
	}{
		{"a ledger write", h.post("/v1/earns", w.posA, h.idem(), map[string]any{"member_id": w.member.ID,
			"store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 1000})},
		{"a database read", h.get("/v1/members/"+w.member.ID, w.posA)},
		{"a cached read", ping(h, w.posA, nil)},
	} {
		t.Run(r.name+" is refused with 503 overloaded and Retry-After", func(t *testing.T) {
			problem(t, r.rep, http.StatusServiceUnavailable, ledger.CodeOverloaded, "-")
			if r.rep.header.Get("Retry-After") != "1" {
				t.Errorf("Retry-After %q", r.rep.header.Get("Retry-After"))
			}
		})
	}
	t.Run("readers are told to poll four times less often", func(t *testing.T) {
		r := h.at(t).get("/v1/members/"+w.member.ID, w.posA)
		if got := r.header.Get(headerPollInterval); got != "40" {
			t.Errorf("Poll-Interval %q while refusing, want 40", got)
		}
	})
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		t.Run(path+" answers", func(t *testing.T) {
			if r := h.at(t).get(path, ""); r.status != http.StatusOK {
				t.Fatalf("%s", r)
			}
		})
	}
	t.Run("the metrics show the limits, what runs and what was refused", func(t *testing.T) {
		body := string(h.at(t).get("/metrics", "").body)
		for _, line := range []string{
			`pointd_admission_limit{class="ledger_write"} 1`,
			`pointd_admission_in_flight{class="db_read"} 1`,
			`pointd_admission_refusals_total{class="cached_read"} 1`,
			`pointd_admission_refusals_total{class="db_read"} 2`,
			`pointd_refusals_total{reason="overloaded"} 4`,
		} {
			if !strings.Contains(body, line) {
				t.Errorf("/metrics lacks %q", line)
			}
		}
	})
	for _, tok := range held {
		tok.Done(false)
	}
	held = nil
	if r := ping(h, w.posA, nil); r.status != http.StatusOK {
		t.Errorf("after the slots are free: %s", r)
	}
}

// TestRequestTimeout: the deadline a handler sees is the client's when it
// asks for a shorter one, the server's otherwise.
func TestRequestTimeout(t *testing.T) {
	s := New(Config{RequestTimeout: 10 * time.Second}, nil, nil, nil, nil, nil)
	deadlineOf := func(t *testing.T, header string) (time.Duration, time.Duration, int) {
		t.Helper()
		var dl time.Time
		h := s.withBasics(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			dl, _ = r.Context().Deadline()
		}))
		r := httptest.NewRequest(http.MethodGet, "/v1/anything", nil)
		if header != "" {
			r.Header.Set(headerRequestTimeout, header)
		}
		rec := httptest.NewRecorder()
		before := time.Now()
		h.ServeHTTP(rec, r)
		after := time.Now()
		if dl.IsZero() {
			return 0, 0, rec.Code
		}
		// The deadline was set between before and after.
		return dl.Sub(after), dl.Sub(before), rec.Code
	}
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", 10 * time.Second},
		{"2.5", 2500 * time.Millisecond},
		{"0.001", time.Millisecond},
		{"3", 3 * time.Second},
		{"600", 10 * time.Second},              // never longer than the server's
		{"9999999999999999", 10 * time.Second}, // seconds beyond what a Duration holds
	} {
		t.Run("Request-Timeout "+strconv.Quote(tc.header), func(t *testing.T) {
			lo, hi, code := deadlineOf(t, tc.header)
			if code != http.StatusOK || lo > tc.want || hi < tc.want {
				t.Errorf("deadline in [%s, %s] (status %d), want %s", lo, hi, code, tc.want)
			}
		})
	}
	for _, bad := range []string{"abc", "-1", "0", "0.0001", "1e3", "NaN", "Inf", ".5", "5.", "1.2.3", " 2", "99999999999999999"} {
		t.Run("Request-Timeout "+strconv.Quote(bad)+" is refused", func(t *testing.T) {
			if _, _, code := deadlineOf(t, bad); code != http.StatusBadRequest {
				t.Errorf("status %d, want 400", code)
			}
		})
	}
}

// TestRequestTimeoutReachesTheWriter: with the writer held by a first earn,
// a second earn whose client asked for a short deadline waits in the queue
// and is answered 503 when that deadline passes, although the server's own
// deadline is an hour; the writer then drops it without writing it.
func TestRequestTimeoutReachesTheWriter(t *testing.T) {
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	entered := make(chan struct{}, 1)
	h := newHarness(t, withGate(gate), withGateEntered(entered), withConfig(func(c *Config) { c.RequestTimeout = time.Hour }))
	t.Cleanup(open)
	w := h.newWorld() // the directory does not go through the writer
	earn := func(receipt string, header map[string]string) (reply, error) {
		return h.send(req{method: http.MethodPost, path: "/v1/earns", key: w.posA, idem: h.idem(), header: header,
			body: map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": receipt, "purchase_amount": 1000}})
	}
	first := make(chan reply, 1)
	go func() {
		r, err := earn("R-first", nil)
		if err != nil {
			t.Error(err)
		}
		first <- r
	}()
	<-entered // the writer has taken the first earn and waits at the gate
	r, err := earn("R-second", map[string]string{headerRequestTimeout: "0.2"})
	if err != nil {
		t.Fatal(err)
	}
	// The writer's batch waits at the gate, as for a database that does
	// not answer: the earn that ran out of time waited for the database.
	p := problem(t, r, http.StatusServiceUnavailable, ledger.CodeDatabaseUnavailable, "-")
	if !strings.Contains(p.Detail, "ran out of time") {
		t.Errorf("detail %q", p.Detail)
	}
	open()
	if r := <-first; r.status != http.StatusCreated {
		t.Fatalf("the first earn: %s", r)
	}
	h.writer.Close() // every queued operation answered
	receipts := map[string]bool{}
	for _, tx := range h.history(w.member.ID, 10) {
		receipts[tx.Receipt] = true
	}
	if !receipts["R-first"] || receipts["R-second"] {
		t.Errorf("receipts in the ledger %v; want R-first only (R-second was abandoned)", receipts)
	}
}

// Every route the server registers has its class decided here: a new
// route fails this test until someone decides which limit it counts against.
func TestClassOfEveryRoute(t *testing.T) {
	want := map[string]admission.Class{
		"GET /healthz":                       admission.Unlimited,
		"GET /readyz":                        admission.Unlimited,
		"POST /v1/ping":                      admission.CachedRead,
		"GET /v1/openapi.json":               admission.CachedRead,
		"POST /v1/merchants":                 admission.DBRead,
		"GET /v1/merchants/{id}":             admission.DBRead,
		"POST /v1/merchants/{id}/stores":     admission.DBRead,
		"GET /v1/stores/{id}":                admission.DBRead,
		"POST /v1/members":                   admission.DBRead,
		"GET /v1/members":                    admission.DBRead,
		"GET /v1/members/{id}":               admission.DBRead,
		"GET /v1/members/{id}/balance":       admission.DBRead,
		"GET /v1/members/{id}/transactions":  admission.DBRead,
		"GET /v1/members/{id}/lots":          admission.DBRead,
		"POST /v1/keys":                      admission.DBRead,
		"POST /v1/earns":                     admission.LedgerWrite,
		"POST /v1/redemptions":               admission.LedgerWrite,
		"POST /v1/holds":                     admission.LedgerWrite,
		"GET /v1/holds/{id}":                 admission.DBRead,
		"POST /v1/holds/{id}/capture":        admission.LedgerWrite,
		"POST /v1/holds/{id}/void":           admission.LedgerWrite,
		"POST /v1/cancellations":             admission.LedgerWrite,
		"POST /v1/adjustments":               admission.LedgerWrite,
		"GET /v1/transactions/{id}":          admission.DBRead,
		"GET /v1/merchants":                  admission.DBRead,
		"PATCH /v1/merchants/{id}":           admission.DBRead,
		"POST /v1/merchants/{id}/suspend":    admission.DBRead,
		"POST /v1/merchants/{id}/reactivate": admission.DBRead,
		"GET /v1/merchants/{id}/stores":      admission.DBRead,
		"PATCH /v1/stores/{id}":              admission.DBRead,
		"POST /v1/stores/{id}/suspend":       admission.DBRead,
		"POST /v1/stores/{id}/reactivate":    admission.DBRead,
		"POST /v1/members/{id}/suspend":      admission.DBRead,
		"POST /v1/members/{id}/reactivate":   admission.DBRead,
		"GET /v1/keys":                       admission.DBRead,
		"POST /v1/keys/{id}/revoke":          admission.DBRead,
		"POST /v1/keys/{id}/rotate":          admission.DBRead,
		"GET /v1/audit-log":                  admission.DBRead,
		"POST /v1/auth/otp":                  admission.DBRead,
		"POST /v1/auth/sessions":             admission.DBRead,
		"DELETE /v1/auth/sessions/current":   admission.DBRead,
		"GET /v1/me":                         admission.DBRead,
		"PATCH /v1/me":                       admission.DBRead,
		"DELETE /v1/me":                      admission.DBRead,
		"GET /v1/me/balance":                 admission.DBRead,
		"GET /v1/me/transactions":            admission.DBRead,
		"POST /v1/notices":                   admission.DBRead,
		"GET /v1/notices":                    admission.CachedRead,
		"GET /v1/notices/{id}":               admission.CachedRead,
		"GET /v1/members/{id}/badges":        admission.CachedRead,
		"POST /v1/members/{id}/badges/seen":  admission.CachedRead,
		"GET /v1/me/badges":                  admission.CachedRead,
		"POST /v1/me/badges/seen":            admission.CachedRead,
		"GET /debug/pprof/":                  admission.Unlimited,
		"GET /debug/pprof/cmdline":           admission.Unlimited,
		"GET /debug/pprof/profile":           admission.Unlimited,
		"GET /debug/pprof/symbol":            admission.Unlimited,
		"POST /debug/pprof/symbol":           admission.Unlimited,
		"GET /debug/pprof/trace":             admission.Unlimited,
		"GET /metrics":                       admission.Unlimited,
	}
	for pattern := range registeredRoutes(t) {
		if _, ok := want[pattern]; !ok {
			t.Errorf("%s: no admission class decided for it in this test", pattern)
		}
	}
	for pattern, class := range want {
		if got := classOf(pattern); got != class {
			t.Errorf("%s: class %s, want %s", pattern, got, class)
		}
	}
}

func TestPollIntervalWithoutAdmission(t *testing.T) {
	h := newHarness(t, withConfig(func(c *Config) { c.PollInterval = 45 * time.Second }))
	if got := h.get("/v1/openapi.json", "").header.Get(headerPollInterval); got != "45" {
		t.Errorf("Poll-Interval %q, want 45", got)
	}
	if got := h.get("/healthz", "").header.Get(headerPollInterval); got != "" {
		t.Errorf("/healthz answers Poll-Interval %q; it is for /v1 reads", got)
	}
}

func TestClientBucket(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:5555":             "192.0.2.7",
		"[::ffff:192.0.2.7]:5555":    "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:3::1]:443":      "2001:db8:1:3::/64",
		"not an address":             "not an address",
	} {
		if got := clientBucket(remote); got != want {
			t.Errorf("clientBucket(%q) = %q, want %q", remote, got, want)
		}
	}
}

// TestShortDeadlineRefusedAtOnce: once the writer has learned that an
// operation takes 200 ms, an earn whose client allows 50 ms is refused at
// once with 503 overloaded — it could not be done in time — and nothing of
// it is written; without the header the same earn succeeds.
func TestShortDeadlineRefusedAtOnce(t *testing.T) {
	h := newHarness(t, withSlowWrites(200*time.Millisecond))
	w := h.newWorld()
	body := func() map[string]any {
		return map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 1000}
	}
	h.earn(w.posA, w.storeA, w.member.ID, 1000) // the writer learns how long an operation takes
	r := h.do(req{method: http.MethodPost, path: "/v1/earns", key: w.posA, idem: h.idem(), body: body(),
		header: map[string]string{headerRequestTimeout: "0.05"}})
	problem(t, r, http.StatusServiceUnavailable, ledger.CodeOverloaded, "-")
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if n := len(h.history(w.member.ID, 10)); n != 1 {
		t.Errorf("%d transactions, want only the first earn", n)
	}
	want[opResponse](t, h.post("/v1/earns", w.posA, h.idem(), body()), http.StatusCreated)
}
