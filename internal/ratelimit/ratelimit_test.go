package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// count asks n times at once (no time passing) and counts what passes.
func count(t *testing.T, l Limiter, key string, lim Limit, n int) (allowed int, last Decision) {
	t.Helper()
	for range n {
		d, err := l.Allow(context.Background(), key, lim)
		if err != nil {
			t.Fatalf("Allow: %v", err)
		}
		if d.Allowed {
			allowed++
		}
		last = d
	}
	return allowed, last
}

func TestLocalAccounting(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	l := NewLocal(clk.Now)
	lim := Limit{PerSecond: 10, Burst: 5}

	t.Run("a fresh bucket lets exactly the burst through", func(t *testing.T) {
		got, last := count(t, l, "k", lim, 20)
		if got != 5 {
			t.Fatalf("%d allowed, want 5", got)
		}
		if last.Allowed || last.Limit != 5 || last.Remaining != 0 || last.RetryAfter != 100*time.Millisecond {
			t.Errorf("the refusal: %+v, want limit 5, nothing remaining, retry after 100ms", last)
		}
	})
	t.Run("then one per interval", func(t *testing.T) {
		clk.Add(100 * time.Millisecond)
		if got, _ := count(t, l, "k", lim, 3); got != 1 {
			t.Fatalf("%d allowed 100 ms later, want 1", got)
		}
		clk.Add(350 * time.Millisecond)
		if got, _ := count(t, l, "k", lim, 10); got != 3 {
			t.Fatalf("%d allowed 350 ms later, want 3", got)
		}
	})
	t.Run("exactly rate × seconds + burst over a window", func(t *testing.T) {
		allowed := 0
		for range 1000 { // 10 s in steps of 10 ms, asking 3 times per step
			clk.Add(10 * time.Millisecond)
			got, _ := count(t, l, "w", lim, 3)
			allowed += got
		}
		if allowed != 100+5-1 { // the first step's 10 ms also refilled nothing new: the bucket starts full
			t.Errorf("%d allowed in 10 s at 10/s with a burst of 5, want 104", allowed)
		}
	})
	t.Run("the remaining count and reset", func(t *testing.T) {
		d, _ := l.Allow(context.Background(), "fresh", lim)
		if !d.Allowed || d.Remaining != 4 || d.ResetAfter != 100*time.Millisecond {
			t.Errorf("first request: %+v, want allowed, 4 remaining, full again in 100ms", d)
		}
	})
	t.Run("buckets are separate", func(t *testing.T) {
		if got, _ := count(t, l, "other", lim, 7); got != 5 {
			t.Errorf("%d allowed on another key, want 5", got)
		}
	})
	t.Run("an unlimited limit lets everything through", func(t *testing.T) {
		if got, _ := count(t, l, "k", Limit{}, 50); got != 50 {
			t.Errorf("%d allowed, want 50", got)
		}
	})
	t.Run("the burst defaults to one second's worth", func(t *testing.T) {
		if got, _ := count(t, l, "d", Limit{PerSecond: 3}, 10); got != 3 {
			t.Errorf("%d allowed, want 3", got)
		}
		if got, _ := count(t, l, "e", Limit{PerSecond: 0.5}, 10); got != 1 {
			t.Errorf("%d allowed, want 1", got)
		}
	})
}

// testRedis connects to the test Redis and fails (never skips) without it.
func testRedis(t testing.TB) *redis.Client {
	t.Helper()
	url := os.Getenv("POINTD_TEST_REDIS")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("POINTD_TEST_REDIS %q: %v", url, err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis at %s is unreachable (set POINTD_TEST_REDIS or run scripts/test, which starts it): %v", url, err)
	}
	return c
}

func randomPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "pointd-test-" + hex.EncodeToString(b) + ":"
}

func TestRedisAccounting(t *testing.T) {
	c := testRedis(t)
	prefix := randomPrefix()
	t.Cleanup(func() {
		keys, _ := c.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(context.Background(), keys...)
		}
	})
	a := NewRedis(c, RedisConfig{Prefix: prefix})
	b := NewRedis(c, RedisConfig{Prefix: prefix}) // another instance
	// One request per 100 s: nothing refills while the test runs.
	lim := Limit{PerSecond: 0.01, Burst: 10}

	t.Run("two instances share one bucket: exactly the burst passes in all", func(t *testing.T) {
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for i := range 8 {
			l := Limiter(a)
			if i%2 == 1 {
				l = b
			}
			wg.Go(func() {
				for range 10 {
					d, err := l.Allow(context.Background(), "key:1", lim)
					if err != nil {
						t.Errorf("Allow: %v", err)
						return
					}
					if d.Allowed {
						allowed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if got := allowed.Load(); got != 10 {
			t.Fatalf("%d allowed of 80 asked on two instances, want exactly the burst of 10", got)
		}
	})
	t.Run("a refusal says when to come back", func(t *testing.T) {
		d, err := a.Allow(context.Background(), "key:1", lim)
		if err != nil || d.Allowed || d.Remaining != 0 || d.RetryAfter < 90*time.Second || d.RetryAfter > 100*time.Second {
			t.Errorf("%+v %v, want refused, retry in about 100 s", d, err)
		}
	})
	t.Run("a fresh bucket counts down", func(t *testing.T) {
		d, err := a.Allow(context.Background(), "key:2", lim)
		if err != nil || !d.Allowed || d.Remaining != 9 || d.Limit != 10 {
			t.Errorf("%+v %v, want allowed with 9 of 10 remaining", d, err)
		}
	})
	t.Run("the bucket is one key under the prefix, expiring", func(t *testing.T) {
		ttl, err := c.PTTL(context.Background(), prefix+"key:2").Result()
		if err != nil || ttl <= 0 || ttl > 101*time.Second {
			t.Errorf("TTL %s %v, want the time until the bucket is full (≤ 100 s)", ttl, err)
		}
	})
}

func TestRedisDownFallsBackToLocal(t *testing.T) {
	// A port nothing listens on: every call fails at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	var fallbacks atomic.Int64
	l := NewRedis(c, RedisConfig{Prefix: randomPrefix()})
	l.OnFallback = func() { fallbacks.Add(1) }
	lim := Limit{PerSecond: 0.01, Burst: 3}
	allowed := 0
	for range 10 {
		d, err := l.Allow(context.Background(), "k", lim)
		if err == nil {
			t.Fatal("no error with Redis down")
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("%d allowed with Redis down, want the burst of 3 (limited locally)", allowed)
	}
	if fallbacks.Load() != 10 {
		t.Errorf("%d fallbacks counted, want 10", fallbacks.Load())
	}
}
