package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCacheCounters(t *testing.T) {
	m := New()
	m.Caches("balances", "members")
	m.CacheHit("balances")
	m.CacheHit("balances")
	m.CacheMiss("balances")
	m.CacheStale("members")
	m.CacheCoalesced("members")
	for name, want := range map[string]float64{
		"pointd_cache_hits_total": 2, "pointd_cache_misses_total": 1,
		"pointd_cache_stale_total": 1, "pointd_cache_coalesced_total": 1,
	} {
		got, err := testutil.GatherAndCount(m.Registry(), name)
		if err != nil || got != 2 { // a series per named cache, from the start
			t.Errorf("%s: %d series (%v), want 2", name, got, err)
		}
		mfs, _ := m.Registry().Gather()
		sum := 0.0
		for _, mf := range mfs {
			if mf.GetName() == name {
				for _, s := range mf.GetMetric() {
					sum += s.GetCounter().GetValue()
				}
			}
		}
		if sum != want {
			t.Errorf("%s = %v, want %v", name, sum, want)
		}
	}
	var nilM *Metrics
	nilM.Caches("x")
	nilM.CacheHit("x") // a nil *Metrics does nothing, and does not panic
}
