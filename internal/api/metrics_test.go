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
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/metrics"
	"github.com/pointd/pointd/internal/sqlite"
)

// metricsServer starts a harness whose server has metrics, wired as
// `pointd serve` wires them: the writer (configured by wcfg) observed, the
// queue and the database watched. tune, when set, adjusts the Config.
func metricsServer(t *testing.T, metricsAuth bool, tune func(*Config), wcfg ledger.WriterConfig, opts ...option) (*harness, *metrics.Metrics) {
	t.Helper()
	m := metrics.New()
	wcfg.Observer = m
	h := newHarness(t, append(opts, withWriter(wcfg))...)
	capacity := wcfg.QueueSize
	if capacity == 0 {
		capacity = ledger.DefaultWriterConfig().QueueSize
	}
	m.WatchWriteQueue(h.writer.QueueDepth, func() int { return capacity })
	db := h.store.(*sqlite.DB)
	m.WatchDB(func() (int, int) { w, r, mx := db.Stats(); return w + r, mx })
	cfg := Config{Mode: h.cfg.mode, Metrics: m, MetricsAuth: metricsAuth}
	if tune != nil {
		tune(&cfg)
	}
	s := New(cfg, h.store, h.store, h.writer, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	h.api = s
	h.srv = httptest.NewServer(s.Handler())
	t.Cleanup(h.srv.Close)
	return h, m
}

// scrapeMetrics reads /metrics over loopback, checks that it parses and
// lints clean, and returns its families.
func (h *harness) scrapeMetrics(key string) map[string]*dto.MetricFamily {
	h.t.Helper()
	r := h.get("/metrics", key)
	if r.status != http.StatusOK {
		h.t.Fatalf("GET /metrics: %s", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		h.t.Fatalf("GET /metrics: Content-Type %q", ct)
	}
	problems, err := promlint.New(bytes.NewReader(r.body)).Lint()
	if err != nil {
		h.t.Fatalf("lint /metrics: %v", err)
	}
	for _, p := range problems {
		h.t.Errorf("lint /metrics: %s: %s", p.Metric, p.Text)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		h.t.Fatalf("/metrics does not parse: %v\n%s", err, r.body)
	}
	return mfs
}

// sample finds the series of family name whose labels include want.
func sample(mfs map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
next:
	for _, m := range mfs[name].GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// metricValue is a counter's or a gauge's value, a histogram's count; -1
// when there is no such series.
func metricValue(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	m := sample(mfs, name, labels)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

func wantMetric(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
	t.Helper()
	if got := metricValue(mfs, name, labels); got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// TestMetricsAfterEarn: an earn through the real API shows in the ledger's
// counters and histograms, in the HTTP counters under its route pattern, and
// beside the database and queue gauges.
func TestMetricsAfterEarn(t *testing.T) {
	h, _ := metricsServer(t, false, nil, ledger.WriterConfig{})
	w := h.newWorld()
	body := map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 10_000}
	idem := h.idem()
	want[opResponse](t, h.post("/v1/earns", w.posA, idem, body), http.StatusCreated)
	replay := h.post("/v1/earns", w.posA, idem, body) // a POS retry: a replay, not a second earn
	if replay.status != http.StatusCreated || replay.header.Get(headerReplayed) != "true" {
		t.Fatalf("the retry: %s (replayed %q)", replay, replay.header.Get(headerReplayed))
	}
	problem(t, h.get("/v1/members/"+w.member.ID+"/nope", w.posA), http.StatusNotFound, codeRouteNotFound, "")

	mfs := h.scrapeMetrics("")
	wantMetric(t, mfs, "pointd_ledger_operations_total", map[string]string{"kind": "earn", "outcome": "committed"}, 1)
	wantMetric(t, mfs, "pointd_ledger_operations_total", map[string]string{"kind": "earn", "outcome": "replayed"}, 1)
	wantMetric(t, mfs, "pointd_ledger_operations_total", map[string]string{"kind": "redeem", "outcome": "committed"}, 0)
	wantMetric(t, mfs, "pointd_ledger_queue_wait_seconds", nil, 2)
	route := map[string]string{"route": "POST /v1/earns", "method": "POST", "status": "201", "key_mode": "live"}
	wantMetric(t, mfs, "pointd_http_requests_total", route, 2)
	wantMetric(t, mfs, "pointd_http_request_duration_seconds", map[string]string{"route": "POST /v1/earns", "method": "POST"}, 2)
	wantMetric(t, mfs, "pointd_http_requests_total", map[string]string{"route": "POST /v1/merchants", "status": "201"}, 2)
	wantMetric(t, mfs, "pointd_http_requests_total", map[string]string{"route": "unmatched", "method": "GET", "status": "404", "key_mode": "live"}, 1)
	for _, m := range mfs["pointd_http_requests_total"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "route" && (strings.Contains(lp.GetValue(), w.member.ID) || strings.Contains(lp.GetValue(), w.merchantA)) {
				t.Errorf("a route label carries an id (a raw path, not the pattern): %q", lp.GetValue())
			}
		}
	}

	// Every operation went through a committed batch; the batch sizes add
	// up to the operations.
	batches := metricValue(mfs, "pointd_ledger_batches_total", map[string]string{"result": "committed"})
	if batches < 1 || batches > 2 {
		t.Errorf("%v committed batches, want 1 or 2", batches)
	}
	wantMetric(t, mfs, "pointd_ledger_batches_total", map[string]string{"result": "failed"}, 0)
	wantMetric(t, mfs, "pointd_ledger_batch_size", nil, batches)
	if h := sample(mfs, "pointd_ledger_batch_size", nil).GetHistogram(); h.GetSampleSum() != 2 {
		t.Errorf("batch sizes sum to %v, want 2 operations", h.GetSampleSum())
	}
	wantMetric(t, mfs, "pointd_ledger_batch_duration_seconds", nil, batches)

	wantMetric(t, mfs, "pointd_db_connections_max", nil, 5) // SQLite: one writer, four readers
	if u := metricValue(mfs, "pointd_db_connections_in_use", nil); u < 0 || u > 5 {
		t.Errorf("pointd_db_connections_in_use = %v, want 0..5", u)
	}
	wantMetric(t, mfs, "pointd_ledger_write_queue_depth", nil, 0)
	wantMetric(t, mfs, "pointd_ledger_write_queue_capacity", nil, float64(ledger.DefaultWriterConfig().QueueSize))
	wantMetric(t, mfs, "pointd_refusals_total", map[string]string{"reason": "overloaded"}, 0)
	if metricValue(mfs, "go_goroutines", nil) <= 0 || metricValue(mfs, "process_resident_memory_bytes", nil) <= 0 {
		t.Error("the Go and process collectors are missing")
	}

	// The scrape itself is counted, as a loopback request without a key.
	mfs = h.scrapeMetrics("")
	wantMetric(t, mfs, "pointd_http_requests_total", map[string]string{"route": "GET /metrics", "status": "200", "key_mode": "none"}, 1)
}

// serveDirect runs one request through the handler without a network, from
// remote (e.g. "192.0.2.7:5555"), and returns the answer.
func serveDirect(h http.Handler, method, path, remote, key string) reply {
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = remote
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return reply{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// TestMetricsAccess: by default /metrics answers loopback clients only;
// with --metrics-auth it wants an admin key from anywhere.
func TestMetricsAccess(t *testing.T) {
	const remote = "192.0.2.7:5555"
	t.Run("loopback only by default", func(t *testing.T) {
		h, m := metricsServer(t, false, nil, ledger.WriterConfig{})
		pos := h.makeKey(auth.Key{Role: auth.RolePOS, Name: "till"}, auth.ModeLive)
		handler := New(Config{Mode: auth.ModeLive, Metrics: m}, h.store, h.store, h.writer, nil, nil).Handler()
		for _, addr := range []string{"127.0.0.1:40000", "127.9.9.9:1", "[::1]:40000", "[::ffff:127.0.0.1]:1"} {
			if r := serveDirect(handler, "GET", "/metrics", addr, ""); r.status != http.StatusOK {
				t.Errorf("from %s: %s, want 200", addr, r)
			}
		}
		for _, key := range []string{"", h.admin, pos} {
			for _, addr := range []string{remote, "[2001:db8::1]:443", "10.0.0.1:80"} {
				p := problem(t, serveDirect(handler, "GET", "/metrics", addr, key), http.StatusForbidden, ledger.CodeForbidden, "")
				if !strings.Contains(p.Detail, "--metrics-auth") {
					t.Errorf("the refusal does not say how to open it: %q", p.Detail)
				}
			}
		}
		// The real server on 127.0.0.1.
		if r := h.get("/metrics", ""); r.status != http.StatusOK {
			t.Errorf("over loopback: %s", r)
		}
	})
	t.Run("with --metrics-auth an admin key from anywhere", func(t *testing.T) {
		h, _ := metricsServer(t, true, nil, ledger.WriterConfig{})
		pos := h.makeKey(auth.Key{Role: auth.RolePOS, Name: "till"}, auth.ModeLive)
		handler := h.srv.Config.Handler
		for _, addr := range []string{remote, "127.0.0.1:1"} {
			if r := serveDirect(handler, "GET", "/metrics", addr, h.admin); r.status != http.StatusOK {
				t.Errorf("admin from %s: %s, want 200", addr, r)
			}
			problem(t, serveDirect(handler, "GET", "/metrics", addr, ""), http.StatusUnauthorized, codeUnauthorized, "")
			problem(t, serveDirect(handler, "GET", "/metrics", addr, pos), http.StatusForbidden, ledger.CodeForbidden, "")
		}
		h.scrapeMetrics(h.admin) // and it parses and lints
	})
	t.Run("off with --metrics=false", func(t *testing.T) {
		h := newHarness(t) // Config.Metrics nil
		problem(t, h.get("/metrics", ""), http.StatusNotFound, codeRouteNotFound, "")
		problem(t, h.get("/metrics", h.admin), http.StatusNotFound, codeRouteNotFound, "")
	})
}

// TestPprofNeedsAdmin: the profiler is always there, always behind an admin
// key, whatever the metrics settings.
func TestPprofNeedsAdmin(t *testing.T) {
	h := newHarness(t) // metrics off: pprof is there all the same
	pos := h.makeKey(auth.Key{Role: auth.RolePOS, Name: "till"}, auth.ModeLive)
	testAdmin := h.makeKey(auth.Key{Role: auth.RoleAdmin, Name: "test admin"}, auth.ModeTest)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1", "/debug/pprof/symbol"} {
		problem(t, h.get(path, ""), http.StatusUnauthorized, codeUnauthorized, "")
		problem(t, h.get(path, pos), http.StatusForbidden, ledger.CodeForbidden, "")
		problem(t, h.get(path, testAdmin), http.StatusUnauthorized, codeKeyModeMismatch, "")
		if r := h.get(path, h.admin); r.status != http.StatusOK || len(r.body) == 0 {
			t.Errorf("%s with an admin key: %d, %d bytes", path, r.status, len(r.body))
		}
	}
	if r := h.get("/debug/pprof/", h.admin); !strings.Contains(string(r.body), "goroutine") {
		t.Errorf("the pprof index lists no profiles: %.200s", r.body)
	}
	// From afar as well: an admin key is what counts, not the address.
	if r := serveDirect(h.srv.Config.Handler, "GET", "/debug/pprof/cmdline", "192.0.2.7:1", h.admin); r.status != http.StatusOK {
		t.Errorf("pprof from afar with an admin key: %s", r)
	}
	problem(t, serveDirect(h.srv.Config.Handler, "GET", "/debug/pprof/cmdline", "127.0.0.1:1", ""), http.StatusUnauthorized, codeUnauthorized, "")
}

// TestMetricsKeyModeMismatch: a test key against a live server is refused
// and counted, by the key's mode, and its requests carry key_mode="test".
func TestMetricsKeyModeMismatch(t *testing.T) {
	h, _ := metricsServer(t, false, nil, ledger.WriterConfig{})
	testKey := h.makeKey(auth.Key{Role: auth.RolePOS, Name: "dev SDK"}, auth.ModeTest)
	for i := 0; i < 3; i++ {
		problem(t, h.post("/v1/ping", testKey, "", map[string]any{"message": "hi"}), http.StatusUnauthorized, codeKeyModeMismatch, "")
	}
	want[map[string]any](t, h.post("/v1/ping", h.admin, "", map[string]any{"message": "hi"}), http.StatusOK)
	mfs := h.scrapeMetrics("")
	wantMetric(t, mfs, "pointd_key_mode_mismatch_total", map[string]string{"key_mode": "test"}, 3)
	wantMetric(t, mfs, "pointd_key_mode_mismatch_total", map[string]string{"key_mode": "live"}, 0)
	wantMetric(t, mfs, "pointd_http_requests_total", map[string]string{"route": "POST /v1/ping", "status": "401", "key_mode": "test"}, 3)
	wantMetric(t, mfs, "pointd_http_requests_total", map[string]string{"route": "POST /v1/ping", "status": "200", "key_mode": "live"}, 1)
}

// TestMetricsRefusals: with the writer held and a queue of one, what does
// not fit is refused as overloaded; what was admitted but outlives its
// deadline while the held batch does not commit (as with a database that
// does not answer) is refused as database_unavailable; each 503 is counted
// once, by its reason.
func TestMetricsRefusals(t *testing.T) {
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	h, _ := metricsServer(t, false, func(c *Config) { c.RequestTimeout = 500 * time.Millisecond },
		ledger.WriterConfig{QueueSize: 1, MaxBatch: 1}, withGate(gate))
	t.Cleanup(open) // before the writer drains
	w := h.newWorld()

	const n = 6
	var wg sync.WaitGroup
	replies := make([]reply, n)
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := h.send(req{method: http.MethodPost, path: "/v1/earns", key: w.posA, idem: h.idem(),
				body: map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 1000}})
			if err != nil {
				t.Error(err)
			}
			replies[i] = r
		}()
	}
	wg.Wait() // every request answered: refused at once, or at its deadline
	open()
	counts := map[string]float64{}
	for _, r := range replies {
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("with the writer held every earn is refused; got %s", r)
		}
		var p Problem
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		counts[p.Code]++
	}
	if counts[ledger.CodeOverloaded] == 0 || counts[ledger.CodeDatabaseUnavailable] == 0 {
		t.Fatalf("want both overloaded and database_unavailable refusals, got %v", counts)
	}
	mfs := h.scrapeMetrics("")
	wantMetric(t, mfs, "pointd_refusals_total", map[string]string{"reason": "overloaded"}, counts[ledger.CodeOverloaded])
	wantMetric(t, mfs, "pointd_refusals_total", map[string]string{"reason": "database_unavailable"}, counts[ledger.CodeDatabaseUnavailable])
	wantMetric(t, mfs, "pointd_refusals_total", map[string]string{"reason": "deadline"}, 0)
	wantMetric(t, mfs, "pointd_refusals_total", map[string]string{"reason": "unavailable"}, 0)
	wantMetric(t, mfs, "pointd_refusals_total", map[string]string{"reason": "rate_limited"}, 0)
	wantMetric(t, mfs, "pointd_ledger_operations_total", map[string]string{"kind": "earn", "outcome": "overloaded"}, counts[ledger.CodeOverloaded])
	wantMetric(t, mfs, "pointd_http_requests_total", map[string]string{"route": "POST /v1/earns", "status": "503"}, n)
}

// BenchmarkEarnMetrics is the cost of metrics: earns through the real
// handler (in process, no network) on SQLite, from many goroutines, with
// metrics on and off. Compare earns/s (and cpu-µs/earn) of the two:
//
//	go test -run '^$' -bench 'BenchmarkEarnMetrics$' -benchtime 5s -count 5 ./internal/api/
//
// On a machine shared with other work the two sub-benchmarks see different
// noise; BenchmarkEarnMetricsPaired alternates between them in short
// rounds so that both see the same, and reports the slowdown directly.
func BenchmarkEarnMetrics(b *testing.B) {
	for _, on := range []bool{true, false} {
		name := map[bool]string{true: "on", false: "off"}[on]
		b.Run(name, func(b *testing.B) {
			e := newEarnBench(b, on)
			b.SetParallelism(earnBenchGoroutines / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := e.earn(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "earns/s")
			// CPU time of the whole process (handlers, writer, SQLite) per
			// earn: it moves less than earns/s when other work shares the
			// machine.
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/earn")
		})
	}
}

// BenchmarkEarnMetricsPaired runs two servers side by side, metrics on and
// off, each on its own SQLite database, and alternates rounds of earns
// between them (which goes first alternates too); it reports the earns/s of
// each and how much slower "on" is, in percent.
//
//	go test -run '^$' -bench BenchmarkEarnMetricsPaired -benchtime 40000x -count 5 ./internal/api/
func BenchmarkEarnMetricsPaired(b *testing.B) {
	on, off := newEarnBench(b, true), newEarnBench(b, false)
	const round = 1024
	var tOn, tOff time.Duration
	var nOn, nOff int
	b.ResetTimer()
	for r := 0; nOn+nOff < b.N; r++ {
		n := min(round, (b.N-nOn-nOff+1)/2)
		order := []*earnBench{on, off}
		if r%2 == 1 {
			order = []*earnBench{off, on}
		}
		for _, e := range order {
			took, err := e.burst(n)
			if err != nil {
				b.Fatal(err)
			}
			if e == on {
				tOn, nOn = tOn+took, nOn+n
			} else {
				tOff, nOff = tOff+took, nOff+n
			}
		}
	}
	b.StopTimer()
	onRate, offRate := float64(nOn)/tOn.Seconds(), float64(nOff)/tOff.Seconds()
	b.ReportMetric(onRate, "on-earns/s")
	b.ReportMetric(offRate, "off-earns/s")
	b.ReportMetric(100*(offRate/onRate-1), "%slower")
}

// earnBenchGoroutines is how many callers earn at once: enough for the
// writer's batches to fill, as in a surge of tills.
const earnBenchGoroutines = 64

// earnBench is one server (handler, writer, SQLite in a temporary folder)
// with a merchant, a store, a POS key and members to earn for.
type earnBench struct {
	handler http.Handler
	pos     string
	store   string
	members []string
	seq     atomic.Int64
}

func newEarnBench(b *testing.B, on bool) *earnBench {
	b.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	var m *metrics.Metrics
	wcfg := ledger.WriterConfig{}
	if on {
		m = metrics.New()
		wcfg.Observer = m
	}
	wr := ledger.NewWriter(db, wcfg)
	b.Cleanup(wr.Close)
	if on {
		m.WatchWriteQueue(wr.QueueDepth, func() int { return ledger.DefaultWriterConfig().QueueSize })
		m.WatchDB(func() (int, int) { w, r, mx := db.Stats(); return w + r, mx })
	}
	e := &earnBench{handler: New(Config{Mode: auth.ModeLive, Metrics: m}, db, db, wr,
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil).Handler()}

	secret, k := auth.NewSecret(auth.ModeLive)
	k.ID, k.Role, k.Name = ledger.NewID(), auth.RoleAdmin, "bench admin"
	if err := db.CreateKey(ctx, k); err != nil {
		b.Fatal(err)
	}
	setup := func(path, body string, out any) {
		rec := e.call(path, secret, []byte(body))
		if rec.Code != http.StatusCreated {
			b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			b.Fatal(err)
		}
	}
	var merchant ledger.Merchant
	var store ledger.Shop
	var pos keyResponse
	setup("/v1/merchants", `{"name":"Bench","earn_rate_bp":150}`, &merchant)
	setup("/v1/merchants/"+merchant.ID+"/stores", `{"name":"Bench store"}`, &store)
	setup("/v1/keys", `{"role":"pos","merchant_id":"`+merchant.ID+`","name":"till"}`, &pos)
	e.pos, e.store = pos.Key, store.ID
	// Several members, so that a batch is not one hot member row.
	e.members = make([]string, 64)
	for i := range e.members {
		var mb ledger.Member
		setup("/v1/members", fmt.Sprintf(`{"phone":"+1555%07d","name":"M%d"}`, i, i), &mb)
		e.members[i] = mb.ID
	}
	return e
}

// call sends one POST through the handler as a loopback client.
func (e *earnBench) call(path, key string, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+key)
	r.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%d", e.seq.Add(1)))
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, r)
	return rec
}

// earn earns on a fresh receipt and wants a 201.
func (e *earnBench) earn() error {
	i := e.seq.Add(1)
	body := fmt.Appendf(nil, `{"member_id":%q,"store_id":%q,"receipt":"R-%d","purchase_amount":1000}`,
		e.members[i%int64(len(e.members))], e.store, i)
	if rec := e.call("/v1/earns", e.pos, body); rec.Code != http.StatusCreated {
		return fmt.Errorf("earn: %d %s", rec.Code, rec.Body)
	}
	return nil
}

// burst runs n earns from earnBenchGoroutines callers and times them.
func (e *earnBench) burst(n int) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, earnBenchGoroutines)
	start := time.Now()
	for g := 0; g < earnBenchGoroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := e.earn(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	select {
	case err := <-errs:
		return took, err
	default:
		return took, nil
	}
}
