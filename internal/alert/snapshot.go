package alert

import (
	"math"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Matcher selects series by one label: equal to Value, or (when Regex is
// set) matching it in full.
type Matcher struct {
	Name  string
	Value string
	Regex *regexp.Regexp
}

// Eq matches series whose label name equals value ("" matches a series
// without that label).
func Eq(name, value string) Matcher { return Matcher{Name: name, Value: value} }

// Re matches series whose label name matches pattern in full, as
// Prometheus's =~ does. It panics on a bad pattern: use it with constants.
func Re(name, pattern string) Matcher {
	return Matcher{Name: name, Regex: regexp.MustCompile("^(?:" + pattern + ")$")}
}

func (m Matcher) matches(labels map[string]string) bool {
	v := labels[m.Name]
	if m.Regex != nil {
		return m.Regex.MatchString(v)
	}
	return v == m.Value
}

func matchAll(ms []Matcher, labels map[string]string) bool {
	for _, m := range ms {
		if !m.matches(labels) {
			return false
		}
	}
	return true
}

// bucket is one cumulative histogram bucket.
type bucket struct {
	upper float64
	count float64
}

// series is one labelled value of a family. For a histogram, value is its
// sample count and buckets its cumulative buckets, +Inf last.
type series struct {
	key     string
	labels  map[string]string
	value   float64
	buckets []bucket
}

// Snapshot is the value of every series of some metric families at one
// moment. Histograms appear under their own name (value: the sample count,
// so that a rate over it counts observations) and as name_count and
// name_sum.
type Snapshot struct {
	At       time.Time
	families map[string][]series
}

// Take gathers g at the moment at, keeping only the families keep accepts
// (all when keep is nil). A Gatherer that fails in part still gives what it
// gathered; err says what went wrong.
func Take(g prometheus.Gatherer, at time.Time, keep func(name string) bool) (*Snapshot, error) {
	s := &Snapshot{At: at, families: map[string][]series{}}
	if g == nil {
		return s, nil
	}
	fams, err := g.Gather()
	for _, f := range fams {
		name := f.GetName()
		hist := f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY
		wanted := keep == nil || keep(name) || (hist && (keep(name+"_count") || keep(name+"_sum")))
		if !wanted {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := make(map[string]string, len(m.GetLabel()))
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			key := labelKey(labels)
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				s.add(name, series{key: key, labels: labels, value: m.GetCounter().GetValue()})
			case dto.MetricType_GAUGE:
				s.add(name, series{key: key, labels: labels, value: m.GetGauge().GetValue()})
			case dto.MetricType_UNTYPED:
				s.add(name, series{key: key, labels: labels, value: m.GetUntyped().GetValue()})
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				count := float64(h.GetSampleCount())
				bs := make([]bucket, 0, len(h.GetBucket())+1)
				for _, b := range h.GetBucket() {
					if math.IsInf(b.GetUpperBound(), 1) {
						continue
					}
					bs = append(bs, bucket{upper: b.GetUpperBound(), count: float64(b.GetCumulativeCount())})
				}
				bs = append(bs, bucket{upper: math.Inf(1), count: count})
				s.add(name, series{key: key, labels: labels, value: count, buckets: bs})
				s.add(name+"_count", series{key: key, labels: labels, value: count})
				s.add(name+"_sum", series{key: key, labels: labels, value: h.GetSampleSum()})
			case dto.MetricType_SUMMARY:
				sm := m.GetSummary()
				count := float64(sm.GetSampleCount())
				s.add(name, series{key: key, labels: labels, value: count})
				s.add(name+"_count", series{key: key, labels: labels, value: count})
				s.add(name+"_sum", series{key: key, labels: labels, value: sm.GetSampleSum()})
			}
		}
	}
	return s, err
}

func (s *Snapshot) add(name string, se series) {
	s.families[name] = append(s.families[name], se)
}

// set replaces a family with one unlabelled value.
func (s *Snapshot) set(name string, v float64) {
	s.families[name] = []series{{key: "", labels: map[string]string{}, value: v}}
}

func labelKey(labels map[string]string) string {
	if len(labels) == 0 {
		return ""
	}
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	sort.Strings(names)
	var sb strings.Builder
	for _, n := range names {
		sb.WriteString(n)
		sb.WriteByte('=')
		sb.WriteString(labels[n])
		sb.WriteByte(0)
	}
	return sb.String()
}

// Has reports whether the snapshot holds a family of that name.
func (s *Snapshot) Has(name string) bool {
	if s == nil {
		return false
	}
	_, ok := s.families[name]
	return ok
}

// Sum is the sum of the series of name that match ms; ok is false when no
// series matches.
func (s *Snapshot) Sum(name string, ms ...Matcher) (v float64, ok bool) {
	if s == nil {
		return 0, false
	}
	for _, se := range s.families[name] {
		if matchAll(ms, se.labels) {
			v += se.value
			ok = true
		}
	}
	return v, ok
}

// Increase is how much the counters of name matching ms grew from old to
// cur, summed. A series whose value fell was reset and counts from zero; a
// series that appeared after old counts from zero. ok is false when old is
// nil or no series matches in cur.
func Increase(old, cur *Snapshot, name string, ms ...Matcher) (v float64, ok bool) {
	if old == nil || cur == nil {
		return 0, false
	}
	before := map[string]float64{}
	for _, se := range old.families[name] {
		before[se.key] = se.value
	}
	for _, se := range cur.families[name] {
		if !matchAll(ms, se.labels) {
			continue
		}
		ok = true
		d := se.value - before[se.key]
		if d < 0 {
			d = se.value
		}
		v += d
	}
	return v, ok
}

// Rate is Increase per second of the time between old and cur.
func Rate(old, cur *Snapshot, name string, ms ...Matcher) (float64, bool) {
	if old == nil || cur == nil {
		return 0, false
	}
	secs := cur.At.Sub(old.At).Seconds()
	if secs <= 0 {
		return 0, false
	}
	inc, ok := Increase(old, cur, name, ms...)
	if !ok {
		return 0, false
	}
	return inc / secs, true
}

// Quantile is the q-quantile (0 < q < 1) of the observations a histogram
// of name (series matching ms, merged) received from old to cur, estimated
// from its buckets as Prometheus's histogram_quantile does. With old nil it
// covers every observation since the process started. ok is false without
// observations.
func Quantile(q float64, old, cur *Snapshot, name string, ms ...Matcher) (float64, bool) {
	if cur == nil {
		return 0, false
	}
	before := map[string][]bucket{}
	if old != nil {
		for _, se := range old.families[name] {
			before[se.key] = se.buckets
		}
	}
	merged := map[float64]float64{}
	for _, se := range cur.families[name] {
		if se.buckets == nil || !matchAll(ms, se.labels) {
			continue
		}
		prev := before[se.key]
		reset := prev != nil && prev[len(prev)-1].count > se.buckets[len(se.buckets)-1].count
		for _, b := range se.buckets {
			c := b.count
			if prev != nil && !reset {
				c -= countAt(prev, b.upper)
			}
			merged[b.upper] += c
		}
	}
	if len(merged) == 0 {
		return 0, false
	}
	bs := make([]bucket, 0, len(merged))
	for ub, c := range merged {
		bs = append(bs, bucket{upper: ub, count: c})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].upper < bs[j].upper })
	v := bucketQuantile(q, bs)
	if math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

func countAt(bs []bucket, upper float64) float64 {
	for _, b := range bs {
		if b.upper == upper {
			return b.count
		}
	}
	return 0
}

// bucketQuantile interpolates linearly within the bucket the rank falls in;
// a rank in the +Inf bucket answers the highest finite bound.
func bucketQuantile(q float64, bs []bucket) float64 {
	if len(bs) == 0 {
		return math.NaN()
	}
	// Cumulative counts must not fall (they can when series were merged
	// across a reset); make them monotonic as Prometheus does.
	for i := 1; i < len(bs); i++ {
		if bs[i].count < bs[i-1].count {
			bs[i].count = bs[i-1].count
		}
	}
	total := bs[len(bs)-1].count
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	i := sort.Search(len(bs), func(i int) bool { return bs[i].count >= rank })
	if i >= len(bs) {
		i = len(bs) - 1
	}
	if math.IsInf(bs[i].upper, 1) {
		if i == 0 {
			return math.NaN()
		}
		return bs[i-1].upper
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = bs[i-1].upper, bs[i-1].count
	} else if bs[0].upper <= 0 {
		return bs[0].upper
	}
	in := bs[i].count - below
	if in <= 0 {
		return bs[i].upper
	}
	return lower + (bs[i].upper-lower)*(rank-below)/in
}
