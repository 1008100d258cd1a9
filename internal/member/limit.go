package member

import (
	"sync"
	"time"
)

// windowLimiter allows at most n events per key in any sliding window of
// length window, remembering for each key only the times of its last n
// events. It lives in one process: per-IP limits of several instances add
// up (per-phone limits do not: they are counted in the database).
type windowLimiter struct {
	mu     sync.Mutex
	n      int
	window time.Duration
	m      map[string][]time.Time
}

func newWindowLimiter(n int, window time.Duration) *windowLimiter {
	return &windowLimiter{n: n, window: window, m: map[string][]time.Time{}}
}

// allow records an event for key at now if the key is under its limit, and
// otherwise says how long until it will be.
func (l *windowLimiter) allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.m[key]
	// Drop what left the window.
	i := 0
	for i < len(ts) && !ts[i].After(now.Add(-l.window)) {
		i++
	}
	ts = ts[i:]
	if len(ts) >= l.n {
		l.m[key] = ts
		return false, ts[0].Add(l.window).Sub(now)
	}
	if len(l.m) >= 100_000 { // a flood of addresses must not grow memory without bound
		l.sweep(now)
	}
	l.m[key] = append(ts, now)
	return true, 0
}

// sweep forgets keys with nothing left in the window; if that frees
// nothing, everything (a flood of distinct addresses then gets a fresh start
// rather than unbounded memory).
func (l *windowLimiter) sweep(now time.Time) {
	for k, ts := range l.m {
		if len(ts) == 0 || !ts[len(ts)-1].After(now.Add(-l.window)) {
			delete(l.m, k)
		}
	}
	if len(l.m) >= 100_000 {
		clear(l.m)
	}
}
