package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// cacheMetrics count what the read-path caches do (internal/cache), by cache
// name. They are registered by the first call to Caches, so a registry
// without caches shows none (and the dashboard says "n/a").
type cacheMetrics struct {
	once                           sync.Once
	hits, misses, stale, coalesced *prometheus.CounterVec
	byName                         cowMap[string, *cacheChildren]
}

type cacheChildren struct {
	hits, misses, stale, coalesced prometheus.Counter
}

// Caches registers pointd_cache_{hits,misses,stale,coalesced}_total and
// makes the series of the named caches exist at 0, so a rate over them is 0
// rather than absent.
func (m *Metrics) Caches(names ...string) {
	if m == nil {
		return
	}
	m.cacheInit()
	for _, n := range names {
		m.cacheChild(n)
	}
}

func (m *Metrics) cacheInit() {
	c := &m.cache
	c.once.Do(func() {
		vec := func(name, help string) *prometheus.CounterVec {
			return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "cache",
				Name: name, Help: help}, []string{"cache"})
		}
		c.hits = vec("hits_total", "Reads answered from a fresh cached value (in process or in Redis), by cache.")
		c.misses = vec("misses_total", "Reads that loaded from the database, by cache.")
		c.stale = vec("stale_total", "Reads answered from a stale value while revalidating or because the load failed, by cache.")
		c.coalesced = vec("coalesced_total", "Reads that waited for another read's load of the same key instead of querying, by cache.")
		m.reg.MustRegister(c.hits, c.misses, c.stale, c.coalesced)
	})
}

func (m *Metrics) cacheChild(name string) *cacheChildren {
	if ch, ok := m.cache.byName.get(name); ok {
		return ch
	}
	m.cacheInit()
	c := &m.cache
	return c.byName.add(name, func() *cacheChildren {
		return &cacheChildren{hits: c.hits.WithLabelValues(name), misses: c.misses.WithLabelValues(name),
			stale: c.stale.WithLabelValues(name), coalesced: c.coalesced.WithLabelValues(name)}
	})
}

// CacheHit counts a fresh hit (cache.Observer).
func (m *Metrics) CacheHit(name string) {
	if m != nil {
		m.cacheChild(name).hits.Inc()
	}
}

// CacheMiss counts a load from the database (cache.Observer).
func (m *Metrics) CacheMiss(name string) {
	if m != nil {
		m.cacheChild(name).misses.Inc()
	}
}

// CacheStale counts an answer from a stale value (cache.Observer).
func (m *Metrics) CacheStale(name string) {
	if m != nil {
		m.cacheChild(name).stale.Inc()
	}
}

// CacheCoalesced counts a read that shared another's load (cache.Observer).
func (m *Metrics) CacheCoalesced(name string) {
	if m != nil {
		m.cacheChild(name).coalesced.Inc()
	}
}
