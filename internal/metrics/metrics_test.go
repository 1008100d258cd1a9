package metrics

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pointd/pointd/internal/ledger"
)

// scrape serves m's handler once and returns the text it answered.
func scrape(t *testing.T, m *Metrics) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("scrape: Content-Type %q, want the text format", ct)
	}
	return rec.Body.Bytes()
}

// parse parses the text format strictly.
func parse(t *testing.T, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("the scrape does not parse: %v\n%s", err, text)
	}
	return mfs
}

// lint fails the test on any problem promlint finds.
func lint(t *testing.T, text []byte) {
	t.Helper()
	problems, err := promlint.New(bytes.NewReader(text)).Lint()
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// value finds the sample of family name whose labels include want, and
// returns its counter, gauge or untyped value, or for a histogram its count.
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func mustValue(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := value(t, mfs, name, labels)
	if !ok {
		t.Errorf("%s%v: no such series", name, labels)
		return
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func TestScrapeParsesAndLints(t *testing.T) {
	m := New()
	m.WatchWriteQueue(func() int { return 3 }, func() int { return 4096 })
	m.WatchDB(func() (int, int) { return 1, 2 })
	m.Batch(7, 3*time.Millisecond, nil)
	m.Batch(2, time.Millisecond, errors.New("disk full"))
	m.Operation(ledger.OpEarn, 200*time.Microsecond, "committed")
	m.Operation(ledger.OpRedeem, 0, ledger.CodeInsufficientPoints)
	m.Request("POST /v1/earns", "POST", 201, KeyModeLive, 5*time.Millisecond)
	m.Request("", "BREW", 404, KeyModeNone, time.Millisecond)
	m.Refused(ReasonOverloaded)
	m.KeyModeMismatch(KeyModeTest)
	m.Expiry(ledger.ExpiryStats{LotMembers: 3, Holds: 2}, nil)
	m.Expiry(ledger.ExpiryStats{}, errors.New("store down"))

	text := scrape(t, m)
	lint(t, text)
	mfs := parse(t, text)

	for name := range mfs {
		if !strings.HasPrefix(name, "pointd_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s: pointd's metrics start with pointd_ (and the runtime's with go_ or process_)", name)
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("%s is missing: the Go and process collectors are registered", name)
		}
	}
	mustValue(t, mfs, "pointd_ledger_write_queue_depth", nil, 3)
	mustValue(t, mfs, "pointd_ledger_write_queue_capacity", nil, 4096)
	mustValue(t, mfs, "pointd_db_connections_in_use", nil, 1)
	mustValue(t, mfs, "pointd_db_connections_max", nil, 2)
	mustValue(t, mfs, "pointd_ledger_batch_size", nil, 2)
	mustValue(t, mfs, "pointd_ledger_batch_duration_seconds", nil, 2)
	mustValue(t, mfs, "pointd_ledger_batches_total", map[string]string{"result": "committed"}, 1)
	mustValue(t, mfs, "pointd_ledger_batches_total", map[string]string{"result": "failed"}, 1)
	mustValue(t, mfs, "pointd_ledger_operations_total", map[string]string{"kind": "earn", "outcome": "committed"}, 1)
	mustValue(t, mfs, "pointd_ledger_operations_total", map[string]string{"kind": "redeem", "outcome": "insufficient_points"}, 1)
	mustValue(t, mfs, "pointd_ledger_operations_total", map[string]string{"kind": "cancel", "outcome": "committed"}, 0)
	mustValue(t, mfs, "pointd_ledger_queue_wait_seconds", nil, 2)
	mustValue(t, mfs, "pointd_http_requests_total",
		map[string]string{"route": "POST /v1/earns", "method": "POST", "status": "201", "key_mode": "live"}, 1)
	mustValue(t, mfs, "pointd_http_requests_total",
		map[string]string{"route": "unmatched", "method": "other", "status": "404", "key_mode": "none"}, 1)
	mustValue(t, mfs, "pointd_http_request_duration_seconds", map[string]string{"route": "POST /v1/earns", "method": "POST"}, 1)
	mustValue(t, mfs, "pointd_refusals_total", map[string]string{"reason": "overloaded"}, 1)
	for _, r := range []string{"unavailable", "rate_limited", "deadline", "database_unavailable"} {
		mustValue(t, mfs, "pointd_refusals_total", map[string]string{"reason": r}, 0)
	}
	mustValue(t, mfs, "pointd_key_mode_mismatch_total", map[string]string{"key_mode": "test"}, 1)
	mustValue(t, mfs, "pointd_key_mode_mismatch_total", map[string]string{"key_mode": "live"}, 0)
	mustValue(t, mfs, "pointd_expiry_runs_total", map[string]string{"result": "ok"}, 1)
	mustValue(t, mfs, "pointd_expiry_runs_total", map[string]string{"result": "failed"}, 1)
	mustValue(t, mfs, "pointd_expired_lots_members_total", nil, 3)
	mustValue(t, mfs, "pointd_holds_expired_total", nil, 2)
	if v, ok := value(t, mfs, "pointd_build_info", nil); !ok || v != 1 {
		t.Errorf("pointd_build_info = %v (%v), want 1", v, ok)
	}
	if _, ok := value(t, mfs, "pointd_build_info", map[string]string{"goversion": "go"}); ok {
		t.Error("goversion label should be the runtime's version, not a placeholder")
	}

	// The batch size histogram has the documented buckets 1..1024.
	h := mfs["pointd_ledger_batch_size"].GetMetric()[0].GetHistogram()
	var bounds []float64
	for _, b := range h.GetBucket() {
		if !math.IsInf(b.GetUpperBound(), 1) { // the parser adds +Inf
			bounds = append(bounds, b.GetUpperBound())
		}
	}
	if len(bounds) != 11 || bounds[0] != 1 || bounds[10] != 1024 {
		t.Errorf("batch size buckets %v, want 1, 2, 4 … 1024", bounds)
	}
}

// TestGaugesOnlyOnceWatched: a gauge with no callback is absent, not 0, and
// watching again replaces the callback instead of panicking on a duplicate.
func TestGaugesOnlyOnceWatched(t *testing.T) {
	m := New()
	mfs := parse(t, scrape(t, m))
	for _, name := range []string{"pointd_db_connections_in_use", "pointd_ledger_write_queue_depth"} {
		if _, ok := mfs[name]; ok {
			t.Errorf("%s is exported with nothing to report", name)
		}
	}
	m.WatchDB(func() (int, int) { return 1, 8 })
	m.WatchDB(func() (int, int) { return 5, 8 })
	m.WatchWriteQueue(func() int { return 1 }, func() int { return 10 })
	m.WatchWriteQueue(func() int { return 2 }, func() int { return 20 })
	mfs = parse(t, scrape(t, m))
	mustValue(t, mfs, "pointd_db_connections_in_use", nil, 5)
	mustValue(t, mfs, "pointd_db_connections_max", nil, 8)
	mustValue(t, mfs, "pointd_ledger_write_queue_depth", nil, 2)
	mustValue(t, mfs, "pointd_ledger_write_queue_capacity", nil, 20)
}

// TestNilIsOff: every hook of a nil *Metrics is a no-op.
func TestNilIsOff(t *testing.T) {
	var m *Metrics
	m.Batch(1, time.Millisecond, nil)
	m.Operation(ledger.OpEarn, time.Millisecond, "committed")
	m.Request("POST /v1/earns", "POST", 201, KeyModeLive, time.Millisecond)
	m.Refused(ReasonOverloaded)
	m.KeyModeMismatch(KeyModeTest)
	m.Expiry(ledger.ExpiryStats{Holds: 1}, nil)
	m.WatchDB(func() (int, int) { return 0, 0 })
	m.WatchWriteQueue(func() int { return 0 }, func() int { return 0 })
	if m.Registry() != nil {
		t.Error("a nil Metrics has no registry")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("a nil Metrics serves %d, want 404", rec.Code)
	}
}

func TestRefusalReason(t *testing.T) {
	for _, c := range []struct {
		status   int
		code     string
		deadline bool
		want     string
	}{
		{503, ledger.CodeOverloaded, false, ReasonOverloaded},
		{503, ledger.CodeOverloaded, true, ReasonOverloaded},
		{503, ledger.CodeUnavailable, false, ReasonUnavailable},
		{503, ledger.CodeUnavailable, true, ReasonDeadline},
		{503, "", false, ReasonUnavailable},
		{503, ledger.CodeDatabaseUnavailable, false, ReasonDatabase},
		{503, ledger.CodeDatabaseUnavailable, true, ReasonDatabase},
		{429, "rate_limited", false, ReasonRateLimited},
		{429, "", false, ReasonRateLimited},
		{201, "", false, ""},
		{500, ledger.CodeInternal, true, ""},
		{409, ledger.CodeIdempotencyInFlight, false, ""},
	} {
		if got := RefusalReason(c.status, c.code, c.deadline); got != c.want {
			t.Errorf("RefusalReason(%d, %q, %v) = %q, want %q", c.status, c.code, c.deadline, got, c.want)
		}
	}
}

// TestLabelsStayBounded: whatever clients send, the label values come from
// small fixed sets: methods are normalised, statuses are three digits.
func TestLabelsStayBounded(t *testing.T) {
	m := New()
	for i := 0; i < 100; i++ {
		m.Request("", strings.Repeat("X", i%7+1), 404, KeyModeNone, 0)
	}
	m.Request("GET /healthz", "HEAD", 200, KeyModeNone, 0)
	m.Request("GET /healthz", "GET", 999, KeyModeNone, 0)
	mfs := parse(t, scrape(t, m))
	mustValue(t, mfs, "pointd_http_requests_total", map[string]string{"route": "unmatched", "method": "other", "status": "404"}, 100)
	mustValue(t, mfs, "pointd_http_requests_total", map[string]string{"route": "GET /healthz", "method": "HEAD", "status": "200"}, 1)
	mustValue(t, mfs, "pointd_http_requests_total", map[string]string{"route": "GET /healthz", "method": "GET", "status": "other"}, 1)
	if n := len(mfs["pointd_http_requests_total"].GetMetric()); n != 3 {
		t.Errorf("%d series, want 3", n)
	}
}

// TestHotPathDoesNotAllocate: once a label combination has been seen,
// counting a request or an operation allocates nothing.
func TestHotPathDoesNotAllocate(t *testing.T) {
	m := New()
	route, method := "POST /v1/earns", "POST"
	m.Request(route, method, 201, KeyModeLive, time.Millisecond)
	m.Operation(ledger.OpEarn, time.Microsecond, "committed")
	m.Batch(10, time.Millisecond, nil)
	if n := testing.AllocsPerRun(1000, func() {
		m.Request(route, method, 201, KeyModeLive, time.Millisecond)
	}); n != 0 {
		t.Errorf("Request allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		m.Operation(ledger.OpEarn, time.Microsecond, "committed")
		m.Batch(10, time.Millisecond, nil)
		m.Refused(ReasonOverloaded)
		m.KeyModeMismatch(KeyModeTest)
	}); n != 0 {
		t.Errorf("the observer allocates %v times", n)
	}
}

// TestConcurrent runs the hooks from many goroutines while scraping (for
// -race) and checks that no count is lost.
func TestConcurrent(t *testing.T) {
	m := New()
	m.WatchDB(func() (int, int) { return 1, 1 })
	const goroutines, each = 16, 500
	var wg sync.WaitGroup
	stop := make(chan struct{})
	scraped := make(chan struct{})
	go func() {
		defer close(scraped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			rec := httptest.NewRecorder()
			m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			_, _ = io.Copy(io.Discard, rec.Body)
		}
	}()
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				status := []int{200, 201, 409, 503}[i%4]
				m.Request("POST /v1/earns", "POST", status, KeyModeLive, time.Microsecond)
				m.Operation(ledger.OpKind([]string{"earn", "redeem"}[i%2]), 0, "committed")
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-scraped
	mfs := parse(t, scrape(t, m))
	total := 0.0
	for _, s := range []string{"200", "201", "409", "503"} {
		v, _ := value(t, mfs, "pointd_http_requests_total", map[string]string{"status": s})
		total += v
	}
	if total != goroutines*each {
		t.Errorf("%v requests counted, want %d", total, goroutines*each)
	}
	mustValue(t, mfs, "pointd_ledger_operations_total", map[string]string{"kind": "earn", "outcome": "committed"}, goroutines*each/2)
}

func BenchmarkRequest(b *testing.B) {
	m := New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Request("POST /v1/earns", "POST", 201, KeyModeLive, time.Millisecond)
		}
	})
}
