// Package metrics is pointd's Prometheus instrumentation: the ledger's write
// path (as a ledger.Observer), the HTTP layer, refusals, key-mode mismatches,
// expiry runs, the database pool and the Go runtime, on a registry of its own.
//
// Every method is safe on a nil *Metrics and then does nothing: a server
// started with --metrics=false passes nil and pays for nothing.
//
// The hot path (one HTTP request, one ledger operation) does no allocation
// once a label combination has been seen: the children of every vector are
// resolved once and kept in copy-on-write maps that readers use without a
// lock.
package metrics

import (
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pointd/pointd/internal/ledger"
)

// Namespace starts every metric name of pointd's own.
const Namespace = "pointd"

// Refusal reasons: the values of pointd_refusals_total{reason}.
const (
	ReasonOverloaded  = "overloaded"   // the write queue is full or would outlast the deadline
	ReasonUnavailable = "unavailable"  // the store or the writer could not take the work
	ReasonRateLimited = "rate_limited" // the key's rate limit (429)
	ReasonDeadline    = "deadline"     // the request's own deadline passed before its outcome was known
	// ReasonDatabase: the database could not be reached or did not answer
	// in time (the answer's code is database_unavailable); the alert
	// DatabaseUnavailable fires on the first.
	ReasonDatabase = "database_unavailable"
)

// Key modes: the values of the key_mode labels.
const (
	KeyModeLive = "live"
	KeyModeTest = "test"
	KeyModeNone = "none"
)

// RouteUnmatched is the route label of a request that matched no pattern.
const RouteUnmatched = "unmatched"

// Version is reported by pointd_build_info; the linker may set it
// (-ldflags "-X github.com/pointd/pointd/internal/metrics.Version=v1.2.3"),
// otherwise it is the main module's version from the build information.
var Version = ""

// Metrics owns pointd's collectors and their registry.
type Metrics struct {
	reg *prometheus.Registry

	ops       *prometheus.CounterVec
	queueWait prometheus.Histogram
	batchSize prometheus.Histogram
	batchDur  prometheus.Histogram
	batchOK   prometheus.Counter
	batchFail prometheus.Counter

	httpReqs *prometheus.CounterVec
	httpDur  *prometheus.HistogramVec

	refusals   *prometheus.CounterVec
	refusalBy  map[string]prometheus.Counter
	mismatch   *prometheus.CounterVec
	mismatchBy map[string]prometheus.Counter

	expiryOK     prometheus.Counter
	expiryFail   prometheus.Counter
	expiredLots  prometheus.Counter
	holdsExpired prometheus.Counter

	opChildren   cowMap[opKey, prometheus.Counter]
	httpChildren cowMap[httpKey, *httpChild]
	durChildren  cowMap[durKey, prometheus.Observer]

	cache cacheMetrics // cache.go

	watchMu   sync.Mutex
	queueOnce bool
	dbOnce    bool
	queueFns  atomic.Pointer[queueFns]
	dbFn      atomic.Pointer[func() (inUse, max int)]

	// rate limits (admission.go), registered on first use
	rateLimitedOnce sync.Once
	rateLimitedBy   map[string]prometheus.Counter
	rlFallback      prometheus.Counter
}

type queueFns struct {
	depth    func() int
	capacity func() int
}

type opKey struct {
	kind    ledger.OpKind
	outcome string
}

type httpKey struct {
	route, method, mode string
	status              int
}

type durKey struct{ route, method string }

type httpChild struct {
	count prometheus.Counter
	dur   prometheus.Observer
}

// Bucket layouts, in seconds or operations.
var (
	// HTTPBuckets spans a cached read (sub-millisecond) to the default
	// request deadline (10 s).
	HTTPBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	// QueueWaitBuckets spans an idle writer to a queue at its limit.
	QueueWaitBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	// BatchDurationBuckets spans one small SQLite commit to a stalled database.
	BatchDurationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	// BatchSizeBuckets are the powers of two from 1 to 1024.
	BatchSizeBuckets = prometheus.ExponentialBuckets(1, 2, 11)
)

// New makes the collectors and registers them, with the Go runtime and
// process collectors, on a new registry (never the global one).
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}

	m.ops = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "ledger", Name: "operations_total",
		Help: "Ledger operations answered, by kind and outcome (committed, replayed, noop, or the error code).",
	}, []string{"kind", "outcome"})
	m.queueWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "ledger", Name: "queue_wait_seconds",
		Help:    "Time a ledger operation waited in the write queue before the writer took it.",
		Buckets: QueueWaitBuckets,
	})
	m.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "ledger", Name: "batch_size",
		Help:    "Ledger operations per database transaction.",
		Buckets: BatchSizeBuckets,
	})
	m.batchDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "ledger", Name: "batch_duration_seconds",
		Help:    "Time one ledger batch's database transaction took, commit included.",
		Buckets: BatchDurationBuckets,
	})
	batches := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "ledger", Name: "batches_total",
		Help: "Ledger database transactions tried, by result (committed or failed).",
	}, []string{"result"})
	m.batchOK = batches.WithLabelValues("committed")
	m.batchFail = batches.WithLabelValues("failed")

	m.httpReqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "http", Name: "requests_total",
		Help: "HTTP requests answered, by route pattern, method, status and the mode of the key presented (live, test or none).",
	}, []string{"route", "method", "status", "key_mode"})
	m.httpDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "http", Name: "request_duration_seconds",
		Help:    "Time from a request's arrival to the end of its answer, by route pattern and method.",
		Buckets: HTTPBuckets,
	}, []string{"route", "method"})

	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "refusals_total",
		Help: "Requests refused for load or a database outage (503 or 429), by reason: overloaded, unavailable, rate_limited, deadline or database_unavailable.",
	}, []string{"reason"})
	m.refusalBy = map[string]prometheus.Counter{}
	for _, r := range []string{ReasonOverloaded, ReasonUnavailable, ReasonRateLimited, ReasonDeadline, ReasonDatabase} {
		m.refusalBy[r] = m.refusals.WithLabelValues(r)
	}
	m.mismatch = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "key_mode_mismatch_total",
		Help: "Requests refused because their API key is of the other mode than the server's, by the key's mode.",
	}, []string{"key_mode"})
	m.mismatchBy = map[string]prometheus.Counter{}
	for _, k := range []string{KeyModeLive, KeyModeTest} {
		m.mismatchBy[k] = m.mismatch.WithLabelValues(k)
	}

	expiryRuns := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "expiry_runs_total",
		Help: "Expiry passes run, by result (ok or failed).",
	}, []string{"result"})
	m.expiryOK = expiryRuns.WithLabelValues("ok")
	m.expiryFail = expiryRuns.WithLabelValues("failed")
	m.expiredLots = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "expired_lots_members_total",
		Help: "Members whose due point lots an expiry pass expired.",
	})
	m.holdsExpired = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "holds_expired_total",
		Help: "Holds released by an expiry pass after their timeout.",
	})

	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help: "Always 1; its labels say which pointd and which Go runtime this is.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version(), runtime.Version()).Set(1)

	// Outcomes every dashboard asks for exist from the start at 0, so that a
	// rate over them is 0 rather than absent.
	for _, k := range []ledger.OpKind{ledger.OpEarn, ledger.OpRedeem, ledger.OpHold, ledger.OpCapture,
		ledger.OpVoid, ledger.OpCancel, ledger.OpAdjust, ledger.OpExpireLots, ledger.OpExpireHold} {
		m.opCounter(k, "committed")
	}

	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.ops, m.queueWait, m.batchSize, m.batchDur, batches,
		m.httpReqs, m.httpDur, m.refusals, m.mismatch,
		expiryRuns, m.expiredLots, m.holdsExpired, buildInfo,
	)
	return m
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// Registry is where pointd's metrics are registered: gather from it, or
// register more collectors on it.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the registry in the Prometheus text format. On a nil
// *Metrics it answers 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// Scrapes must stay answerable under load, but two scrapers in
		// parallel are plenty; more wait for a 503 instead of piling up.
		MaxRequestsInFlight: 4,
		Timeout:             5 * time.Second,
		ErrorHandling:       promhttp.ContinueOnError,
	})
}

// WatchWriteQueue reports the write queue's depth and capacity as
// pointd_ledger_write_queue_depth and pointd_ledger_write_queue_capacity,
// read at every scrape. A second call replaces the callbacks.
func (m *Metrics) WatchWriteQueue(depth, capacity func() int) {
	if m == nil {
		return
	}
	m.queueFns.Store(&queueFns{depth: depth, capacity: capacity})
	m.watchMu.Lock()
	defer m.watchMu.Unlock()
	if m.queueOnce {
		return
	}
	m.queueOnce = true
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "ledger", Name: "write_queue_depth",
			Help: "Ledger operations waiting for the writer now.",
		}, func() float64 { return float64(m.queueFns.Load().depth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "ledger", Name: "write_queue_capacity",
			Help: "Ledger operations the write queue holds at most; past it requests are refused with 503.",
		}, func() float64 { return float64(m.queueFns.Load().capacity()) }),
	)
}

// WatchDB reports the database connections in use and their bound as
// pointd_db_connections_in_use and pointd_db_connections_max, read at every
// scrape. In use never passes max. A second call replaces the callback.
func (m *Metrics) WatchDB(stats func() (inUse, max int)) {
	if m == nil {
		return
	}
	m.dbFn.Store(&stats)
	m.watchMu.Lock()
	defer m.watchMu.Unlock()
	if m.dbOnce {
		return
	}
	m.dbOnce = true
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "db", Name: "connections_in_use",
			Help: "Database connections in use now (never above pointd_db_connections_max).",
		}, func() float64 { u, _ := (*m.dbFn.Load())(); return float64(u) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "db", Name: "connections_max",
			Help: "Database connections pointd opens at most, whatever the load.",
		}, func() float64 { _, mx := (*m.dbFn.Load())(); return float64(mx) }),
	)
}

// WatchDBWaits reports the idle connections and how many times a caller had
// to wait for a connection (pointd_db_connections_idle,
// pointd_db_connection_waits_total): waits that keep growing mean reads
// queue for the fixed pool. Call it once.
func (m *Metrics) WatchDBWaits(stats func() (idle int, waits int64)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "db", Name: "connections_idle",
			Help: "Database connections open and idle now.",
		}, func() float64 { i, _ := stats(); return float64(i) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "db", Name: "connection_waits_total",
			Help: "Times a caller had to wait for a database connection.",
		}, func() float64 { _, w := stats(); return float64(w) }),
	)
}

// Batch implements ledger.Observer: one database transaction of the writer.
func (m *Metrics) Batch(size int, took time.Duration, err error) {
	if m == nil {
		return
	}
	m.batchSize.Observe(float64(size))
	m.batchDur.Observe(took.Seconds())
	if err != nil {
		m.batchFail.Inc()
	} else {
		m.batchOK.Inc()
	}
}

// Operation implements ledger.Observer: one answered ledger operation.
func (m *Metrics) Operation(kind ledger.OpKind, queued time.Duration, outcome string) {
	if m == nil {
		return
	}
	m.opCounter(kind, outcome).Inc()
	m.queueWait.Observe(queued.Seconds())
}

var _ ledger.Observer = (*Metrics)(nil)

func (m *Metrics) opCounter(kind ledger.OpKind, outcome string) prometheus.Counter {
	k := opKey{kind, outcome}
	if c, ok := m.opChildren.get(k); ok {
		return c
	}
	return m.opChildren.add(k, func() prometheus.Counter { return m.ops.WithLabelValues(string(kind), outcome) })
}

// Request counts one answered HTTP request. route is the ServeMux pattern
// that matched ("" when none did: RouteUnmatched), never the raw path;
// keyMode is KeyModeLive, KeyModeTest or KeyModeNone.
func (m *Metrics) Request(route, method string, status int, keyMode string, took time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = RouteUnmatched
	}
	method = normMethod(method)
	if status < 100 || status > 599 {
		status = 0
	}
	k := httpKey{route: route, method: method, mode: keyMode, status: status}
	c, ok := m.httpChildren.get(k)
	if !ok {
		c = m.httpChildren.add(k, func() *httpChild {
			return &httpChild{
				count: m.httpReqs.WithLabelValues(route, method, statusText(status), keyMode),
				dur:   m.durChild(route, method),
			}
		})
	}
	c.count.Inc()
	c.dur.Observe(took.Seconds())
}

func (m *Metrics) durChild(route, method string) prometheus.Observer {
	k := durKey{route, method}
	if o, ok := m.durChildren.get(k); ok {
		return o
	}
	return m.durChildren.add(k, func() prometheus.Observer { return m.httpDur.WithLabelValues(route, method) })
}

// Refused counts a refusal for load; reason is one of the Reason constants
// (RefusalReason tells which).
func (m *Metrics) Refused(reason string) {
	if m == nil {
		return
	}
	c, ok := m.refusalBy[reason]
	if !ok {
		c = m.refusalBy[ReasonUnavailable]
	}
	c.Inc()
}

// RefusalReason classifies an answer: the reason it counts under in
// pointd_refusals_total, or "" when it is not a refusal for load. code is
// the problem code it carried; deadline says whether the request's deadline
// had passed when it was answered.
func RefusalReason(status int, code string, deadline bool) string {
	switch {
	case status == http.StatusTooManyRequests:
		return ReasonRateLimited
	case status != http.StatusServiceUnavailable:
		return ""
	case code == ledger.CodeOverloaded:
		return ReasonOverloaded
	case code == ReasonRateLimited:
		return ReasonRateLimited
	case code == ledger.CodeDatabaseUnavailable:
		return ReasonDatabase
	case deadline || code == "deadline_exceeded":
		return ReasonDeadline
	}
	return ReasonUnavailable
}

// KeyModeMismatch counts a key of mode keyMode refused by a server of the
// other mode.
func (m *Metrics) KeyModeMismatch(keyMode string) {
	if m == nil {
		return
	}
	if c, ok := m.mismatchBy[keyMode]; ok {
		c.Inc()
	}
}

// Expiry counts one expiry pass and what it expired.
func (m *Metrics) Expiry(st ledger.ExpiryStats, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.expiryFail.Inc()
	} else {
		m.expiryOK.Inc()
	}
	m.expiredLots.Add(float64(st.LotMembers))
	m.holdsExpired.Add(float64(st.Holds))
}

// normMethod keeps the method label to the standard methods: a client can
// send any token as a method, and each would be a new series.
func normMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// statusText is the status label; it runs once per new label combination.
func statusText(status int) string {
	if status == 0 {
		return "other"
	}
	const digits = "0123456789"
	return string([]byte{digits[status/100], digits[status/10%10], digits[status%10]})
}

// cowMap is a copy-on-write map: readers load it without a lock or an
// allocation; a writer (rare: a label combination seen for the first time)
// copies it under a mutex.
type cowMap[K comparable, V any] struct {
	mu sync.Mutex
	p  atomic.Pointer[map[K]V]
}

func (c *cowMap[K, V]) get(k K) (V, bool) {
	if m := c.p.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

func (c *cowMap[K, V]) add(k K, newV func() V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.p.Load()
	size := 1
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
		size += len(*old)
	}
	v := newV()
	next := make(map[K]V, size)
	if old != nil {
		for kk, vv := range *old {
			next[kk] = vv
		}
	}
	next[k] = v
	c.p.Store(&next)
	return v
}
