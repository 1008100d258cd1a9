package metrics

import "testing"

func TestAdmissionAndRateLimitMetricsParseAndLint(t *testing.T) {
	m := New()
	m.WatchAdmission(func() []AdmissionClass {
		return []AdmissionClass{{Class: "ledger_write", Limit: 128, InFlight: 7, Waiting: 2, Refused: 5}}
	})
	m.WatchRateLimits()
	m.RateLimited(ScopeKey)
	m.RateLimited(ScopeIP)
	m.RateLimited(ScopeIP)
	m.RateLimited("bogus") // never a new series
	m.RateLimitFallback()
	text := scrape(t, m)
	lint(t, text)
	mfs := parse(t, text)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"pointd_admission_limit", map[string]string{"class": "ledger_write"}, 128},
		{"pointd_admission_in_flight", map[string]string{"class": "ledger_write"}, 7},
		{"pointd_admission_waiting", map[string]string{"class": "ledger_write"}, 2},
		{"pointd_admission_refusals_total", map[string]string{"class": "ledger_write"}, 5},
		{"pointd_ratelimit_refusals_total", map[string]string{"scope": "key"}, 1},
		{"pointd_ratelimit_refusals_total", map[string]string{"scope": "ip"}, 2},
		{"pointd_ratelimit_redis_fallbacks_total", nil, 1},
	} {
		if got, ok := value(t, mfs, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if n := len(mfs["pointd_ratelimit_refusals_total"].GetMetric()); n != 2 {
		t.Errorf("%d series of pointd_ratelimit_refusals_total, want 2", n)
	}
	var off *Metrics
	off.WatchAdmission(nil)
	off.RateLimited(ScopeKey)
	off.RateLimitFallback()
	off.WatchRateLimits()
}
