package cache_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/cache"
	"github.com/pointd/pointd/internal/cache/redistest"
	"github.com/redis/go-redis/v9"
)

// clock is a time the test moves by hand.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) opts(name string) cache.Options {
	return cache.Options{Name: name, TTL: 10 * time.Second, Stale: time.Minute, Now: c.now, Observer: &counts{}}
}

// counts is a cache.Observer.
type counts struct{ hit, miss, stale, coalesced atomic.Int64 }

func (c *counts) CacheHit(string)       { c.hit.Add(1) }
func (c *counts) CacheMiss(string)      { c.miss.Add(1) }
func (c *counts) CacheStale(string)     { c.stale.Add(1) }
func (c *counts) CacheCoalesced(string) { c.coalesced.Add(1) }

// source is a database stand-in whose answers and failures the test sets:
// the cache under test is real, what it caches is not the point.
type source struct {
	mu    sync.Mutex
	val   map[string]int
	fail  error
	gate  chan struct{} // when set, loads wait for it
	calls atomic.Int64
	in    chan struct{} // when set, told of every load that starts
}

func newSource() *source { return &source{val: map[string]int{}} }

func (s *source) load(ctx context.Context, key string) (int, error) {
	s.calls.Add(1)
	// Read first, then wait: like a query whose answer is on its way while
	// the world moves on.
	s.mu.Lock()
	v, fail, gate, in := s.val[key], s.fail, s.gate, s.in
	s.mu.Unlock()
	if in != nil {
		in <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	if fail != nil {
		return 0, fail
	}
	return v, nil
}

func (s *source) set(key string, v int) { s.mu.Lock(); s.val[key] = v; s.mu.Unlock() }

func mustGet(t *testing.T, c *cache.Cache[int], key string, want int) {
	t.Helper()
	got, err := c.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if got != want {
		t.Fatalf("Get(%q) = %d, want %d", key, got, want)
	}
}

func TestConcurrentMissesShareOneLoad(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			clk := newClock()
			src := newSource()
			src.set("k", 7)
			src.gate = make(chan struct{})
			src.in = make(chan struct{}, 2000) // never blocks a load, however many run
			o := clk.opts("coalesce")
			if shared {
				o.Shared = newShared(t)
			}
			c := cache.New(o, src.load)
			const n = 1000
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for range n {
				wg.Go(func() {
					v, err := c.Get(context.Background(), "k")
					if err == nil && v != 7 {
						err = fmt.Errorf("got %d", v)
					}
					if err != nil {
						errs <- err
					}
				})
			}
			<-src.in // the one load has started and is held at the gate
			close(src.gate)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if got := src.calls.Load(); got != 1 {
				t.Fatalf("%d concurrent misses ran %d loads, want 1", n, got)
			}
			obs := o.Observer.(*counts)
			if obs.miss.Load() != 1 || obs.miss.Load()+obs.coalesced.Load()+obs.hit.Load() != n {
				t.Errorf("miss %d coalesced %d hit %d, want 1 miss and %d in all", obs.miss.Load(), obs.coalesced.Load(), obs.hit.Load(), n)
			}
		})
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	clk := newClock()
	src := newSource()
	src.set("k", 1)
	c := cache.New(clk.opts("swr"), src.load)
	mustGet(t, c, "k", 1)
	src.set("k", 2)
	mustGet(t, c, "k", 1) // fresh: no load
	if src.calls.Load() != 1 {
		t.Fatalf("a fresh hit loaded")
	}
	clk.add(11 * time.Second) // stale now
	src.gate = make(chan struct{})
	src.in = make(chan struct{}, 100)
	for range 50 {
		mustGet(t, c, "k", 1) // answered at once from the stale value
	}
	<-src.in // one background refresh started
	close(src.gate)
	waitFor(t, func() bool { v, _ := c.Peek("k"); return v == 2 }, "the refresh to land")
	if got := src.calls.Load(); got != 2 {
		t.Errorf("50 stale reads caused %d loads in all, want 2 (the first and one refresh)", got)
	}
	mustGet(t, c, "k", 2)
}

func TestStaleOnError(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			clk := newClock()
			src := newSource()
			src.set("k", 1)
			o := clk.opts("soe")
			if shared {
				o.Shared = newShared(t)
			}
			c := cache.New(o, src.load)
			mustGet(t, c, "k", 1)
			src.mu.Lock()
			src.fail = errors.New("database down")
			src.mu.Unlock()
			clk.add(11 * time.Second) // stale, and the database fails
			before := src.calls.Load()
			mustGet(t, c, "k", 1)
			waitFor(t, func() bool { return src.calls.Load() > before }, "the revalidation to be tried")
			mustGet(t, c, "k", 1)    // the failed refresh did not lose the value
			clk.add(2 * time.Minute) // past the stale window: the error shows
			if _, err := c.Get(context.Background(), "k"); err == nil {
				t.Fatal("past the stale window a failing load answered no error")
			}
		})
	}
}

// An invalidation that arrives while a load is running wins: the load's
// result (read before the write the invalidation stands for) is answered to
// its callers but not kept.
func TestInvalidationBeatsARacingLoad(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			clk := newClock()
			src := newSource()
			src.set("k", 1)
			o := clk.opts("race")
			var sh *cache.Shared
			if shared {
				sh = newShared(t)
				o.Shared, o.LocalTTL = sh, time.Minute
			}
			c := cache.New(o, src.load)
			src.gate = make(chan struct{})
			src.in = make(chan struct{}, 100)
			done := make(chan int)
			go func() { v, _ := c.Get(context.Background(), "k"); done <- v }()
			<-src.in // the load has read... and waits
			src.set("k", 2)
			if err := c.Invalidate(context.Background(), "k"); err != nil {
				t.Fatal(err)
			}
			close(src.gate)
			<-done
			src.mu.Lock()
			src.gate, src.in = nil, nil
			src.mu.Unlock()
			mustGet(t, c, "k", 2)
			if shared { // and another instance does not find the old value in Redis
				other := cache.New(o, src.load)
				mustGet(t, other, "k", 2)
			}
		})
	}
}

func TestBoundedSize(t *testing.T) {
	clk := newClock()
	src := newSource()
	o := clk.opts("bounded")
	o.MaxEntries = 100
	c := cache.New(o, src.load)
	for i := range 1000 {
		mustGet(t, c, fmt.Sprint(i), 0)
	}
	n := 0
	for i := range 1000 {
		if _, ok := c.Peek(fmt.Sprint(i)); ok {
			n++
		}
	}
	if n > 100 || n == 0 {
		t.Errorf("%d entries kept, bound 100", n)
	}
}

// Two instances on one Redis: a value one loaded the other reads without
// loading; an invalidation on one reaches the other's local copy.
func TestSharedAcrossInstances(t *testing.T) {
	rdb, prefix := redistest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	shA, shB := cache.NewShared(rdb, prefix, nil), cache.NewShared(rdb, prefix, nil)
	for _, sh := range []*cache.Shared{shA, shB} {
		if err := sh.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	src := newSource()
	src.set("k", 1)
	o := cache.Options{Name: "inst", TTL: time.Minute, Stale: time.Minute, LocalTTL: time.Minute}
	oa, ob := o, o
	oa.Shared, ob.Shared = shA, shB
	a, b := cache.New(oa, src.load), cache.New(ob, src.load)
	mustGet(t, a, "k", 1)
	mustGet(t, b, "k", 1)
	if got := src.calls.Load(); got != 1 {
		t.Fatalf("two instances loaded %d times, want once (the second reads Redis)", got)
	}
	src.set("k", 2)
	if err := a.Invalidate(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := b.Peek("k"); return !ok }, "B's local copy to be dropped by pub/sub")
	mustGet(t, b, "k", 2)
	mustGet(t, a, "k", 2)
	if got := src.calls.Load(); got != 2 {
		t.Fatalf("%d loads after the invalidation, want 2", got)
	}
}

func TestSharedPublishReachesEveryInstance(t *testing.T) {
	rdb, prefix := redistest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	got := make(chan string, 2)
	for range 2 {
		sh := cache.NewShared(rdb, prefix, nil)
		sh.Subscribe("notices", func(p string) { got <- p })
		if err := sh.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := cache.NewShared(rdb, prefix, nil).Publish(ctx, "notices", "x"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if p := <-got; p != "x" {
			t.Fatalf("payload %q", p)
		}
	}
}

// An instance is not told of its own events: it has acted on them already.
func TestSharedPublishSkipsThePublisher(t *testing.T) {
	rdb, prefix := redistest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	got := make(chan string, 4)
	pub, other := cache.NewShared(rdb, prefix, nil), cache.NewShared(rdb, prefix, nil)
	pub.Subscribe("notices", func(p string) { got <- "publisher " + p })
	other.Subscribe("notices", func(p string) { got <- "other " + p })
	for _, sh := range []*cache.Shared{pub, other} {
		if err := sh.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"1", "2"} {
		if err := pub.Publish(ctx, "notices", p); err != nil {
			t.Fatal(err)
		}
	}
	// Events arrive in order: once the other instance has the second, the
	// publisher would have had the first.
	for _, want := range []string{"other 1", "other 2"} {
		if p := <-got; p != want {
			t.Fatalf("got %q, want %q", p, want)
		}
	}
	select {
	case p := <-got:
		t.Fatalf("the publisher heard its own event: %q", p)
	default:
	}
}

func newShared(t *testing.T) *cache.Shared {
	rdb, prefix := redistest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sh := cache.NewShared(rdb, prefix, nil)
	if err := sh.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return sh
}

// waitFor waits for something another goroutine does; it fails only after
// a generous minute, so it never races the machine's load.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// With Redis unreachable, reads fall back to the loader (the database), and
// an invalidation reports the failure to its caller.
func TestSharedDownFallsBackToTheLoader(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	src := newSource()
	src.set("k", 5)
	c := cache.New(cache.Options{Name: "down", TTL: time.Minute, Shared: cache.NewShared(rdb, "x:", nil)}, src.load)
	mustGet(t, c, "k", 5)
	mustGet(t, c, "k", 5)
	if got := src.calls.Load(); got != 2 {
		t.Errorf("%d loads, want every read to load while Redis is down (no local copy to trust)", got)
	}
	if err := c.Invalidate(context.Background(), "k"); err == nil {
		t.Error("an invalidation that could not reach Redis reported no error")
	}
}

// countHook counts the commands a Redis client tries to send.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// After Redis failed once, the calls that follow do not ask it again for a
// moment: a hanging Redis costs one request its timeout, not every ledger
// batch (which invalidates before it answers).
func TestSharedFailureIsNotAskedAgainAtOnce(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	hook := &countHook{}
	rdb.AddHook(hook)
	src := newSource()
	src.set("k", 5)
	c := cache.New(cache.Options{Name: "breaker", TTL: time.Minute, Shared: cache.NewShared(rdb, "x:", nil)}, src.load)
	mustGet(t, c, "k", 5)
	tried := hook.n.Load()
	if tried == 0 {
		t.Fatal("the first read did not try Redis")
	}
	mustGet(t, c, "k", 5)
	if err := c.Invalidate(context.Background(), "k"); err == nil {
		t.Error("a skipped invalidation reported no error")
	}
	if got := hook.n.Load(); got != tried {
		t.Errorf("Redis was asked %d more times right after it failed", got-tried)
	}
}

// Invalidating keys nobody reads (the members a surge of earns touches)
// must not push out the entries everybody reads.
func TestInvalidatingUncachedKeysKeepsTheCachedOnes(t *testing.T) {
	src := newSource()
	c := cache.New(cache.Options{Name: "room", TTL: time.Minute, MaxEntries: 10}, src.load)
	for i := range 5 {
		src.set(fmt.Sprint("hot", i), i)
		mustGet(t, c, fmt.Sprint("hot", i), i)
	}
	for i := range 100 {
		if err := c.Invalidate(context.Background(), fmt.Sprint("cold", i)); err != nil {
			t.Fatal(err)
		}
	}
	before := src.calls.Load()
	for i := range 5 {
		mustGet(t, c, fmt.Sprint("hot", i), i)
	}
	if got := src.calls.Load() - before; got != 0 {
		t.Errorf("%d of the 5 hot entries were pushed out by invalidations of keys never cached", got)
	}
}
