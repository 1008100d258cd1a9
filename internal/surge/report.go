package surge

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

type report struct {
	cfg          Config
	runID        string
	w            *workload
	res          *Result
	secs         []second
	posLat       []time.Duration
	readLat      []time.Duration
	loadTime     time.Duration
	pingRate     float64
	dropped      int64
	serverStarts int
}

type totals struct {
	offered, served, acked, earns, reads, readsOff, errors, saturated int
	refusals                                                          map[string]int
	byKind                                                            map[string][3]int // acked, refused, unresolved
	retried, replayed                                                 int
	peakEarn                                                          int
	dbMaxSeen, dbMax                                                  float64
}

func (r *report) totals() totals {
	t := totals{refusals: map[string]int{}, byKind: map[string][3]int{}, dbMaxSeen: -1, dbMax: -1}
	for _, s := range r.secs {
		t.offered += s.Offered
		t.served += s.Served
		t.acked += s.Acked
		t.earns += s.Earns
		t.reads += s.Reads
		t.readsOff += s.ReadsOff
		t.errors += s.Errors
		t.saturated += s.Saturated
		t.peakEarn = max(t.peakEarn, s.Earns)
		t.dbMaxSeen = max(t.dbMaxSeen, s.DBInUse)
		t.dbMax = max(t.dbMax, s.DBMax)
		for k, v := range s.Refusals {
			t.refusals[k] += v
		}
	}
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	for _, o := range r.w.ops {
		k := t.byKind[o.Kind]
		switch o.Outcome {
		case outAcked:
			k[0]++
		case outRefused:
			k[1]++
		default:
			k[2]++
		}
		t.byKind[o.Kind] = k
		if o.Retried {
			t.retried++
		}
		if o.Replayed {
			t.replayed++
		}
	}
	return t
}

// text writes the terminal report (everything but the verdict line).
func (r *report) text(out io.Writer) {
	t := r.totals()
	secs := r.loadTime.Seconds()
	fmt.Fprintf(out, "\n== pointd surge %s — profile %s, %s at %g ops/s%s, target %s\n", r.runID, r.cfg.Profile,
		r.cfg.Duration, r.cfg.Rate, map[bool]string{true: " (peak)", false: ""}[r.cfg.shape.Growth == "exponential"], r.cfg.Target)
	fmt.Fprintf(out, "synthetic data: names start with \"surge-%s\" (%d stores, %d members)\n", r.runID, len(r.w.stores), r.w.memberCount())
	fmt.Fprintf(out, "POS operations: offered %d (%.1f/s), answered %d, acknowledged %d (%.1f/s); retried %d, answered by replay %d\n",
		t.offered, float64(t.offered)/secs, t.served, t.acked, float64(t.acked)/secs, t.retried, t.replayed)
	kinds := make([]string, 0, len(t.byKind))
	for k := range t.byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		v := t.byKind[k]
		fmt.Fprintf(out, "  %-14s acknowledged %6d  refused %5d  unresolved %d\n", k, v[0], v[1], v[2])
	}
	fmt.Fprintf(out, "POS latency (every attempt): p50 %s p90 %s p99 %s max %s\n",
		fmtDur(pct(r.posLat, 0.5)), fmtDur(pct(r.posLat, 0.9)), fmtDur(pct(r.posLat, 0.99)), fmtDur(pct(r.posLat, 1)))
	fmt.Fprintf(out, "app reads: %d of %d answered (%.1f/s); p50 %s p99 %s\n", t.reads, t.readsOff, float64(t.reads)/secs,
		fmtDur(pct(r.readLat, 0.5)), fmtDur(pct(r.readLat, 0.99)))
	var refs []string
	for _, k := range sortedKeys(t.refusals) {
		refs = append(refs, fmt.Sprintf("%s %d", k, t.refusals[k]))
	}
	if len(refs) == 0 {
		refs = []string{"none"}
	}
	fmt.Fprintf(out, "refusals: %s; errors (no answer, 5xx): %d; client-saturated arrivals: %d; connections cut by conn-drop: %d\n",
		strings.Join(refs, ", "), t.errors, t.saturated, r.dropped)
	if t.dbMax >= 0 {
		fmt.Fprintf(out, "DB connections (from /metrics): at most %.0f in use of %.0f\n", t.dbMaxSeen, t.dbMax)
	} else {
		fmt.Fprintf(out, "DB connections: /metrics not readable from here (loopback only by default)\n")
	}
	earnRate := float64(t.earns) / secs
	fmt.Fprintf(out, "earns acknowledged: %.1f/s on average, %d/s at the busiest second\n", earnRate, t.peakEarn)
	if r.pingRate > 0 {
		fmt.Fprintf(out, "baseline POST /v1/ping: %.0f/s closed loop; earn throughput = %.3f of it (peak second %.3f)\n",
			r.pingRate, earnRate/r.pingRate, float64(t.peakEarn)/r.pingRate)
	}
	for _, f := range r.cfg.Faults {
		fmt.Fprintf(out, "fault: %s\n", f)
	}
	if r.serverStarts > 0 {
		fmt.Fprintf(out, "spawned server: started %d times\n", r.serverStarts)
	}
	if r.res.Audit != "" {
		fmt.Fprintf(out, "pointd verify: %s\n", lastLine(r.res.Audit))
	}
	ds := r.res.Discrepancies
	for i, d := range ds {
		if i == 100 {
			fmt.Fprintf(out, "  … and %d more\n", len(ds)-100)
			break
		}
		fmt.Fprintf(out, "  DISCREPANCY %s: %s\n", d.Kind, d.Detail)
	}
}

type series struct {
	name  string
	color string
	vals  []float64 // NaN: no value
}

// chart draws series over the seconds of the run as an inline SVG.
func chart(title, unit string, ss []series, marks []mark) string {
	const W, H, L, R, T, B = 900.0, 230.0, 60.0, 150.0, 28.0, 30.0
	n := 0
	ymax := 0.0
	for _, s := range ss {
		n = max(n, len(s.vals))
		for _, v := range s.vals {
			if !math.IsNaN(v) {
				ymax = max(ymax, v)
			}
		}
	}
	if ymax <= 0 {
		ymax = 1
	}
	ymax = niceCeil(ymax)
	if n < 2 {
		n = 2
	}
	x := func(i int) float64 { return L + (W-L-R)*float64(i)/float64(n-1) }
	y := func(v float64) float64 { return T + (H-T-B)*(1-v/ymax) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" width="%g" height="%g" font-family="sans-serif" font-size="11">`, W, H, W, H)
	fmt.Fprintf(&b, `<text x="%g" y="16" font-size="13" font-weight="bold">%s</text>`, L, html.EscapeString(title))
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%g" y="%.1f" text-anchor="end">%s</text>`,
			L, W-R, y(v), y(v), L-4, y(v)+4, fmtNum(v)+unit)
	}
	step := max(1, n/10)
	for i := 0; i < n; i += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" text-anchor="middle">%ds</text>`, x(i), H-B+14, i)
	}
	for k, m := range marks {
		if m.sec < n {
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%g" y2="%g" stroke="#c00" stroke-dasharray="4 3"/><text x="%.1f" y="%g" fill="#c00">%s</text>`,
				x(m.sec), x(m.sec), T, H-B, x(m.sec)+3, T+10+float64(k%3)*12, html.EscapeString(m.label))
		}
	}
	for k, s := range ss {
		var pts []string
		flush := func() {
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`, s.color, strings.Join(pts, " "))
				pts = pts[:0]
			}
		}
		for i, v := range s.vals {
			if math.IsNaN(v) {
				flush()
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(v)))
		}
		flush()
		fmt.Fprintf(&b, `<rect x="%g" y="%d" width="12" height="4" fill="%s"/><text x="%g" y="%d">%s</text>`,
			W-R+10, int(T)+k*16+2, s.color, W-R+26, int(T)+k*16+7, html.EscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

type mark struct {
	sec   int
	label string
}

func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	switch {
	case v >= 10_000:
		return fmt.Sprintf("%.0fk", v/1000)
	case v >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"}

// html renders the self-contained report: inline SVG, no external assets.
func (r *report) html() []byte {
	// The charts show the load's seconds; the drain after it is a partial second.
	secs := r.secs[:min(len(r.secs), int(r.cfg.Duration/time.Second))]
	n := len(secs)
	col := func(f func(s second) float64) []float64 {
		out := make([]float64, n)
		for i, s := range secs {
			out[i] = f(s)
		}
		return out
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	var marks []mark
	for i, s := range secs {
		for _, f := range s.Faults {
			if strings.HasSuffix(f, " over") || strings.Contains(f, "restarted") {
				continue // the start of a fault is marked; its end is in the text
			}
			label, _, _ := strings.Cut(strings.TrimPrefix(f, "fault: "), " (")
			label, _, _ = strings.Cut(label, ": ")
			marks = append(marks, mark{i, label})
		}
	}
	nan := func(v float64) float64 {
		if v < 0 {
			return math.NaN()
		}
		return v
	}
	reasons := map[string]int{}
	for _, s := range secs {
		for k, v := range s.Refusals {
			reasons[k] += v
		}
	}
	var refSeries []series
	for i, k := range sortedKeys(reasons) {
		refSeries = append(refSeries, series{k, palette[(i+3)%len(palette)], col(func(s second) float64 { return float64(s.Refusals[k]) })})
	}
	refSeries = append(refSeries, series{"errors", "#000", col(func(s second) float64 { return float64(s.Errors) })})

	var b bytes.Buffer
	var text bytes.Buffer
	r.text(&text)
	verdict := "verdict: clean"
	color := "#2ca02c"
	if !r.res.Clean() {
		verdict = fmt.Sprintf("verdict: %d discrepancies", len(r.res.Discrepancies))
		color = "#d62728"
	}
	fmt.Fprintf(&b, `<!doctype html><html><head><meta charset="utf-8"><title>pointd surge %s</title>
<style>body{font-family:sans-serif;margin:20px;max-width:960px}pre{background:#f6f6f6;padding:10px;font-size:12px;white-space:pre-wrap}
.verdict{font-size:22px;font-weight:bold;color:%s}svg{display:block;margin:8px 0 18px}</style></head><body>
<h1>pointd surge %s</h1><p class="verdict">%s</p><div id="charts">`, r.runID, color, r.runID, html.EscapeString(verdict))
	b.WriteString(chart("POS operations per second: offered vs answered", "/s", []series{
		{"offered", palette[0], col(func(s second) float64 { return float64(s.Offered) })},
		{"answered", palette[1], col(func(s second) float64 { return float64(s.Served) })},
		{"acknowledged", palette[2], col(func(s second) float64 { return float64(s.Acked) })},
		{"app reads", palette[4], col(func(s second) float64 { return float64(s.Reads) })},
	}, marks))
	b.WriteString(chart("POS latency per attempt (ms)", "", []series{
		{"p50", palette[0], col(func(s second) float64 { return ms(s.P50) })},
		{"p99", palette[3], col(func(s second) float64 { return ms(s.P99) })},
		{"reads p99", palette[4], col(func(s second) float64 { return ms(s.RP99) })},
	}, marks))
	b.WriteString(chart("Refusals by reason and errors per second", "/s", refSeries, marks))
	b.WriteString(chart("DB connections and write queue (from /metrics)", "", []series{
		{"in use", palette[0], col(func(s second) float64 { return nan(s.DBInUse) })},
		{"max", palette[3], col(func(s second) float64 { return nan(s.DBMax) })},
		{"write queue", palette[2], col(func(s second) float64 { return nan(s.QueueDepth) })},
	}, marks))
	fmt.Fprintf(&b, `</div><h2>Report</h2><pre>%s%s</pre>`, html.EscapeString(text.String()), html.EscapeString(verdict))
	if r.res.Audit != "" {
		fmt.Fprintf(&b, `<h2>pointd verify</h2><pre>%s</pre>`, html.EscapeString(r.res.Audit))
	}
	b.WriteString(`</body></html>`)
	return b.Bytes()
}
