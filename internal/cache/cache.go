// Package cache is pointd's read-through cache: what the read path (member
// profiles, balances, stores, merchants, badge state) puts in front of the
// database so that a surge of reads costs a bounded number of queries.
//
// A Cache holds values in process, bounded in size, each fresh for a TTL and
// then stale for a while more. On top of a plain map it does what a launch
// surge needs:
//
//   - coalescing: concurrent misses of one key share one load (one database
//     query for a thousand callers);
//   - stale-while-revalidate: a stale value is answered at once and one
//     background load refreshes it;
//   - stale-on-error: when a load fails, a stale value is answered instead of
//     the error;
//   - invalidation that wins races: a load that started before an
//     invalidation never stores its (older) result afterwards.
//
// With a Shared backend (Redis), values live in Redis too, so several pointd
// instances share them, and invalidations reach every instance: the key is
// deleted in Redis (a version counter beside it keeps a racing load from
// writing an older value back) and a pub/sub message drops the local copies.
// A cache that must show a member their own writes on any instance keeps no
// local copy at all when shared (LocalTTL 0): each read is one Redis GET.
package cache

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Observer counts what caches do, by cache name (the metrics package
// implements it). Its methods must be quick.
type Observer interface {
	// CacheHit: answered from a fresh value, local or shared.
	CacheHit(name string)
	// CacheMiss: this call ran the load (a database query).
	CacheMiss(name string)
	// CacheStale: answered from a stale value (while revalidating, or
	// because the load failed).
	CacheStale(name string)
	// CacheCoalesced: waited for another caller's load instead of loading.
	CacheCoalesced(name string)
}

// Options configure a Cache.
type Options struct {
	Name string // names the cache in metrics and in Redis keys
	// TTL is how long a loaded value is fresh.
	TTL time.Duration
	// Stale is how long after TTL a value may still be answered: at once,
	// while one background load refreshes it, or when the load fails.
	Stale time.Duration
	// MaxEntries bounds the local copies (default 100,000).
	MaxEntries int
	// Shared, when set, keeps values in Redis and spreads invalidations.
	Shared *Shared
	// LocalTTL, with Shared, is how long a local copy is trusted before
	// Redis is asked again; 0 keeps no local copy (every read asks Redis),
	// which is what read-your-writes across instances needs. Without
	// Shared, it is not used.
	LocalTTL time.Duration
	// LocalOnly, with Shared, keeps values in this process only (they hold
	// personal data that must not sit in clear in Redis) and uses Redis just
	// to spread invalidations to the other instances' copies.
	LocalOnly bool
	Observer  Observer
	Now       func() time.Time
	Logger    *slog.Logger
}

// Cache is a read-through cache of V by string key.
type Cache[V any] struct {
	o    Options
	load func(ctx context.Context, key string) (V, error)

	mu      sync.Mutex
	m       map[string]*entry[V]
	gen     uint64 // the last generation handed to a tombstone
	evicted uint64 // counts evictions: a load that saw one stores nothing

	bus *Shared // where invalidations are spread: Shared, also when LocalOnly

	flight     singleflight.Group
	refreshing map[string]bool // keys with a background refresh running
	loading    map[string]int  // loads running per key: what an invalidation must guard against
	loads      atomic.Int64    // how many times load ran, for tests and benchmarks
	lastWarn   atomic.Int64    // unix ns of the last warning logged
}

type entry[V any] struct {
	v     V
	fresh time.Time // answered as fresh until then
	stale time.Time // answered as stale until then; dropped after
	gen   uint64
	tomb  bool // invalidated: no value, only the generation
}

// New makes a cache whose misses call load.
func New[V any](o Options, load func(ctx context.Context, key string) (V, error)) *Cache[V] {
	if o.MaxEntries <= 0 {
		o.MaxEntries = 100_000
	}
	if o.TTL <= 0 {
		o.TTL = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Cache[V]{o: o, load: load, m: map[string]*entry[V]{}, bus: o.Shared}
	if o.Shared != nil {
		o.Shared.onInvalidate(o.Name, c.dropLocal)
		if o.LocalOnly {
			c.o.Shared = nil // values stay here; only c.bus is used
		}
	}
	return c
}

// Name is the cache's name.
func (c *Cache[V]) Name() string { return c.o.Name }

// Loads reports how many times the load function has run.
func (c *Cache[V]) Loads() int64 { return c.loads.Load() }

func (c *Cache[V]) localTTL() time.Duration {
	if c.o.Shared == nil {
		return c.o.TTL
	}
	return min(c.o.LocalTTL, c.o.TTL)
}

// Get returns the value of key: fresh from the cache, stale while one
// background load refreshes it, or loaded (once for all concurrent callers).
func (c *Cache[V]) Get(ctx context.Context, key string) (V, error) {
	now := c.o.Now()
	c.mu.Lock()
	e, ok := c.m[key]
	if ok && !e.tomb {
		v := e.v
		switch {
		case now.Before(e.fresh):
			c.mu.Unlock()
			c.hit()
			return v, nil
		case c.o.Shared == nil && now.Before(e.stale):
			c.revalidateLocked(key)
			c.mu.Unlock()
			c.stale()
			return v, nil
		}
	}
	c.mu.Unlock()
	return c.fetch(ctx, key)
}

// fetch is the miss path: one caller per key goes on, the others wait for it.
func (c *Cache[V]) fetch(ctx context.Context, key string) (V, error) {
	leader := false
	ch := c.flight.DoChan(key, func() (any, error) {
		leader = true
		// The load runs on for the callers still waiting even if the
		// first one leaves, and ends with the deadline it had.
		lctx := context.WithoutCancel(ctx)
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			lctx, cancel = context.WithDeadline(lctx, dl)
			defer cancel()
		}
		return c.fill(lctx, key, false)
	})
	select {
	case r := <-ch:
		if !leader {
			c.coalesced()
		}
		if r.Err != nil {
			var zero V
			return zero, r.Err
		}
		return r.Val.(V), nil
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// revalidateLocked starts a background refresh of key unless one is
// running: however many callers see a value stale, one load refreshes it.
// c.mu is held.
func (c *Cache[V]) revalidateLocked(key string) {
	if c.refreshing[key] {
		return
	}
	if c.refreshing == nil {
		c.refreshing = map[string]bool{}
	}
	c.refreshing[key] = true
	go func() {
		defer func() {
			c.mu.Lock()
			delete(c.refreshing, key)
			c.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = c.fill(ctx, key, true)
	}()
}

// fill looks in the shared store, then loads, and stores what it got unless
// an invalidation came in between.
func (c *Cache[V]) fill(ctx context.Context, key string, background bool) (V, error) {
	now := c.o.Now()
	c.mu.Lock()
	var gen uint64
	var staleV V
	haveStale := false
	if e, ok := c.m[key]; ok {
		gen = e.gen
		if !e.tomb && now.Before(e.fresh) && !background {
			// Filled by a load that ended between this caller's look and
			// its joining the flight: no second load.
			v := e.v
			c.mu.Unlock()
			c.hit()
			return v, nil
		}
		if !e.tomb && now.Before(e.stale) {
			staleV, haveStale = e.v, true
		}
	}
	epoch := c.evicted
	if c.loading == nil {
		c.loading = map[string]int{}
	}
	c.loading[key]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.loading[key]--; c.loading[key] <= 0 {
			delete(c.loading, key)
		}
		c.mu.Unlock()
	}()

	ver := ""
	if sh := c.o.Shared; sh != nil {
		var raw []byte
		var err error
		raw, ver, err = sh.get(ctx, c.o.Name, key)
		if err != nil {
			c.warn("cache: shared read failed; loading from the database", "err", err)
		} else if raw != nil {
			var sv sharedValue[V]
			if jerr := json.Unmarshal(raw, &sv); jerr == nil {
				fresh, stale := time.UnixMicro(sv.Fresh), time.UnixMicro(sv.Stale)
				if now.Before(fresh) {
					c.storeLocal(key, sv.V, fresh, stale, gen, epoch)
					if !background {
						c.hit()
					}
					return sv.V, nil
				}
				if now.Before(stale) {
					staleV, haveStale = sv.V, true
					if !background {
						c.stale()
						c.revalidateShared(key)
						return sv.V, nil
					}
				}
			}
		}
	}

	if !background {
		c.miss()
	}
	c.loads.Add(1)
	v, err := c.load(ctx, key)
	if err != nil {
		if haveStale {
			c.warn("cache: load failed; answering a stale value", "err", err)
			if !background {
				c.stale()
			}
			return staleV, nil
		}
		return v, err
	}
	now = c.o.Now()
	fresh, stale := now.Add(c.o.TTL), now.Add(c.o.TTL+c.o.Stale)
	c.storeLocal(key, v, fresh, stale, gen, epoch)
	if sh := c.o.Shared; sh != nil && ver != "" {
		raw, jerr := json.Marshal(sharedValue[V]{V: v, Fresh: fresh.UnixMicro(), Stale: stale.UnixMicro()})
		if jerr == nil {
			if serr := sh.setIfVersion(ctx, c.o.Name, key, ver, raw, c.o.TTL+c.o.Stale); serr != nil {
				c.warn("cache: shared write failed", "err", serr)
			}
		}
	}
	return v, nil
}

// revalidateShared refreshes a stale shared value in the background.
func (c *Cache[V]) revalidateShared(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.revalidateLocked(key)
}

// storeLocal keeps v unless key was invalidated (or anything evicted) since
// the load began: that load may have read the database before the write the
// invalidation stands for.
func (c *Cache[V]) storeLocal(key string, v V, fresh, stale time.Time, gen, epoch uint64) {
	lt := c.localTTL()
	if lt <= 0 {
		return
	}
	if f := c.o.Now().Add(lt); f.Before(fresh) {
		fresh = f
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var cur uint64
	if e, ok := c.m[key]; ok {
		cur = e.gen
	}
	if cur != gen || c.evicted != epoch {
		return
	}
	c.makeRoom()
	c.m[key] = &entry[V]{v: v, fresh: fresh, stale: stale, gen: gen}
}

// makeRoom drops about a tenth of the entries when the cache is full (the
// map's iteration order picks them, close enough to random).
func (c *Cache[V]) makeRoom() {
	if len(c.m) < c.o.MaxEntries {
		return
	}
	n := max(1, c.o.MaxEntries/10)
	for k := range c.m {
		delete(c.m, k)
		if n--; n == 0 {
			break
		}
	}
	c.evicted++
}

// Set stores v as the fresh value of key, here and in the shared store
// (write-through: for state that pointd itself owns, such as "seen").
func (c *Cache[V]) Set(ctx context.Context, key string, v V) error {
	if err := c.Invalidate(ctx, key); err != nil {
		return err
	}
	now := c.o.Now()
	fresh, stale := now.Add(c.o.TTL), now.Add(c.o.TTL+c.o.Stale)
	c.mu.Lock()
	gen, epoch := uint64(0), c.evicted
	if e, ok := c.m[key]; ok {
		gen = e.gen
	}
	c.mu.Unlock()
	c.storeLocal(key, v, fresh, stale, gen, epoch)
	if sh := c.o.Shared; sh != nil {
		raw, err := json.Marshal(sharedValue[V]{V: v, Fresh: fresh.UnixMicro(), Stale: stale.UnixMicro()})
		if err != nil {
			return err
		}
		return sh.set(ctx, c.o.Name, key, raw, c.o.TTL+c.o.Stale)
	}
	return nil
}

// Invalidate forgets keys here and, when shared, in Redis and on every other
// instance. It returns once the shared copies are gone: a caller that then
// answers its client knows the next read, on any instance, loads afresh.
// (Other instances' local copies go when the pub/sub message arrives; a
// cache that needs them gone at once keeps none: LocalTTL 0.)
func (c *Cache[V]) Invalidate(ctx context.Context, keys ...string) error {
	c.dropLocal(keys...)
	if sh := c.bus; sh != nil {
		return sh.invalidate(ctx, c.o.Name, keys)
	}
	return nil
}

// dropLocal replaces the local copies of keys with tombstones of a new
// generation, so that loads already running do not store their results.
func (c *Cache[V]) dropLocal(keys ...string) {
	// A caller that comes after the invalidation must not join a load that
	// began before it (and may have read the database before the write):
	// it starts a load of its own.
	for _, k := range keys {
		c.flight.Forget(k)
	}
	if c.localTTL() <= 0 {
		return // nothing is ever kept here: Redis's version guards the race
	}
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		c.gen++
		if _, ok := c.m[k]; !ok {
			if c.loading[k] == 0 {
				// Neither kept nor being loaded: nothing to forget, and a
				// tombstone would only take the room of a real entry (a
				// surge of writes to members nobody reads would evict the
				// ones everybody reads).
				continue
			}
			c.makeRoom()
		}
		// A tombstone lives long enough to outlast any load in flight.
		c.m[k] = &entry[V]{gen: c.gen, tomb: true, stale: now.Add(time.Minute)}
	}
}

// Peek returns the local value of key without loading, fresh or not.
func (c *Cache[V]) Peek(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok && !e.tomb {
		return e.v, true
	}
	var zero V
	return zero, false
}

type sharedValue[V any] struct {
	V     V     `json:"v"`
	Fresh int64 `json:"f"` // µs since the epoch
	Stale int64 `json:"s"`
}

// warn logs at most once a second per cache: when Redis or the database
// is down, every read fails the same way, and a log line per read would
// bury everything else.
func (c *Cache[V]) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := c.lastWarn.Load()
	if now-last < int64(time.Second) || !c.lastWarn.CompareAndSwap(last, now) {
		return
	}
	c.o.Logger.Warn(msg, append([]any{"cache", c.o.Name}, args...)...)
}

func (c *Cache[V]) hit() {
	if c.o.Observer != nil {
		c.o.Observer.CacheHit(c.o.Name)
	}
}

func (c *Cache[V]) miss() {
	if c.o.Observer != nil {
		c.o.Observer.CacheMiss(c.o.Name)
	}
}

func (c *Cache[V]) stale() {
	if c.o.Observer != nil {
		c.o.Observer.CacheStale(c.o.Name)
	}
}

func (c *Cache[V]) coalesced() {
	if c.o.Observer != nil {
		c.o.Observer.CacheCoalesced(c.o.Name)
	}
}

// ErrNoShared is returned by Shared methods called on a nil *Shared.
var ErrNoShared = errors.New("cache: no shared backend")
