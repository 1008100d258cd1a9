package alert

import (
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/metrics"
)

// The built-in rules, on pointd's real metrics, each fire on the failure
// they are for.
func TestDefaultRulesOnPointdMetrics(t *testing.T) {
	m := metrics.New()
	inUse := 1
	m.WatchDB(func() (int, int) { return inUse, 4 })
	clk := newFakeClock()
	e, err := New(Config{Gatherer: m.Registry(), Registerer: m.Registry(), Clock: clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	state := func(name string) string {
		for _, a := range e.Alerts() {
			if a.Name == name {
				return a.State
			}
		}
		return "inactive"
	}
	tick := func(n int, each func()) {
		for range n {
			if each != nil {
				each()
			}
			clk.Advance(time.Second)
			e.Evaluate()
		}
	}
	tick(3, func() { m.Request("POST /v1/earns", "POST", 201, "live", 2*time.Millisecond) })
	if a := e.Alerts(); len(a) != 0 {
		t.Fatalf("alerts on a healthy server: %+v", a)
	}

	t.Run("DBConnectionsAtBound", func(t *testing.T) {
		inUse = 4
		tick(29, nil)
		if s := state("DBConnectionsAtBound"); s != StatePending {
			t.Fatalf("after 29 s at the bound: %s", s)
		}
		tick(2, nil)
		if s := state("DBConnectionsAtBound"); s != StateFiring {
			t.Fatalf("after 31 s at the bound: %s", s)
		}
		inUse = 2
		tick(61, nil)
		if s := state("DBConnectionsAtBound"); s != "inactive" {
			t.Fatalf("a minute after: %s", s)
		}
	})
	t.Run("KeyModeMismatch", func(t *testing.T) {
		m.KeyModeMismatch("test")
		tick(1, nil)
		if s := state("KeyModeMismatch"); s != StateFiring {
			t.Fatalf("after a test key: %s", s)
		}
		tick(5*60+1, nil)
		if s := state("KeyModeMismatch"); s != "inactive" {
			t.Fatalf("five minutes later: %s", s)
		}
	})
	t.Run("EarnLatencyP99OverBudget", func(t *testing.T) {
		slow := func() {
			for i := range 100 {
				d := 5 * time.Millisecond
				if i < 3 {
					d = 400 * time.Millisecond
				}
				m.Request("POST /v1/earns", "POST", 201, "live", d)
			}
		}
		tick(65, slow)
		if s := state("EarnLatencyP99OverBudget"); s != StatePending && s != StateFiring {
			t.Fatalf("p99 at 400 ms: %s", s)
		}
		tick(60, slow)
		if s := state("EarnLatencyP99OverBudget"); s != StateFiring {
			t.Fatalf("p99 at 400 ms for two minutes: %s", s)
		}
		for _, a := range e.Alerts() {
			if a.Name == "EarnLatencyP99OverBudget" && !strings.Contains(a.Summary, "ms over the last minute") {
				t.Errorf("summary %q", a.Summary)
			}
		}
		fast := func() { m.Request("POST /v1/earns", "POST", 201, "live", time.Millisecond) }
		tick(4*60, fast)
		if s := state("EarnLatencyP99OverBudget"); s != "inactive" {
			t.Fatalf("after four fast minutes: %s", s)
		}
	})
	t.Run("RefusalsOver1Percent", func(t *testing.T) {
		load := func(refused int) func() {
			return func() {
				for i := range 50 {
					status := 201
					if i < refused {
						status = 503
						m.Refused(metrics.ReasonOverloaded)
					}
					m.Request("POST /v1/earns", "POST", status, "live", time.Millisecond)
				}
			}
		}
		tick(120, load(0))
		if s := state("RefusalsOver1Percent"); s != "inactive" {
			t.Fatalf("no refusals: %s", s)
		}
		tick(130, load(5)) // 10%
		if s := state("RefusalsOver1Percent"); s != StateFiring {
			t.Fatalf("10%% refused for two minutes: %s", s)
		}
		tick(4*60, load(0))
		if s := state("RefusalsOver1Percent"); s != "inactive" {
			t.Fatalf("after four clean minutes: %s", s)
		}
	})
	t.Run("DatabaseUnavailable", func(t *testing.T) {
		m.Refused(metrics.ReasonOverloaded) // load is the other rule's
		tick(2, nil)
		if s := state("DatabaseUnavailable"); s != "inactive" {
			t.Fatalf("an overloaded refusal: %s", s)
		}
		m.Refused(metrics.ReasonDatabase)
		tick(1, nil)
		if s := state("DatabaseUnavailable"); s != StateFiring {
			t.Fatalf("a request answered database_unavailable: %s", s)
		}
		tick(3*60+1, nil)
		if s := state("DatabaseUnavailable"); s != "inactive" {
			t.Fatalf("three quiet minutes later: %s", s)
		}
	})
	t.Run("LedgerVerifyFailed", func(t *testing.T) {
		tick(1, nil)
		if s := state("LedgerVerifyFailed"); s != "inactive" {
			t.Fatalf("before any verify: %s", s)
		}
		e.SetVerifySound(false)
		tick(1, nil)
		if s := state("LedgerVerifyFailed"); s != StateFiring {
			t.Fatalf("verify unsound: %s", s)
		}
		e.SetVerifySound(true)
		tick(1, nil)
		if s := state("LedgerVerifyFailed"); s != "inactive" {
			t.Fatalf("verify sound again: %s", s)
		}
		// The fed gauge is on the registry (so on /metrics) as well.
		fams, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, f := range fams {
			found = found || f.GetName() == VerifySound
		}
		if !found {
			t.Errorf("%s is not on the registry", VerifySound)
		}
	})
	t.Run("HoldExpiryBehind", func(t *testing.T) {
		e.SetGauge(HoldsOverdue, 12)
		tick(5*60+1, nil)
		if s := state("HoldExpiryBehind"); s != StateFiring {
			t.Fatalf("holds overdue for five minutes: %s", s)
		}
		e.SetGauge(HoldsOverdue, 0)
		tick(5*60+1, nil)
		if s := state("HoldExpiryBehind"); s != "inactive" {
			t.Fatalf("holds released: %s", s)
		}
	})
	t.Run("ExpiryRunsFailing", func(t *testing.T) {
		m.Expiry(ledger.ExpiryStats{}, errors.New("database locked"))
		tick(60, nil)
		if s := state("ExpiryRunsFailing"); s != "inactive" {
			t.Fatalf("one failed pass: %s", s)
		}
		m.Expiry(ledger.ExpiryStats{}, errors.New("database locked"))
		tick(1, nil)
		if s := state("ExpiryRunsFailing"); s != StateFiring {
			t.Fatalf("two failed passes: %s", s)
		}
	})
}

// The engine keeps the past only of the families a rule looks back into,
// only as far back as that rule looks.
func TestHistoryIsBounded(t *testing.T) {
	m := metrics.New()
	clk := newFakeClock()
	e, err := New(Config{Gatherer: m.Registry(), Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 620 {
		m.Request("POST /v1/earns", "POST", 201+i%3, "live", time.Millisecond)
		clk.Advance(time.Second)
		e.Evaluate()
	}
	want := map[string]int{
		"pointd_http_request_duration_seconds": 61, "pointd_refusals_total": 61, "pointd_http_requests_total": 61,
		"pointd_key_mode_mismatch_total": 301, "pointd_expiry_runs_total": 601,
	}
	for f, h := range e.hist {
		if want[f] == 0 && len(h) > 0 {
			t.Errorf("%s: %d past samples kept; no rule looks back into it", f, len(h))
		} else if len(h) != want[f] {
			t.Errorf("%s: %d past samples kept, want %d", f, len(h), want[f])
		}
	}
}

// docs/alerts.example.toml parses and spells out exactly the built-in rules.
func TestExampleFileIsTheDefaults(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "docs", "alerts.example.toml")
	t.Setenv("POINTD_ALERT_SLACK_URL", "https://hooks.slack.example/T000/B000/XXXX")
	f, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultRules()
	if len(f.Rules) != len(def) {
		t.Fatalf("%d rules in the example, %d built in", len(f.Rules), len(def))
	}
	for i := range def {
		a, b := f.Rules[i], def[i]
		ka, kb := *a.KeepFiringFor, *b.KeepFiringFor
		a.KeepFiringFor, b.KeepFiringFor = nil, nil
		a.sel, b.sel, a.ratioSel, b.ratioSel = nil, nil, nil, nil
		if ka != kb || !equalRule(a, b) {
			t.Errorf("rule %d differs:\nexample  %+v keep %v\nbuilt-in %+v keep %v", i, a, ka, b, kb)
		}
	}
	if len(f.Webhooks) != 2 || f.Webhooks[0].url == "" {
		t.Errorf("webhooks %+v", f.Webhooks)
	}
}

func equalRule(a, b Rule) bool {
	eqMap := func(x, y map[string]string) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if y[k] != v {
				return false
			}
		}
		return true
	}
	return a.Name == b.Name && a.Metric == b.Metric && eqMap(a.Labels, b.Labels) && eqMap(a.LabelsRegex, b.LabelsRegex) &&
		a.Rate == b.Rate && a.Increase == b.Increase && a.Quantile == b.Quantile && a.Window == b.Window &&
		a.RatioTo == b.RatioTo && eqMap(a.RatioLabels, b.RatioLabels) && a.MinDenominator == b.MinDenominator &&
		a.Op == b.Op && a.Threshold == b.Threshold && a.For == b.For && a.Severity == b.Severity && a.Summary == b.Summary
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ name, toml, want string }{
		{"misspelt key", "[[rule]]\nname='a'\nmetric='x'\nop='>'\ntreshold=1\n", "unknown keys: rule.treshold"},
		{"bad op", "[[rule]]\nname='a'\nmetric='x'\nop='=='\n", "op must be"},
		{"two kinds", "[[rule]]\nname='a'\nmetric='x'\nop='>'\nrate=true\nquantile=0.9\n", "exclude each other"},
		{"bad quantile", "[[rule]]\nname='a'\nmetric='x'\nop='>'\nquantile=1.5\n", "quantile must be"},
		{"bad duration", "[[rule]]\nname='a'\nmetric='x'\nop='>'\nfor='soon'\n", "soon"},
		{"window alone", "[[rule]]\nname='a'\nmetric='x'\nop='>'\nwindow='1m'\n", "window needs"},
		{"duplicate", "[[rule]]\nname='a'\nmetric='x'\nop='>'\n[[rule]]\nname='a'\nmetric='y'\nop='>'\n", "used twice"},
		{"bad regex", "[[rule]]\nname='a'\nmetric='x'\nop='>'\nlabels_regex={status='5(('}\n", "labels_regex"},
		{"bad severity", "[[rule]]\nname='a'\nmetric='x'\nop='>'\nseverity='page'\n", "severity"},
		{"webhook url", "[[webhook]]\nname='w'\nurl='ftp://x'\n", "http:// or https://"},
		{"webhook format", "[[webhook]]\nname='w'\nurl='http://x'\nformat='xml'\n", "format"},
		{"webhook env", "[[webhook]]\nname='w'\nurl_env='POINTD_TEST_SURELY_UNSET'\n", "is empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.toml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to say %q", err, c.want)
			}
		})
	}
	// A file with only webhooks gets the built-in rules.
	f, err := Parse([]byte("[[webhook]]\nname='w'\nurl='http://x'\n"))
	if err != nil || len(f.Rules) != len(DefaultRules()) || f.Webhooks[0].Format != "json" || f.Webhooks[0].MaxPerMinute != 6 {
		t.Fatalf("%+v %v", f, err)
	}
}

func TestQuantileAndIncrease(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lat_seconds", Help: "h",
		Buckets: []float64{0.01, 0.1, 1}}, []string{"route"})
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_total", Help: "c"}, []string{"kind"})
	reg.MustRegister(h, c)
	t0 := time.Unix(1000, 0)
	s0, _ := Take(reg, t0, nil)
	for range 90 {
		h.WithLabelValues("a").Observe(0.005)
	}
	for range 10 {
		h.WithLabelValues("b").Observe(0.5)
	}
	c.WithLabelValues("earn").Add(30)
	s1, err := Take(reg, t0.Add(10*time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	if q, ok := Quantile(0.5, s0, s1, "lat_seconds"); !ok || !near(q, 0.01*50/90) {
		t.Errorf("p50 %v %v", q, ok)
	}
	// rank 99 of 100: in the (0.1, 1] bucket, 9 of its 10.
	if q, ok := Quantile(0.99, s0, s1, "lat_seconds"); !ok || !near(q, 0.1+0.9*0.9) {
		t.Errorf("p99 %v %v", q, ok)
	}
	if q, ok := Quantile(0.99, s0, s1, "lat_seconds", Eq("route", "a")); !ok || q > 0.01 {
		t.Errorf("p99 of a %v %v", q, ok)
	}
	if _, ok := Quantile(0.99, s1, s1, "lat_seconds"); ok {
		t.Error("a quantile without observations in the window")
	}
	if r, ok := Rate(s0, s1, "ops_total"); !ok || r != 3 {
		t.Errorf("rate %v %v; a series that appeared counts from 0", r, ok)
	}
	if r, ok := Rate(s0, s1, "lat_seconds", Re("route", "a|b")); !ok || r != 10 {
		t.Errorf("rate of observations %v %v", r, ok)
	}
	// A reset (a restarted process): the counter starts over.
	reg2 := prometheus.NewRegistry()
	c2 := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_total", Help: "c"}, []string{"kind"})
	reg2.MustRegister(c2)
	c2.WithLabelValues("earn").Add(4)
	s2, _ := Take(reg2, t0.Add(20*time.Second), nil)
	if inc, ok := Increase(s1, s2, "ops_total"); !ok || inc != 4 {
		t.Errorf("increase over a reset %v %v", inc, ok)
	}
	if _, ok := s2.Sum("nothing_total"); ok {
		t.Error("a sum of no series")
	}
}

func TestMain(m *testing.M) {
	os.Unsetenv("POINTD_TEST_SURELY_UNSET")
	os.Exit(m.Run())
}
