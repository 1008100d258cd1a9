// Package ops is pointd's live operations dashboard: one page at /ops, made
// for a wall screen, that shows what the server is doing second by second
// (throughput, latency, errors and refusals, the write queue, the database
// pool, CPU and memory, firing alerts) with the last hour of history.
//
// Everything it serves is embedded in the binary: no CDN, no external fonts
// or scripts. A sampler goroutine (Run) reads the metrics registry every
// second into a ring of 3600 samples; the page loads them from /ops/history
// and then follows /ops/stream (server-sent events).
package ops

import (
	"compress/gzip"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pointd/pointd/internal/alert"
)

//go:embed static
var staticFS embed.FS

// AlertSource gives the active alerts; *alert.Engine is one.
type AlertSource interface {
	Alerts() []alert.Alert
}

// Config makes a Dashboard.
type Config struct {
	// Gatherer is pointd's metrics registry.
	Gatherer prometheus.Gatherer
	// Alerts, when set, are shown on the page.
	Alerts AlertSource
	// CheckKey tells what the key whose secret hashes (auth.HashSecret) to
	// hash may do: Admin for an admin key of this server, ReadOnly for a
	// viewer key, NoAccess for any other, unknown, revoked or expired one.
	// It is the only way in, as Authorization: Bearer on every request or
	// once through the login form for a session, and it is asked again at
	// every request of a session (and every second of a stream), so that a
	// revoked key's sessions end.
	CheckKey func(ctx context.Context, hash []byte) Access
	// Now is time.Now when nil.
	Now func() time.Time
	// Title is shown in the header (say, "live · db.example:5432").
	Title string
	// LatencyBudget is the p99 that the page marks as over budget (100 ms
	// when unset).
	LatencyBudget time.Duration
	// Interval between samples (1 s when unset); History samples are kept
	// (3600 when unset: an hour).
	Interval time.Duration
	History  int
	// SessionIdle ends a session unused that long (12 h when unset);
	// SessionMaxAge ends any session (7 days when unset).
	SessionIdle, SessionMaxAge time.Duration
	Logger                     *slog.Logger
}

// Dashboard serves /ops.
type Dashboard struct {
	cfg      Config
	log      *slog.Logger
	sessions *sessions
	cpus     int

	mu      sync.Mutex
	ring    []Sample // ring buffer, len cfg.History
	next    int      // where the next sample goes
	n       int      // samples held
	seq     uint64
	changed chan struct{} // closed and replaced at every sample
	done    chan struct{} // closed when Run returns
	doneMu  sync.Once

	raw []*alert.Snapshot // the last few snapshots, for rates and quantiles
}

// New makes a Dashboard; Run samples, Handler serves.
func New(cfg Config) *Dashboard {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.History <= 0 {
		cfg.History = 3600
	}
	if cfg.LatencyBudget <= 0 {
		cfg.LatencyBudget = 100 * time.Millisecond
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = 12 * time.Hour
	}
	if cfg.SessionMaxAge <= 0 {
		cfg.SessionMaxAge = 7 * 24 * time.Hour
	}
	if cfg.CheckKey == nil {
		cfg.CheckKey = func(context.Context, []byte) Access { return NoAccess }
	}
	return &Dashboard{
		cfg: cfg, log: cfg.Logger.With("component", "ops"),
		sessions: newSessions(cfg.SessionIdle, cfg.SessionMaxAge),
		cpus:     runtime.NumCPU(),
		ring:     make([]Sample, cfg.History),
		changed:  make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// Num is a number that is null in JSON when unknown, with at most five
// significant digits (the history is an hour of them).
type Num float64

// NaN is an unknown Num.
var NaN = Num(math.NaN())

func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', 5, 64), nil
}

func (n *Num) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = NaN
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	*n = Num(f)
	return err
}

// Sample is one second of the server, as the page draws it.
type Sample struct {
	Seq      uint64 `json:"seq"`
	T        int64  `json:"t"`       // unix milliseconds
	Earns    Num    `json:"earns"`   // committed earns per second
	Redeems  Num    `json:"redeems"` // committed redemptions and hold captures per second
	Requests Num    `json:"rps"`     // HTTP requests per second
	ErrPct   Num    `json:"err_pct"` // 5xx answers, % of requests
	RefPct   Num    `json:"ref_pct"` // refusals for load, % of requests
	P50      Num    `json:"p50_ms"`  // API (/v1) latency over the last 10 s
	P99      Num    `json:"p99_ms"`  //
	Queue    Num    `json:"queue"`   // write queue depth
	QueueCap Num    `json:"queue_cap"`
	DB       Num    `json:"db"` // database connections in use
	DBMax    Num    `json:"db_max"`
	HasCache bool   `json:"has_cache"` // whether a cache reports hits and misses at all
	CachePct Num    `json:"cache_pct"` // hit ratio over the last 10 s, %
	CPUPct   Num    `json:"cpu_pct"`   // of all cores
	RSSMB    Num    `json:"rss_mb"`
	HeapMB   Num    `json:"heap_mb"`
	Firing   int    `json:"firing"` // alerts firing
}

// The metric families the sampler reads.
const (
	mOps      = "pointd_ledger_operations_total"
	mReqs     = "pointd_http_requests_total"
	mDur      = "pointd_http_request_duration_seconds"
	mRefusals = "pointd_refusals_total"
	mQueue    = "pointd_ledger_write_queue_depth"
	mQueueCap = "pointd_ledger_write_queue_capacity"
	mDB       = "pointd_db_connections_in_use"
	mDBMax    = "pointd_db_connections_max"
	mHits     = "pointd_cache_hits_total"
	mMisses   = "pointd_cache_misses_total"
	mCPU      = "process_cpu_seconds_total"
	mRSS      = "process_resident_memory_bytes"
	mHeap     = "go_memstats_heap_inuse_bytes"
)

var wanted = map[string]bool{mOps: true, mReqs: true, mDur: true, mRefusals: true, mQueue: true,
	mQueueCap: true, mDB: true, mDBMax: true, mHits: true, mMisses: true, mCPU: true, mRSS: true, mHeap: true}

var (
	apiRoute  = alert.Re("route", `[A-Z]+ /v1/.*`)
	status5xx = alert.Re("status", `5..`)
)

const (
	rateWindow     = 5  // samples
	quantileWindow = 10 // samples
)

// Run samples the metrics every interval until ctx ends; then open streams
// end too.
func (d *Dashboard) Run(ctx context.Context) {
	defer d.doneMu.Do(func() { close(d.done) })
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	d.SampleNow()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.SampleNow()
		}
	}
}

// SampleNow takes one sample (Run calls it every interval).
func (d *Dashboard) SampleNow() {
	now := d.cfg.Now()
	snap, err := alert.Take(d.cfg.Gatherer, now, func(n string) bool { return wanted[n] })
	if err != nil {
		d.log.Debug("ops: gathering metrics failed in part", "err", err)
	}
	firing := 0
	if d.cfg.Alerts != nil {
		for _, a := range d.cfg.Alerts.Alerts() {
			if a.State == alert.StateFiring {
				firing++
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.raw = append(d.raw, snap)
	if len(d.raw) > quantileWindow+1 {
		d.raw = append(d.raw[:0], d.raw[len(d.raw)-quantileWindow-1:]...)
	}
	d.seq++
	s := d.compute(snap)
	s.Seq, s.T, s.Firing = d.seq, now.UnixMilli(), firing
	d.ring[d.next] = s
	d.next = (d.next + 1) % len(d.ring)
	d.n = min(d.n+1, len(d.ring))
	close(d.changed)
	d.changed = make(chan struct{})
}

// back is the snapshot n samples before the newest (the oldest one held
// when there are fewer); nil when there is only one.
func (d *Dashboard) back(n int) *alert.Snapshot {
	if len(d.raw) < 2 {
		return nil
	}
	i := max(0, len(d.raw)-1-n)
	return d.raw[i]
}

func (d *Dashboard) compute(cur *alert.Snapshot) Sample {
	num := func(v float64, ok bool) Num {
		if !ok {
			return NaN
		}
		return Num(v)
	}
	rOld, qOld := d.back(rateWindow), d.back(quantileWindow)
	rate := func(name string, ms ...alert.Matcher) (float64, bool) { return alert.Rate(rOld, cur, name, ms...) }
	s := Sample{}
	s.Earns = num(rate(mOps, alert.Eq("kind", "earn"), alert.Eq("outcome", "committed")))
	s.Redeems = num(rate(mOps, alert.Re("kind", "redeem|capture"), alert.Eq("outcome", "committed")))
	reqs, okReqs := rate(mReqs)
	s.Requests = num(reqs, okReqs)
	s.ErrPct, s.RefPct = NaN, NaN
	if okReqs {
		errs, _ := rate(mReqs, status5xx)
		refs, _ := rate(mRefusals)
		s.ErrPct, s.RefPct = 0, 0
		if reqs > 0 {
			s.ErrPct, s.RefPct = Num(100*errs/reqs), Num(100*refs/reqs)
		}
	}
	ms := func(v float64, ok bool) Num {
		if !ok {
			return NaN
		}
		return Num(v * 1000)
	}
	s.P50 = ms(alert.Quantile(0.5, qOld, cur, mDur, apiRoute))
	s.P99 = ms(alert.Quantile(0.99, qOld, cur, mDur, apiRoute))
	s.Queue = num(cur.Sum(mQueue))
	s.QueueCap = num(cur.Sum(mQueueCap))
	s.DB = num(cur.Sum(mDB))
	s.DBMax = num(cur.Sum(mDBMax))
	s.HasCache = cur.Has(mHits) || cur.Has(mMisses)
	s.CachePct = NaN
	if s.HasCache {
		h, _ := alert.Increase(qOld, cur, mHits)
		m, _ := alert.Increase(qOld, cur, mMisses)
		if h+m > 0 {
			s.CachePct = Num(100 * h / (h + m))
		}
	}
	s.CPUPct = NaN
	if c, ok := rate(mCPU); ok {
		s.CPUPct = Num(100 * c / float64(d.cpus))
	}
	mb := func(v float64, ok bool) Num {
		if !ok {
			return NaN
		}
		return Num(v / (1 << 20))
	}
	s.RSSMB = mb(cur.Sum(mRSS))
	s.HeapMB = mb(cur.Sum(mHeap))
	return s
}

// Samples are the samples held, oldest first.
func (d *Dashboard) Samples() []Sample {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.since(0, d.n)
}

// since is up to limit samples after seq, oldest first; d.mu held.
func (d *Dashboard) since(seq uint64, limit int) []Sample {
	n := d.n
	if d.seq-seq < uint64(n) {
		n = int(d.seq - seq)
	}
	n = min(n, limit)
	out := make([]Sample, n)
	for i := range n {
		out[i] = d.ring[(d.next-n+i+len(d.ring))%len(d.ring)]
	}
	return out
}

func (d *Dashboard) alerts() []alert.Alert {
	if d.cfg.Alerts == nil {
		return []alert.Alert{}
	}
	a := d.cfg.Alerts.Alerts()
	if a == nil {
		a = []alert.Alert{}
	}
	return a
}

// Handler serves /ops (the page, or the login form), /ops/history,
// /ops/stream, /ops/login, /ops/logout and /ops/static/.
func (d *Dashboard) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ops", d.page)
	mux.HandleFunc("GET /ops/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ops", http.StatusMovedPermanently)
	})
	mux.Handle("GET /ops/history", d.require(http.HandlerFunc(d.history)))
	mux.Handle("GET /ops/stream", d.require(http.HandlerFunc(d.stream)))
	mux.HandleFunc("POST /ops/login", d.login)
	mux.HandleFunc("POST /ops/logout", d.logout)
	sub, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/ops/static/", http.FileServerFS(sub))
	mux.Handle("GET /ops/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".html") || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	return secureHeaders(mux)
}

// secureHeaders: the page loads nothing from anywhere else, ever.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin") // no-referrer would make browsers send Origin: null on the login form
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

type historyResponse struct {
	Title      string        `json:"title"`
	IntervalMS int64         `json:"interval_ms"`
	BudgetMS   float64       `json:"budget_ms"`
	Cores      int           `json:"cores"`
	Access     string        `json:"access"` // "admin" or "read-only": what the page may offer
	Samples    []Sample      `json:"samples"`
	Alerts     []alert.Alert `json:"alerts"`
}

func (d *Dashboard) history(w http.ResponseWriter, r *http.Request) {
	a, _ := accessOf(r)
	resp := historyResponse{Title: d.cfg.Title, IntervalMS: d.cfg.Interval.Milliseconds(), Access: a.String(),
		BudgetMS: float64(d.cfg.LatencyBudget) / float64(time.Millisecond), Cores: d.cpus,
		Samples: d.Samples(), Alerts: d.alerts()}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Vary", "Accept-Encoding")
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		gz := gzip.NewWriter(w)
		defer gz.Close()
		_ = json.NewEncoder(gz).Encode(resp)
		return
	}
	_ = json.NewEncoder(w).Encode(resp)
}

type streamEvent struct {
	Sample Sample        `json:"s"`
	Alerts []alert.Alert `json:"alerts"`
}

// stream sends every new sample as a server-sent event whose id is its seq;
// a reconnecting EventSource sends Last-Event-ID and gets what it missed.
func (d *Dashboard) stream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// A stream outlives the server's write timeout; it ends with the
	// request's context, or when the sampler stops.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer
	w.WriteHeader(http.StatusOK)

	d.mu.Lock()
	last := d.seq
	if last > 0 {
		last-- // the newest sample goes out at once
	}
	if id, err := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64); err == nil && id <= d.seq && d.seq-id <= 600 {
		last = id
	}
	d.mu.Unlock()
	if _, err := fmt.Fprint(w, "retry: 1000\n\n"); err != nil {
		return
	}
	heartbeat := time.NewTicker(15 * time.Second)
	defer heartbeat.Stop()
	_, key := accessOf(r)
	for {
		// A stream lasts as long as the key that opened it: revoked, the
		// stream ends, and the page's reconnection finds the login form.
		if d.cfg.CheckKey(r.Context(), key) == NoAccess {
			return
		}
		d.mu.Lock()
		batch := d.since(last, 600)
		changed := d.changed
		d.mu.Unlock()
		if len(batch) > 0 {
			alerts := d.alerts()
			for _, s := range batch {
				b, err := json.Marshal(streamEvent{Sample: s, Alerts: alerts})
				if err != nil {
					return
				}
				if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", s.Seq, b); err != nil {
					return
				}
				last = s.Seq
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		select {
		case <-changed:
		case <-heartbeat.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-d.done:
			return
		}
	}
}
