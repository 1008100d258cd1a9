package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// AdmissionClass is one route class's admission state, as WatchAdmission's
// callback reports it.
type AdmissionClass struct {
	Class    string // ledger_write, db_read, cached_read
	Limit    int
	InFlight int
	Waiting  int
	Refused  uint64 // since start
}

// Rate-limit scopes: the values of pointd_ratelimit_refusals_total{scope}.
const (
	ScopeKey = "key" // an API key's own limit
	ScopeIP  = "ip"  // a client address's limit
)

// admissionCollector reads the classes at every scrape: the limiter keeps
// the numbers, so nothing is done per request here.
type admissionCollector struct {
	stats                    func() []AdmissionClass
	limit, inFlight, waiting *prometheus.Desc
	refused                  *prometheus.Desc
}

func (c *admissionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.limit
	ch <- c.inFlight
	ch <- c.waiting
	ch <- c.refused
}

func (c *admissionCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.stats() {
		ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(s.Limit), s.Class)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(s.InFlight), s.Class)
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(s.Waiting), s.Class)
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(s.Refused), s.Class)
	}
}

// WatchAdmission reports the admission limiters (pointd_admission_limit,
// _in_flight, _waiting and _refusals_total, by class), read at every
// scrape. Call it once.
func (m *Metrics) WatchAdmission(stats func() []AdmissionClass) {
	if m == nil {
		return
	}
	name := func(n string) string { return prometheus.BuildFQName(Namespace, "admission", n) }
	m.reg.MustRegister(&admissionCollector{
		stats: stats,
		limit: prometheus.NewDesc(name("limit"),
			"Requests of a route class allowed to run at once now: ledger_write follows the ledger writer's measured pace, the others adapt to the latency measured.", []string{"class"}, nil),
		inFlight: prometheus.NewDesc(name("in_flight"),
			"Requests of a route class running now.", []string{"class"}, nil),
		waiting: prometheus.NewDesc(name("waiting"),
			"Requests of a route class waiting for a slot now (the queue is small and short).", []string{"class"}, nil),
		refused: prometheus.NewDesc(name("refusals_total"),
			"Requests of a route class refused at once with 503 overloaded because its limit and queue were full.", []string{"class"}, nil),
	})
}

// RateLimited counts a 429 by scope (ScopeKey or ScopeIP).
func (m *Metrics) RateLimited(scope string) {
	if m == nil {
		return
	}
	m.rateLimitedOnce.Do(m.initRateLimit)
	if c, ok := m.rateLimitedBy[scope]; ok {
		c.Inc()
	}
}

// RateLimitFallback counts a rate-limit decision made in this instance
// only because Redis did not answer.
func (m *Metrics) RateLimitFallback() {
	if m == nil {
		return
	}
	m.rateLimitedOnce.Do(m.initRateLimit)
	m.rlFallback.Inc()
}

func (m *Metrics) initRateLimit() {
	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "ratelimit", Name: "refusals_total",
		Help: "Requests answered 429 rate_limited, by scope: key (the API key's limit) or ip (the client address's).",
	}, []string{"scope"})
	m.rateLimitedBy = map[string]prometheus.Counter{}
	for _, s := range []string{ScopeKey, ScopeIP} {
		m.rateLimitedBy[s] = refusals.WithLabelValues(s)
	}
	m.rlFallback = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "ratelimit", Name: "redis_fallbacks_total",
		Help: "Rate-limit decisions made by this instance alone because Redis did not answer.",
	})
	m.reg.MustRegister(refusals, m.rlFallback)
}

// WatchRateLimits registers the rate-limit counters at once, so that they
// read 0 rather than being absent before the first refusal.
func (m *Metrics) WatchRateLimits() {
	if m == nil {
		return
	}
	m.rateLimitedOnce.Do(m.initRateLimit)
}
