// Package admission decides, before any work is done, whether a request may
// run now: per class of route (ledger writes, database reads, cached reads)
// a concurrency limit that adapts to the latency it measures (or follows a
// batching downstream's pace), a small bounded wait queue, and an immediate
// refusal for what does not fit.
//
// The point is the failure of the story pointd comes from: a surge fills
// the database connections, every request waits until it times out, and the
// service answers nobody. With a limit on what runs at once, the requests
// that are let in run at full speed, and the excess is told "busy, retry
// after N s" in microseconds instead of minutes.
//
// The limit follows Netflix's concurrency-limits (Gradient2): it compares
// the latency of the last window of requests with a long-term average and
// shrinks the limit when the short-term latency rises above it (a queue is
// building somewhere), grows it by about √limit when it does not. Two
// departures: a latency target above which the limit shrinks whatever the
// long-term average says (the long-term average drifts up under sustained
// overload, and a limit that follows it lets latency grow without bound),
// and a multiplicative decrease (AIMD) whenever work let in was refused
// further down (the ledger writer's own 503, a deadline).
//
// A class in front of a batching downstream (ledger writes in front of the
// writer) takes its limit from that downstream's measured pace instead
// (LimiterConfig.ServiceTime, ledger.Writer.PerOp): Little's law, the target
// ÷ the time per operation, so that what is let in is what the writer
// finishes within the target. ledger.Pace says why the gradient fails there.
package admission

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// ErrOverloaded is returned by Acquire when neither a slot nor a place in
// the wait queue is free, or the wait for a slot ran out.
var ErrOverloaded = errors.New("admission: overloaded")

// LimiterConfig tunes one class's limiter. Zero fields take the defaults of
// DefaultLimiterConfig.
type LimiterConfig struct {
	Initial int // the limit at start
	Min     int // the limit never goes below
	Max     int // nor above
	// Queue is how many requests may wait for a slot; more are refused at
	// once. Waiting is for bursts, not for overload: it is short and small.
	Queue int
	// MaxWait is how long a queued request waits for a slot at most (less
	// when its deadline is nearer).
	MaxWait time.Duration
	// Target is the mean latency of a window above which the limit shrinks
	// whatever else the limiter concludes; 0: no target.
	Target time.Duration
	// Tolerance is how far the short-term latency may rise above the
	// long-term average before the limit shrinks (Gradient2's rttTolerance).
	Tolerance float64
	// Window is how many completed requests one adjustment looks at.
	Window int
	// ServiceTime, when set, is the downstream's time per operation at its
	// measured pace (ledger.Writer.PerOp): the limit is then Target ÷ ServiceTime()
	// (Target defaults to 50 ms here), within Min and Max, and latency,
	// Tolerance and Window play no part. 0 from it keeps the limit as is.
	ServiceTime func() time.Duration
	// Now is the clock; tests pass a fake one.
	Now func() time.Time
}

// DefaultLimiterConfig is a limiter for work that takes milliseconds.
func DefaultLimiterConfig() LimiterConfig {
	return LimiterConfig{Initial: 64, Min: 8, Max: 2048, Queue: 32, MaxWait: 5 * time.Millisecond,
		Target: 50 * time.Millisecond, Tolerance: 1.5, Window: 32, Now: time.Now}
}

func (c LimiterConfig) withDefaults() LimiterConfig {
	d := DefaultLimiterConfig()
	if c.Min <= 0 {
		c.Min = d.Min
	}
	if c.Max <= 0 {
		c.Max = d.Max
	}
	if c.Max < c.Min {
		c.Max = c.Min
	}
	if c.Initial <= 0 {
		c.Initial = d.Initial
	}
	c.Initial = min(max(c.Initial, c.Min), c.Max)
	if c.Queue < 0 {
		c.Queue = 0
	}
	if c.MaxWait <= 0 {
		c.MaxWait = d.MaxWait
	}
	if c.Tolerance < 1 {
		c.Tolerance = d.Tolerance
	}
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ServiceTime != nil && c.Target <= 0 {
		c.Target = d.Target
	}
	return c
}

const (
	smoothing = 0.2  // how much of a new estimate one window takes (Gradient2)
	longDecay = 0.05 // weight of one window in the long-term latency (≈ 20 windows)
	backoff   = 0.9  // the multiplicative decrease when work was refused downstream
)

// Limiter is one class's adaptive concurrency limit.
type Limiter struct {
	cfg LimiterConfig

	mu       sync.Mutex
	limit    float64
	inFlight int
	waiters  []*waiter // FIFO

	// the window being measured
	winCount    int
	winSum      time.Duration
	winMaxInUse int
	winDrops    int
	longRTT     float64 // nanoseconds; 0 until the first window

	refused     atomic.Uint64
	lastRefusal atomic.Int64 // unix nanoseconds by cfg.Now
}

type waiter struct {
	ready chan struct{} // gets a value when a slot is handed over
}

// NewLimiter makes a limiter.
func NewLimiter(cfg LimiterConfig) *Limiter {
	cfg = cfg.withDefaults()
	return &Limiter{cfg: cfg, limit: float64(cfg.Initial)}
}

// Token is a slot held; Done gives it back.
type Token struct {
	l     *Limiter
	start time.Time
	inUse int
	done  atomic.Bool
}

// Acquire takes a slot, waiting at most the configured MaxWait (or until
// ctx ends) when all are taken and the queue has room. It returns
// ErrOverloaded when it cannot, and ctx's error when ctx ended first.
func (l *Limiter) Acquire(ctx context.Context) (*Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // the caller has gone: no work for it
	}
	l.mu.Lock()
	l.follow()
	if l.inFlight < l.currentLimit() && len(l.waiters) == 0 {
		l.inFlight++
		t := l.token()
		l.mu.Unlock()
		return t, nil
	}
	if len(l.waiters) >= l.cfg.Queue {
		l.mu.Unlock()
		l.refuse()
		return nil, ErrOverloaded
	}
	w := &waiter{ready: make(chan struct{}, 1)}
	l.waiters = append(l.waiters, w)
	l.mu.Unlock()

	timer := time.NewTimer(l.cfg.MaxWait)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		l.mu.Lock()
		t := l.token()
		l.mu.Unlock()
		return t, nil
	case <-timer.C:
		err = ErrOverloaded
	case <-ctx.Done():
		err = ctx.Err()
	}
	l.mu.Lock()
	if i := indexOf(l.waiters, w); i >= 0 {
		l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
		l.mu.Unlock()
	} else {
		// Handed a slot just as it gave up: pass it on.
		l.mu.Unlock()
		l.release()
	}
	if err == ErrOverloaded {
		l.refuse()
	}
	return nil, err
}

func indexOf(ws []*waiter, w *waiter) int {
	for i, x := range ws {
		if x == w {
			return i
		}
	}
	return -1
}

// token is called with mu held, the slot already counted in inFlight.
func (l *Limiter) token() *Token {
	return &Token{l: l, start: l.cfg.Now(), inUse: l.inFlight}
}

func (l *Limiter) currentLimit() int { return int(l.limit) }

// follow sets the limit from the downstream's pace, when the limiter has
// one; mu held. Called on every Acquire and release, it costs an atomic
// load and a division: the limit tracks the pace batch by batch.
func (l *Limiter) follow() {
	if l.cfg.ServiceTime == nil {
		return
	}
	st := l.cfg.ServiceTime()
	if st <= 0 {
		return
	}
	n := float64(l.cfg.Target) / float64(st)
	l.limit = math.Min(float64(l.cfg.Max), math.Max(float64(l.cfg.Min), n))
}

func (l *Limiter) refuse() {
	l.refused.Add(1)
	l.lastRefusal.Store(l.cfg.Now().UnixNano())
}

// Done gives the slot back and teaches the limiter how long the work took.
// dropped says the work let in was nonetheless refused for load further
// down (a 503 of the ledger writer, a deadline that passed): the limit then
// backs off at once. A second call does nothing.
func (t *Token) Done(dropped bool) {
	if t == nil || !t.done.CompareAndSwap(false, true) {
		return
	}
	l := t.l
	rtt := l.cfg.Now().Sub(t.start)
	l.mu.Lock()
	l.sample(rtt, t.inUse, dropped)
	l.mu.Unlock()
	l.release()
}

// release frees a slot, handing it to the first waiter when the limit
// allows.
func (l *Limiter) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	l.follow()
	l.wake()
}

// wake hands free slots to waiters, first come first served; mu held.
func (l *Limiter) wake() {
	for len(l.waiters) > 0 && l.inFlight < l.currentLimit() {
		w := l.waiters[0]
		l.waiters = l.waiters[1:]
		l.inFlight++
		w.ready <- struct{}{}
	}
}

// sample records one completed request and adjusts the limit at the end of
// a window; mu held.
func (l *Limiter) sample(rtt time.Duration, inUse int, dropped bool) {
	l.winCount++
	l.winSum += rtt
	l.winMaxInUse = max(l.winMaxInUse, inUse)
	if dropped {
		l.winDrops++
	}
	if l.winCount < l.cfg.Window {
		return
	}
	if l.cfg.ServiceTime != nil { // the pace sets the limit (follow)
		l.winCount, l.winSum, l.winMaxInUse, l.winDrops = 0, 0, 0, 0
		return
	}
	short := float64(l.winSum) / float64(l.winCount)
	drops, maxInUse := l.winDrops, l.winMaxInUse
	l.winCount, l.winSum, l.winMaxInUse, l.winDrops = 0, 0, 0, 0
	l.adjust(short, maxInUse, drops)
}

func (l *Limiter) adjust(short float64, maxInUse, drops int) {
	lo, hi := float64(l.cfg.Min), float64(l.cfg.Max)
	if drops > 0 {
		l.limit = math.Max(lo, l.limit*backoff)
		return
	}
	if short <= 0 {
		short = 1
	}
	if l.longRTT == 0 {
		l.longRTT = short
	} else {
		l.longRTT += (short - l.longRTT) * longDecay
	}
	// After a long stretch of high latency, let the long-term average come
	// back down quickly once it has passed (Gradient2 does the same).
	if l.longRTT/short > 2 {
		l.longRTT *= 0.95
	}
	gradient := math.Max(0.5, math.Min(1, l.cfg.Tolerance*l.longRTT/short))
	if t := float64(l.cfg.Target); t > 0 && short > t {
		gradient = math.Min(gradient, math.Max(0.5, t/short))
	}
	next := l.limit * gradient
	// Grow only when the limit was what held requests back: a limit far
	// above what is used proves nothing about what more would do.
	if gradient >= 1 && float64(maxInUse) >= l.limit/2 {
		next += math.Sqrt(l.limit)
	}
	next = l.limit*(1-smoothing) + next*smoothing
	l.limit = math.Min(hi, math.Max(lo, next))
	l.wake()
}

// Stats is a limiter's state now.
type Stats struct {
	Limit    int
	InFlight int
	Waiting  int
	Refused  uint64 // since start
	// LastRefusal is when a request was last refused; zero if never.
	LastRefusal time.Time
}

// Stats reads the limiter's state.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	s := Stats{Limit: l.currentLimit(), InFlight: l.inFlight, Waiting: len(l.waiters)}
	l.mu.Unlock()
	s.Refused = l.refused.Load()
	if n := l.lastRefusal.Load(); n != 0 {
		s.LastRefusal = time.Unix(0, n)
	}
	return s
}
