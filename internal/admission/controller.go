package admission

import (
	"context"
	"time"
)

// Class is a class of routes that share one limit: they load the same
// resource, so they are held back together.
type Class int

const (
	// Unlimited routes are never held back: health, readiness, metrics.
	// They must answer whatever the load, or the operator is blind exactly
	// when it matters.
	Unlimited Class = iota
	// LedgerWrite is every operation that goes through the ledger writer.
	LedgerWrite
	// DBRead is every other route that needs the database (reads, and the
	// directory's own small writes: merchants, stores, members, keys).
	DBRead
	// CachedRead is what is answered without the database: ping, notices,
	// badges.
	CachedRead
	numClasses
)

// Classes lists the limited classes, in a fixed order.
var Classes = []Class{LedgerWrite, DBRead, CachedRead}

// String is the class's name in metrics and logs.
func (c Class) String() string {
	switch c {
	case LedgerWrite:
		return "ledger_write"
	case DBRead:
		return "db_read"
	case CachedRead:
		return "cached_read"
	}
	return "unlimited"
}

// Config sets up a Controller.
type Config struct {
	// Classes sets each class's limiter; a class missing here gets the
	// defaults.
	Classes map[Class]LimiterConfig
	// PollInterval is what clients that poll are told when all is calm;
	// 0: 30 s.
	PollInterval time.Duration
	// Now is the clock; tests pass a fake one.
	Now func() time.Time
}

// Controller holds one limiter per class.
type Controller struct {
	limiters [numClasses]*Limiter
	poll     time.Duration
	now      func() time.Time
}

// New makes a Controller.
func New(cfg Config) *Controller {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 30 * time.Second
	}
	c := &Controller{poll: cfg.PollInterval, now: cfg.Now}
	for _, cl := range Classes {
		lc, ok := cfg.Classes[cl]
		if !ok {
			lc = DefaultLimiterConfig()
		}
		if lc.Now == nil {
			lc.Now = cfg.Now
		}
		c.limiters[cl] = NewLimiter(lc)
	}
	return c
}

// Acquire takes a slot of class cl (see Limiter.Acquire). Unlimited always
// succeeds at once, and so does every class on a nil Controller: admission
// control off.
func (c *Controller) Acquire(ctx context.Context, cl Class) (*Token, error) {
	if c == nil || cl <= Unlimited || cl >= numClasses {
		return nil, nil
	}
	return c.limiters[cl].Acquire(ctx)
}

// Limiter is class cl's limiter, nil for Unlimited.
func (c *Controller) Limiter(cl Class) *Limiter {
	if c == nil || cl <= Unlimited || cl >= numClasses {
		return nil
	}
	return c.limiters[cl]
}

// ClassStats is one class's state.
type ClassStats struct {
	Class Class
	Stats
}

// Stats reads every class's state, in the order of Classes.
func (c *Controller) Stats() []ClassStats {
	if c == nil {
		return nil
	}
	out := make([]ClassStats, 0, len(Classes))
	for _, cl := range Classes {
		out = append(out, ClassStats{Class: cl, Stats: c.limiters[cl].Stats()})
	}
	return out
}

// Load levels of PollInterval.
const (
	// refusalMemory is how long a refusal keeps clients slowed down.
	refusalMemory = 30 * time.Second
	// busyShare is the share of a class's limit in use above which the
	// server counts as busy.
	busyShare = 0.75
)

// CalmPollInterval is what PollInterval says when all is calm.
func (c *Controller) CalmPollInterval() time.Duration {
	if c == nil {
		return 30 * time.Second
	}
	return c.poll
}

// PollInterval is how often a client that polls may ask again: the base
// interval when all is calm, twice that when a class runs near its limit
// or requests wait for a slot, four times when a class refused requests in
// the last 30 s. It falls back by itself once the load has passed.
func (c *Controller) PollInterval() time.Duration {
	if c == nil {
		return 30 * time.Second
	}
	factor := time.Duration(1)
	now := c.now()
	for _, cl := range Classes {
		s := c.limiters[cl].Stats()
		switch {
		case !s.LastRefusal.IsZero() && now.Sub(s.LastRefusal) < refusalMemory:
			return 4 * c.poll
		case s.Waiting > 0 || float64(s.InFlight) >= busyShare*float64(s.Limit):
			factor = 2
		}
	}
	return factor * c.poll
}
