// Package ratelimit is pointd's per-API-key and per-client-IP rate limits:
// token buckets, kept in process by default and in Redis when several
// instances must share them.
//
// Both backends run the same algorithm, GCRA (the generic cell rate
// algorithm): a bucket is one timestamp, the "theoretical arrival time" of
// the next request, so it costs one small value per key and one atomic
// read-modify-write per request. A limit of R per second with a burst of B
// lets B requests through at once and then one every 1/R s — exactly a
// token bucket of B tokens refilled at R per second.
package ratelimit

import (
	"context"
	"math"
	"sync"
	"time"
)

// Limit is a bucket's shape.
type Limit struct {
	PerSecond float64 // the sustained rate; 0 or less: no limit
	Burst     int     // requests allowed at once; below 1: max(1, PerSecond)
}

// Unlimited reports whether l lets everything through.
func (l Limit) Unlimited() bool { return l.PerSecond <= 0 }

func (l Limit) burst() int {
	if l.Burst >= 1 {
		return l.Burst
	}
	return max(1, int(math.Ceil(l.PerSecond)))
}

// Decision is the answer for one request.
type Decision struct {
	Allowed bool
	// Limit is the bucket's size (the burst).
	Limit int
	// Remaining is how many more requests the bucket would let through now.
	Remaining int
	// RetryAfter is, when refused, how long until one request will pass.
	RetryAfter time.Duration
	// ResetAfter is how long until the bucket is full again.
	ResetAfter time.Duration
}

// Limiter decides whether the request identified by key may pass under l.
// An error means the decision could not be made (a backend down); the
// Decision returned with it is then a usable fallback.
type Limiter interface {
	Allow(ctx context.Context, key string, l Limit) (Decision, error)
}

// gcra is the algorithm on one bucket: tat is the stored theoretical
// arrival time (zero: a fresh bucket); it returns the decision and the tat
// to store (unchanged when refused).
func gcra(now, tat time.Time, l Limit) (Decision, time.Time) {
	burst := l.burst()
	interval := time.Duration(float64(time.Second) / l.PerSecond)
	if interval <= 0 {
		interval = 1
	}
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(interval)
	allowAt := next.Add(-time.Duration(burst) * interval)
	if now.Before(allowAt) {
		return Decision{Limit: burst, RetryAfter: allowAt.Sub(now), ResetAfter: tat.Sub(now)}, tat
	}
	return Decision{Allowed: true, Limit: burst, Remaining: int(now.Sub(allowAt) / interval),
		ResetAfter: next.Sub(now)}, next
}

// Local keeps buckets in this process's memory.
type Local struct {
	now func() time.Time
	mu  sync.Mutex
	tat map[string]time.Time
}

// maxLocalBuckets bounds memory against a flood of distinct keys (random
// source addresses, say): past it, full buckets are forgotten, which loses
// nothing (a forgotten bucket is a full one).
const maxLocalBuckets = 100_000

// NewLocal makes an in-process limiter; now is its clock (nil: time.Now).
func NewLocal(now func() time.Time) *Local {
	if now == nil {
		now = time.Now
	}
	return &Local{now: now, tat: map[string]time.Time{}}
}

// Allow implements Limiter; it never fails.
func (b *Local) Allow(_ context.Context, key string, l Limit) (Decision, error) {
	if l.Unlimited() {
		return Decision{Allowed: true}, nil
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	d, tat := gcra(now, b.tat[key], l)
	if d.Allowed {
		if len(b.tat) >= maxLocalBuckets {
			b.sweep(now)
		}
		b.tat[key] = tat
	}
	return d, nil
}

// sweep forgets the buckets that are full again; mu held. If all are busy
// it forgets all of them: letting a burst through beats unbounded memory.
func (b *Local) sweep(now time.Time) {
	for k, t := range b.tat {
		if !t.After(now) {
			delete(b.tat, k)
		}
	}
	if len(b.tat) >= maxLocalBuckets {
		clear(b.tat)
	}
}
