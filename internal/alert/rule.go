package alert

import (
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Severities, most urgent first.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// Rule is one alert: a value computed from the metrics, compared with a
// threshold. The value is, in this order:
//
//  1. the series of Metric that match Labels and LabelsRegex, summed; or,
//     with Rate, their per-second rate over Window; with Increase, their
//     increase over Window; with Quantile, that quantile of the histogram
//     Metric over Window;
//  2. divided by RatioTo (computed the same way from its own series) when
//     RatioTo is set.
//
// No data (no matching series, no observations in the window, a zero or
// too small denominator) never fires.
type Rule struct {
	Name        string            `toml:"name"`
	Metric      string            `toml:"metric"`
	Labels      map[string]string `toml:"labels"`       // equal
	LabelsRegex map[string]string `toml:"labels_regex"` // match in full

	Rate     bool          `toml:"rate"`     // per-second rate over Window (counters)
	Increase bool          `toml:"increase"` // increase over Window (counters)
	Quantile float64       `toml:"quantile"` // 0 < q < 1 of a histogram over Window
	Window   time.Duration `toml:"window"`   // for Rate, Increase and Quantile; 1m when unset

	RatioTo          string            `toml:"ratio_to"`
	RatioLabels      map[string]string `toml:"ratio_labels"`
	RatioLabelsRegex map[string]string `toml:"ratio_labels_regex"`
	// MinDenominator: below it the ratio is no data (say, refusals over
	// requests when there are hardly any requests).
	MinDenominator float64 `toml:"min_denominator"`

	Op        string  `toml:"op"` // ">", ">=", "<" or "<="
	Threshold float64 `toml:"threshold"`

	// For is how long the condition must hold before the alert fires.
	For time.Duration `toml:"for"`
	// KeepFiringFor is the flap damping: the condition must stay false
	// this long before a firing alert resolves, or a pending one clears.
	// A signal flapping faster than this counts as holding. Nil: the
	// file's (or the engine's) default.
	KeepFiringFor *time.Duration `toml:"keep_firing_for"`

	Severity string `toml:"severity"` // critical, warning or info
	// Summary is the message; {{value}}, {{value_ms}} (value × 1000),
	// {{value_pct}} (value × 100) and {{threshold}} are replaced.
	Summary string `toml:"summary"`

	sel, ratioSel []Matcher
}

// File is the alert configuration file (TOML).
type File struct {
	Interval       time.Duration `toml:"interval"`        // evaluation; 1s when unset
	RepeatInterval time.Duration `toml:"repeat_interval"` // reminder of a firing alert; 4h when unset
	KeepFiringFor  time.Duration `toml:"keep_firing_for"` // default flap damping; 1m when unset
	Webhooks       []Webhook     `toml:"webhook"`
	Rules          []Rule        `toml:"rule"`
}

// Webhook is where notifications go.
type Webhook struct {
	Name   string `toml:"name"`
	URL    string `toml:"url"`
	URLEnv string `toml:"url_env"` // read the URL from this environment variable instead
	// Format is "slack" ({"text": …}) or "json" (the generic format).
	Format string `toml:"format"`
	// MaxPerMinute messages at most (6 when unset); what exceeds it is
	// merged into the next message.
	MaxPerMinute int               `toml:"max_per_minute"`
	Severities   []string          `toml:"severities"` // only these (all when empty)
	Timeout      time.Duration     `toml:"timeout"`    // per attempt; 10s when unset
	QueueSize    int               `toml:"queue_size"` // messages waiting at most; 64 when unset
	Headers      map[string]string `toml:"headers"`

	url string // URL, or the value of URLEnv
}

const (
	defaultInterval      = time.Second
	defaultRepeat        = 4 * time.Hour
	defaultKeepFiringFor = time.Minute
	defaultWindow        = time.Minute
	defaultMaxPerMinute  = 6
	defaultTimeout       = 10 * time.Second
	defaultQueueSize     = 64
)

// LoadFile reads an alert configuration file. A file without rules gets the
// built-in DefaultRules (so a file may only name webhooks).
func LoadFile(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, err
	}
	f, err := Parse(b)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse reads an alert configuration and checks it. Unknown keys are
// errors: a misspelt "treshold" must not silently disable an alert.
func Parse(b []byte) (File, error) {
	var f File
	md, err := toml.Decode(string(b), &f)
	if err != nil {
		return File{}, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return File{}, fmt.Errorf("unknown keys: %s", strings.Join(keys, ", "))
	}
	if len(f.Rules) == 0 {
		f.Rules = DefaultRules()
	}
	if err := f.check(); err != nil {
		return File{}, err
	}
	return f, nil
}

func (f *File) check() error {
	if f.Interval < 0 || f.RepeatInterval < 0 || f.KeepFiringFor < 0 {
		return errors.New("interval, repeat_interval and keep_firing_for must not be negative")
	}
	names := map[string]bool{}
	for i := range f.Rules {
		if err := f.Rules[i].compile(); err != nil {
			return err
		}
		if names[f.Rules[i].Name] {
			return fmt.Errorf("rule %q: the name is used twice", f.Rules[i].Name)
		}
		names[f.Rules[i].Name] = true
	}
	hooks := map[string]bool{}
	for i := range f.Webhooks {
		if err := f.Webhooks[i].check(); err != nil {
			return err
		}
		if hooks[f.Webhooks[i].Name] {
			return fmt.Errorf("webhook %q: the name is used twice", f.Webhooks[i].Name)
		}
		hooks[f.Webhooks[i].Name] = true
	}
	return nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z_:][A-Za-z0-9_:]*$`)

// compile checks r and prepares its matchers.
func (r *Rule) compile() error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("rule %q: %s", r.Name, fmt.Sprintf(format, a...))
	}
	if r.Name == "" {
		return errors.New("a rule without a name")
	}
	if !nameRE.MatchString(r.Metric) {
		return fail("metric %q is not a metric name", r.Metric)
	}
	if r.RatioTo != "" && !nameRE.MatchString(r.RatioTo) {
		return fail("ratio_to %q is not a metric name", r.RatioTo)
	}
	kinds := 0
	for _, b := range []bool{r.Rate, r.Increase, r.Quantile != 0} {
		if b {
			kinds++
		}
	}
	if kinds > 1 {
		return fail("rate, increase and quantile exclude each other")
	}
	if r.Quantile != 0 && (r.Quantile <= 0 || r.Quantile >= 1 || math.IsNaN(r.Quantile)) {
		return fail("quantile must be between 0 and 1, got %v", r.Quantile)
	}
	if r.Quantile != 0 && r.RatioTo != "" {
		return fail("a quantile cannot be a ratio")
	}
	if kinds == 0 && r.Window != 0 {
		return fail("window needs rate, increase or quantile")
	}
	if kinds > 0 && r.Window == 0 {
		r.Window = defaultWindow
	}
	if r.Window < 0 || r.For < 0 || (r.KeepFiringFor != nil && *r.KeepFiringFor < 0) {
		return fail("window, for and keep_firing_for must not be negative")
	}
	if r.RatioTo == "" && (len(r.RatioLabels) > 0 || len(r.RatioLabelsRegex) > 0 || r.MinDenominator != 0) {
		return fail("ratio_labels, ratio_labels_regex and min_denominator need ratio_to")
	}
	switch r.Op {
	case ">", ">=", "<", "<=":
	default:
		return fail(`op must be ">", ">=", "<" or "<=", got %q`, r.Op)
	}
	if math.IsNaN(r.Threshold) || math.IsInf(r.Threshold, 0) {
		return fail("threshold must be a number")
	}
	switch r.Severity {
	case SeverityCritical, SeverityWarning, SeverityInfo:
	case "":
		r.Severity = SeverityWarning
	default:
		return fail("severity must be critical, warning or info, got %q", r.Severity)
	}
	var err error
	if r.sel, err = matchers(r.Labels, r.LabelsRegex); err != nil {
		return fail("%v", err)
	}
	if r.ratioSel, err = matchers(r.RatioLabels, r.RatioLabelsRegex); err != nil {
		return fail("%v", err)
	}
	if r.Summary == "" {
		r.Summary = fmt.Sprintf("%s is {{value}} (%s %s)", r.Metric, r.Op, formatValue(r.Threshold))
	}
	return nil
}

func matchers(eq, re map[string]string) ([]Matcher, error) {
	var ms []Matcher
	for _, n := range sortedKeys(eq) {
		ms = append(ms, Eq(n, eq[n]))
	}
	for _, n := range sortedKeys(re) {
		rx, err := regexp.Compile("^(?:" + re[n] + ")$")
		if err != nil {
			return nil, fmt.Errorf("labels_regex %s: %v", n, err)
		}
		ms = append(ms, Matcher{Name: n, Regex: rx})
	}
	return ms, nil
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (w *Webhook) check() error {
	if w.Name == "" {
		return errors.New("a webhook without a name")
	}
	w.url = w.URL
	if w.URLEnv != "" {
		if w.URL != "" {
			return fmt.Errorf("webhook %q: url and url_env exclude each other", w.Name)
		}
		w.url = os.Getenv(w.URLEnv)
		if w.url == "" {
			return fmt.Errorf("webhook %q: the environment variable %s is empty", w.Name, w.URLEnv)
		}
	}
	if !strings.HasPrefix(w.url, "http://") && !strings.HasPrefix(w.url, "https://") {
		return fmt.Errorf("webhook %q: url must be http:// or https://", w.Name)
	}
	switch w.Format {
	case "slack", "json":
	case "":
		w.Format = "json"
	default:
		return fmt.Errorf("webhook %q: format must be slack or json, got %q", w.Name, w.Format)
	}
	for _, s := range w.Severities {
		if s != SeverityCritical && s != SeverityWarning && s != SeverityInfo {
			return fmt.Errorf("webhook %q: unknown severity %q", w.Name, s)
		}
	}
	if w.MaxPerMinute < 0 || w.QueueSize < 0 || w.Timeout < 0 {
		return fmt.Errorf("webhook %q: max_per_minute, queue_size and timeout must not be negative", w.Name)
	}
	if w.MaxPerMinute == 0 {
		w.MaxPerMinute = defaultMaxPerMinute
	}
	if w.QueueSize == 0 {
		w.QueueSize = defaultQueueSize
	}
	if w.Timeout == 0 {
		w.Timeout = defaultTimeout
	}
	return nil
}

func (w *Webhook) wants(severity string) bool {
	if len(w.Severities) == 0 {
		return true
	}
	for _, s := range w.Severities {
		if s == severity {
			return true
		}
	}
	return false
}

// families are the metric names r reads.
func (r *Rule) families() []string {
	out := []string{r.Metric}
	if r.RatioTo != "" {
		out = append(out, r.RatioTo)
	}
	return out
}

// value computes r at cur, with old the snapshot a Window before (nil when
// there is none yet).
func (r *Rule) value(old, cur *Snapshot) (float64, bool) {
	one := func(name string, ms []Matcher) (float64, bool) {
		switch {
		case r.Rate:
			return Rate(old, cur, name, ms...)
		case r.Increase:
			return Increase(old, cur, name, ms...)
		case r.Quantile != 0:
			return Quantile(r.Quantile, old, cur, name, ms...)
		}
		return cur.Sum(name, ms...)
	}
	if (r.Rate || r.Increase || r.Quantile != 0) && old == nil {
		return 0, false // no window yet
	}
	v, ok := one(r.Metric, r.sel)
	if !ok || r.RatioTo == "" {
		return v, ok
	}
	d, ok := one(r.RatioTo, r.ratioSel)
	if !ok || d == 0 || d < r.MinDenominator {
		return 0, false
	}
	return v / d, true
}

func (r *Rule) holds(v float64) bool {
	switch r.Op {
	case ">":
		return v > r.Threshold
	case ">=":
		return v >= r.Threshold
	case "<":
		return v < r.Threshold
	case "<=":
		return v <= r.Threshold
	}
	return false
}

func (r *Rule) summary(v float64, ok bool) string {
	val, ms, pct := "n/a", "n/a", "n/a"
	if ok {
		val = formatValue(v)
		ms = strconv.FormatFloat(v*1000, 'f', 0, 64)
		pct = strconv.FormatFloat(v*100, 'f', 2, 64)
	}
	return strings.NewReplacer("{{value}}", val, "{{value_ms}}", ms, "{{value_pct}}", pct,
		"{{threshold}}", formatValue(r.Threshold)).Replace(r.Summary)
}

func formatValue(v float64) string {
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// Names of the gauges the engine is fed (SetVerifySound, SetGauge) for the
// built-in rules.
const (
	VerifySound  = "pointd_verify_sound"  // 1 when the last `verify` found the ledger sound, 0 when not
	HoldsOverdue = "pointd_holds_overdue" // active holds past their expiry by more than a grace period
)

// DefaultRules are the alerts for the failures pointd was built after;
// docs/alerts.example.toml spells them out.
func DefaultRules() []Rule {
	d := func(x time.Duration) *time.Duration { return &x }
	rules := []Rule{
		{
			Name: "DBConnectionsAtBound", Severity: SeverityCritical,
			Metric: "pointd_db_connections_in_use", RatioTo: "pointd_db_connections_max",
			Op: ">=", Threshold: 1, For: 30 * time.Second, KeepFiringFor: d(time.Minute),
			Summary: "database connections at their bound for 30 s ({{value_pct}}% in use): requests queue for a connection",
		},
		{
			Name: "EarnLatencyP99OverBudget", Severity: SeverityWarning,
			Metric: "pointd_http_request_duration_seconds", Labels: map[string]string{"route": "POST /v1/earns"},
			Quantile: 0.99, Window: time.Minute,
			Op: ">", Threshold: 0.1, For: time.Minute, KeepFiringFor: d(2 * time.Minute),
			Summary: "p99 of POST /v1/earns is {{value_ms}} ms over the last minute (budget 100 ms)",
		},
		{
			Name: "RefusalsOver1Percent", Severity: SeverityCritical,
			Metric: "pointd_refusals_total", Rate: true, Window: time.Minute,
			RatioTo: "pointd_http_requests_total", MinDenominator: 1,
			Op: ">", Threshold: 0.01, For: time.Minute, KeepFiringFor: d(2 * time.Minute),
			Summary: "{{value_pct}}% of requests refused for load over the last minute (limit 1%)",
		},
		{
			// An outage of seconds is already over by the time a ratio
			// over a minute would fire: the first request the database
			// could not serve raises it.
			Name: "DatabaseUnavailable", Severity: SeverityCritical,
			Metric: "pointd_refusals_total", Labels: map[string]string{"reason": "database_unavailable"},
			Increase: true, Window: time.Minute,
			Op: ">", Threshold: 0, For: 0, KeepFiringFor: d(2 * time.Minute),
			Summary: "{{value}} requests answered 503 database_unavailable in the last minute: the database cannot be reached or does not answer",
		},
		{
			Name: "KeyModeMismatch", Severity: SeverityCritical,
			Metric: "pointd_key_mode_mismatch_total", Increase: true, Window: 5 * time.Minute,
			Op: ">", Threshold: 0, For: 0, KeepFiringFor: d(0),
			Summary: "keys of the wrong mode refused {{value}}× in the last 5 minutes: a test key against a live server?",
		},
		{
			Name: "LedgerVerifyFailed", Severity: SeverityCritical,
			Metric: VerifySound, Op: "<", Threshold: 1, For: 0, KeepFiringFor: d(0),
			Summary: "pointd verify finds the ledger unsound: stop and repair before more damage",
		},
		{
			Name: "HoldExpiryBehind", Severity: SeverityWarning,
			Metric: HoldsOverdue, Op: ">", Threshold: 0, For: 5 * time.Minute, KeepFiringFor: d(5 * time.Minute),
			Summary: "{{value}} holds are past their expiry and not released: expiry is not keeping up",
		},
		{
			Name: "ExpiryRunsFailing", Severity: SeverityWarning,
			Metric: "pointd_expiry_runs_total", Labels: map[string]string{"result": "failed"},
			Increase: true, Window: 10 * time.Minute,
			Op: ">=", Threshold: 2, For: 0, KeepFiringFor: d(5 * time.Minute),
			Summary: "{{value}} expiry passes failed in the last 10 minutes: holds and lots pile up",
		},
	}
	for i := range rules {
		if err := rules[i].compile(); err != nil {
			panic(err) // a bug in the list above
		}
	}
	return rules
}
