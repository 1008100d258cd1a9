// Package alert evaluates alert rules over pointd's Prometheus metrics and
// sends what changes to webhooks, so that the on-call engineer is told when
// something is wrong without being flooded.
//
// Rules (rule.go) are a small, explicit expression each: a metric's value,
// rate, increase or histogram quantile, optionally divided by another, with
// a threshold. The Engine samples a prometheus.Gatherer every interval, keeps
// the samples the rules' windows need, and moves each rule through
// inactive → pending → firing → resolved. Notifications (notify.go) are
// grouped per evaluation, deduplicated, rate limited per webhook and
// delivered asynchronously with retries, so that a dead receiver never
// blocks the server.
package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Clock is the engine's time: its evaluation ticks, its timestamps, and
// the delivery's rate limits and retry backoff. Tests drive a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real time.
type SystemClock struct{}

func (SystemClock) Now() time.Time                         { return time.Now() }
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config makes an Engine.
type Config struct {
	// Gatherer is what the rules read (pointd's metrics registry).
	Gatherer prometheus.Gatherer
	// Registerer, when set, gets the engine's own metrics: the fed gauges
	// (pointd_verify_sound, pointd_holds_overdue), pointd_alerts{state}
	// and the notification counters. Pass pointd's registry so that they
	// are on /metrics too.
	Registerer prometheus.Registerer
	// File holds the rules (DefaultRules when it has none), the webhooks
	// and the intervals; see LoadFile.
	File File
	// Clock is SystemClock when nil.
	Clock  Clock
	Logger *slog.Logger
	// Client posts the notifications; a client with no timeout of its own
	// is fine, every attempt has the webhook's timeout.
	Client *http.Client
	// Instance names this server in the messages; the host name when empty.
	Instance string
	// RetryMin and RetryMax bound the backoff between delivery attempts
	// (1s and 1m when unset).
	RetryMin, RetryMax time.Duration
}

// State of an alert.
const (
	StatePending  = "pending"
	StateFiring   = "firing"
	StateResolved = "resolved"
)

// Alert is an active alert, as the dashboard shows it.
type Alert struct {
	Name     string    `json:"name"`
	Severity string    `json:"severity"`
	State    string    `json:"state"` // pending or firing
	Summary  string    `json:"summary"`
	Value    Value     `json:"value"`
	ActiveAt time.Time `json:"active_at"`         // when the condition first held
	FiredAt  time.Time `json:"fired_at,omitzero"` // when it started firing
}

// Value is a number that is null in JSON when it is not one (no data).
type Value float64

// MarshalJSON writes NaN and infinities as null.
func (v Value) MarshalJSON() ([]byte, error) {
	f := float64(v)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(f)
}

// Engine evaluates the rules and notifies.
type Engine struct {
	cfg      Config
	clock    Clock
	log      *slog.Logger
	interval time.Duration
	repeat   time.Duration

	evalMu    sync.Mutex // one evaluation at a time
	mu        sync.Mutex // guards rules' states and history
	rules     []*ruleState
	keep      map[string]bool          // the families the rules read
	famWindow map[string]time.Duration // how far back the rules look into each
	hist      map[string][]famSample   // past values of the families with a window
	intern    map[string]string        // series keys, shared by all samples
	seq       uint64
	gatherErr time.Time // last time a gather error was logged

	fedMu sync.Mutex
	fed   map[string]float64

	senders []*sender

	alerts    *prometheus.GaugeVec
	notified  *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	evalTotal prometheus.Counter
}

type ruleState struct {
	rule     Rule
	keep     time.Duration // keep_firing_for
	state    string        // "", pending or firing
	activeAt time.Time
	firedAt  time.Time
	lastTrue time.Time
	lastSent time.Time
	value    float64
	hasValue bool
}

// New makes an engine; Run starts it.
func New(cfg Config) (*Engine, error) {
	f := cfg.File
	if len(f.Rules) == 0 {
		f.Rules = DefaultRules()
	} else {
		f.Rules = append([]Rule(nil), f.Rules...)
	}
	f.Webhooks = append([]Webhook(nil), f.Webhooks...)
	if err := f.check(); err != nil {
		return nil, err
	}
	cfg.File = f
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Instance == "" {
		cfg.Instance, _ = os.Hostname()
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(time.Minute, cfg.RetryMin)
	}
	e := &Engine{
		cfg: cfg, clock: cfg.Clock, log: cfg.Logger.With("component", "alert"),
		interval: f.Interval, repeat: f.RepeatInterval,
		keep: map[string]bool{}, fed: map[string]float64{},
		famWindow: map[string]time.Duration{}, hist: map[string][]famSample{}, intern: map[string]string{},
	}
	if e.interval <= 0 {
		e.interval = defaultInterval
	}
	if e.repeat <= 0 {
		e.repeat = defaultRepeat
	}
	defKeep := f.KeepFiringFor
	if defKeep <= 0 {
		defKeep = defaultKeepFiringFor
	}
	for _, r := range f.Rules {
		st := &ruleState{rule: r, keep: defKeep}
		if r.KeepFiringFor != nil {
			st.keep = *r.KeepFiringFor
		}
		e.rules = append(e.rules, st)
		for _, n := range r.families() {
			e.keep[n] = true
			e.famWindow[n] = max(e.famWindow[n], r.Window)
		}
	}

	e.alerts = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "pointd", Name: "alerts",
		Help: "Alerts by state (pending or firing) at the last evaluation.",
	}, []string{"state"})
	e.notified = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pointd", Name: "alert_notifications_total",
		Help: "Alert notification deliveries by webhook and result (sent, or failed: an attempt that will be retried).",
	}, []string{"webhook", "result"})
	e.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pointd", Name: "alert_notifications_dropped_total",
		Help: "Alert messages dropped, oldest first, because a webhook's queue was full.",
	}, []string{"webhook"})
	e.evalTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "pointd", Name: "alert_evaluations_total",
		Help: "Alert rule evaluations run.",
	})
	for _, s := range []string{StatePending, StateFiring} {
		e.alerts.WithLabelValues(s)
	}
	for i := range f.Webhooks {
		w := f.Webhooks[i]
		e.notified.WithLabelValues(w.Name, "sent")
		e.notified.WithLabelValues(w.Name, "failed")
		e.dropped.WithLabelValues(w.Name)
		e.senders = append(e.senders, newSender(e, w))
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{e.alerts, e.notified, e.dropped, e.evalTotal, fedCollector{e}} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register alert metrics: %w", err)
			}
		}
	}
	return e, nil
}

// Interval is how often Run evaluates.
func (e *Engine) Interval() time.Duration { return e.interval }

// Collectors are the engine's metrics, for a caller that registers them
// itself (when Config.Registerer was nil).
func (e *Engine) Collectors() []prometheus.Collector {
	return []prometheus.Collector{e.alerts, e.notified, e.dropped, e.evalTotal, fedCollector{e}}
}

// SetVerifySound feeds pointd_verify_sound: whether the last audit
// (ledger.Verify, `pointd verify`) found the ledger sound.
func (e *Engine) SetVerifySound(sound bool) {
	v := 0.0
	if sound {
		v = 1
	}
	e.SetGauge(VerifySound, v)
}

// SetGauge feeds a gauge that no collector provides, such as
// pointd_holds_overdue: the rules see it (over a same-named gathered
// family), and it is exported with the engine's metrics.
func (e *Engine) SetGauge(name string, v float64) {
	if !nameRE.MatchString(name) {
		e.log.Warn("alert: not a metric name", "name", name)
		return
	}
	e.fedMu.Lock()
	e.fed[name] = v
	e.fedMu.Unlock()
}

type fedCollector struct{ e *Engine }

// Describe sends nothing: the fed gauges come and go, so this is an
// unchecked collector.
func (fedCollector) Describe(chan<- *prometheus.Desc) {}

func (c fedCollector) Collect(ch chan<- prometheus.Metric) {
	c.e.fedMu.Lock()
	defer c.e.fedMu.Unlock()
	for n, v := range c.e.fed {
		help := "Fed to the alert engine."
		switch n {
		case VerifySound:
			help = "1 when the last ledger audit (pointd verify) found the ledger sound, 0 when it did not."
		case HoldsOverdue:
			help = "Active holds past their expiry by more than a grace period: expiry is not keeping up."
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(n, help, nil, nil), prometheus.GaugeValue, v)
	}
}

// Run evaluates every interval and delivers notifications until ctx ends.
func (e *Engine) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range e.senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx)
		}()
	}
	defer wg.Wait()
	for {
		e.Evaluate()
		select {
		case <-ctx.Done():
			return
		case <-e.clock.After(e.interval):
		}
	}
}

// Evaluate samples the metrics once, moves every rule's state and queues
// the notifications. It never waits for a webhook.
func (e *Engine) Evaluate() {
	e.evalMu.Lock()
	defer e.evalMu.Unlock()
	now := e.clock.Now()
	cur, err := Take(e.cfg.Gatherer, now, func(n string) bool { return e.keep[n] })
	if err != nil && now.Sub(e.gatherErr) > time.Minute {
		e.gatherErr = now
		e.log.Warn("alert: gathering metrics failed in part", "err", err)
	}
	e.fedMu.Lock()
	for n, v := range e.fed {
		if e.keep[n] {
			cur.set(n, v)
		}
	}
	e.fedMu.Unlock()
	e.evalTotal.Inc()

	e.mu.Lock()
	e.record(cur)
	var events []Event
	pending, firing := 0, 0
	for _, st := range e.rules {
		old := e.past(st.rule, now)
		v, ok := st.rule.value(old, cur)
		events = append(events, e.step(st, now, v, ok)...)
		switch st.state {
		case StatePending:
			pending++
		case StateFiring:
			firing++
		}
	}
	e.mu.Unlock()
	e.alerts.WithLabelValues(StatePending).Set(float64(pending))
	e.alerts.WithLabelValues(StateFiring).Set(float64(firing))

	if len(events) == 0 {
		return
	}
	for _, s := range e.senders {
		var mine []Event
		for _, ev := range events {
			if s.hook.wants(ev.Severity) {
				mine = append(mine, ev)
			}
		}
		if len(mine) > 0 {
			s.enqueue(mine)
		}
	}
}

// famSample is a family's series at one evaluation, kept for the rules
// that look back: without label maps (the current sample's labels select,
// the past is found by series key) and with shared keys, so that ten
// minutes of samples stay small.
type famSample struct {
	at     time.Time
	series []series
}

// record keeps cur's values of the families some rule looks back into, for
// as long as the longest such rule looks back: the newest sample at or
// before that horizon stays, the older ones go.
func (e *Engine) record(cur *Snapshot) {
	if len(e.intern) > 100_000 { // label sets churned without bound: start over
		clear(e.intern)
	}
	for f, w := range e.famWindow {
		if w <= 0 {
			continue
		}
		src := cur.families[f]
		kept := make([]series, len(src))
		for i, se := range src {
			k, ok := e.intern[se.key]
			if !ok {
				e.intern[se.key] = se.key
				k = se.key
			}
			kept[i] = series{key: k, value: se.value, buckets: se.buckets}
		}
		h := append(e.hist[f], famSample{at: cur.At, series: kept})
		horizon := cur.At.Add(-w)
		cut := 0
		for i := 1; i < len(h) && !h[i].at.After(horizon); i++ {
			cut = i
		}
		if cut > 0 {
			h = append(h[:0], h[cut:]...)
		}
		e.hist[f] = h
	}
}

// past is the sample a rule's window starts at: the newest at or before
// now − window, or the oldest there is while the engine is younger than the
// window; nil when there is none but the current one.
func (e *Engine) past(r Rule, now time.Time) *Snapshot {
	if r.Window <= 0 {
		return nil
	}
	h := e.hist[r.Metric]
	if len(h) < 2 {
		return nil
	}
	t := now.Add(-r.Window)
	i := 0
	for j := 1; j < len(h)-1 && !h[j].at.After(t); j++ {
		i = j
	}
	at := h[i].at
	old := &Snapshot{At: at, families: map[string][]series{r.Metric: h[i].series}}
	if r.RatioTo != "" {
		for _, fs := range e.hist[r.RatioTo] {
			if fs.at.Equal(at) {
				old.families[r.RatioTo] = fs.series
				break
			}
		}
	}
	return old
}

// step moves st by one evaluation. A pending alert fires once the
// condition has held for `for`; a pending or firing alert clears only
// after the condition has been false for keep_firing_for, so a flapping
// signal gives one firing and one resolved notification.
func (e *Engine) step(st *ruleState, now time.Time, v float64, ok bool) []Event {
	st.value, st.hasValue = v, ok
	cond := ok && st.rule.holds(v)
	if cond {
		st.lastTrue = now
	}
	switch st.state {
	case "":
		if !cond {
			return nil
		}
		st.state, st.activeAt = StatePending, now
		fallthrough
	case StatePending:
		if cond && now.Sub(st.activeAt) >= st.rule.For {
			st.state, st.firedAt, st.lastSent = StateFiring, now, now
			return []Event{e.event(st, StateFiring, now, false)}
		}
		if !cond && now.Sub(st.lastTrue) >= st.keep {
			st.state = ""
		}
	case StateFiring:
		if !cond && now.Sub(st.lastTrue) >= st.keep {
			st.state = ""
			return []Event{e.event(st, StateResolved, now, false)}
		}
		if now.Sub(st.lastSent) >= e.repeat {
			st.lastSent = now
			return []Event{e.event(st, StateFiring, now, true)}
		}
	}
	return nil
}

func (e *Engine) event(st *ruleState, status string, now time.Time, reminder bool) Event {
	e.seq++
	ev := Event{
		Name: st.rule.Name, Severity: st.rule.Severity, Status: status,
		Summary: st.rule.summary(st.value, st.hasValue), Value: Value(math.NaN()),
		StartedAt: st.firedAt, Reminder: reminder, seq: e.seq,
	}
	if st.hasValue {
		ev.Value = Value(st.value)
	}
	if status == StateResolved {
		ev.EndedAt = now
	}
	return ev
}

// Alerts are the pending and firing alerts: firing first, then by
// severity and name.
func (e *Engine) Alerts() []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Alert
	for _, st := range e.rules {
		if st.state == "" {
			continue
		}
		a := Alert{Name: st.rule.Name, Severity: st.rule.Severity, State: st.state,
			Summary: st.rule.summary(st.value, st.hasValue), Value: Value(math.NaN()), ActiveAt: st.activeAt}
		if st.hasValue {
			a.Value = Value(st.value)
		}
		if st.state == StateFiring {
			a.FiredAt = st.firedAt
		}
		out = append(out, a)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].State != out[j].State {
			return out[i].State == StateFiring
		}
		if si, sj := severityRank(out[i].Severity), severityRank(out[j].Severity); si != sj {
			return si < sj
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func severityRank(s string) int {
	switch s {
	case SeverityCritical:
		return 0
	case SeverityWarning:
		return 1
	}
	return 2
}
