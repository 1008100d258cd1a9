package surge

import (
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"
)

// second is what happened in one second of the run.
type second struct {
	Offered    int            // POS operations that arrived (open loop)
	Served     int            // POS operations that got a definitive answer
	Acked      int            // of which acknowledged (201, new or replay)
	Earns      int            // acknowledged earns
	Reads      int            // app reads answered 200
	ReadsOff   int            // app reads offered
	Errors     int            // attempts with no answer, 5xx other than 503, unexpected 4xx
	Refusals   map[string]int // 503/429 by reason
	Saturated  int            // arrivals dropped because the client had too many in flight
	latencies  []time.Duration
	P50, P99   time.Duration // of POS attempts
	RP50, RP99 time.Duration // of app reads
	rlat       []time.Duration
	DBInUse    float64 // from /metrics (-1: not scraped)
	DBMax      float64
	QueueDepth float64
	Faults     []string // faults injected in this second
}

// timeline collects per-second statistics.
type timeline struct {
	mu    sync.Mutex
	start time.Time
	secs  []*second
}

func newTimeline(start time.Time) *timeline { return &timeline{start: start} }

func (t *timeline) at(now time.Time) *second {
	i := int(now.Sub(t.start) / time.Second)
	if i < 0 {
		i = 0
	}
	for len(t.secs) <= i {
		t.secs = append(t.secs, &second{Refusals: map[string]int{}, DBInUse: -1, DBMax: -1, QueueDepth: -1})
	}
	return t.secs[i]
}

func (t *timeline) update(f func(s *second)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(t.at(time.Now()))
}

func (t *timeline) attempt(a answer, read bool) {
	t.update(func(s *second) {
		if read {
			s.rlat = append(s.rlat, a.latency)
		} else {
			s.latencies = append(s.latencies, a.latency)
		}
		if r := a.refusal(); r != "" {
			s.Refusals[r]++
		} else if a.err != nil || a.status >= 500 || (read && a.status != http.StatusOK && a.status != http.StatusNotModified) {
			s.Errors++
		}
	})
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d)-1) * p)
	return d[i]
}

// finish computes the percentiles and returns a copy of every second.
func (t *timeline) finish() []second {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]second, len(t.secs))
	for i, s := range t.secs {
		slices.Sort(s.latencies)
		slices.Sort(s.rlat)
		s.P50, s.P99 = pct(s.latencies, 0.5), pct(s.latencies, 0.99)
		s.RP50, s.RP99 = pct(s.rlat, 0.5), pct(s.rlat, 0.99)
		out[i] = *s
		out[i].Refusals = make(map[string]int, len(s.Refusals))
		for k, v := range s.Refusals {
			out[i].Refusals[k] = v
		}
	}
	return out
}

// snapshot summarises the last complete second for the progress line.
func (t *timeline) snapshot(now time.Time) (s second, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := int(now.Sub(t.start)/time.Second) - 1
	if i < 0 || i >= len(t.secs) {
		return s, false
	}
	x := t.secs[i]
	lat := slices.Clone(x.latencies)
	slices.Sort(lat)
	s = *x
	s.P50, s.P99 = pct(lat, 0.5), pct(lat, 0.99)
	s.Refusals = map[string]int{}
	for k, v := range x.Refusals {
		s.Refusals[k] = v
	}
	return s, true
}

func sumRefusals(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// allLatencies pools the POS latencies of the whole run.
func (t *timeline) allLatencies() (pos, reads []time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.secs {
		pos = append(pos, s.latencies...)
		reads = append(reads, s.rlat...)
	}
	slices.Sort(pos)
	slices.Sort(reads)
	return pos, reads
}
