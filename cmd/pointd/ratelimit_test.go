package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/postgres/pgtest"
)

// testRedisURL is the Redis of the tests; the test fails (never skips) when
// it does not answer.
func testRedisURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("POINTD_TEST_REDIS")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	c, err := openRedis(context.Background(), url, slog.Default())
	if err != nil {
		t.Fatalf("Redis is unreachable (set POINTD_TEST_REDIS or run scripts/test, which starts it): %v", err)
	}
	c.Close()
	return url
}

// TestSharedRateLimitAcrossTwoServers starts two `pointd serve` processes on
// one PostgreSQL schema and one Redis, and sends one key's requests to both:
// together they let through what the key's limit allows, not twice that.
func TestSharedRateLimitAcrossTwoServers(t *testing.T) {
	bin := buildPointd(t)
	dsn := pgtest.DSN(t)
	url := testRedisURL(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "pointd-test-" + hex.EncodeToString(b) + ":"
	// The environment form of --redis and --redis-prefix, read by serve.
	t.Setenv("POINTD_REDIS", url)
	t.Setenv("POINTD_REDIS_PREFIX", prefix)
	t.Cleanup(func() {
		c, err := openRedis(context.Background(), url, slog.Default())
		if err != nil {
			return
		}
		defer c.Close()
		if keys, _ := c.Keys(context.Background(), prefix+"*").Result(); len(keys) > 0 {
			c.Del(context.Background(), keys...)
		}
	})

	one := newServerProc(t, bin, []string{"--db", dsn, "--data-key", testDataKey})
	admin := one.adminKey()
	one.start()
	two := newServerProc(t, bin, []string{"--db", dsn, "--data-key", testDataKey})
	two.start()

	c1, c2 := newAPIClient(one.addr, 8), newAPIClient(two.addr, 8)
	var fx struct {
		ID string `json:"id"`
	}
	c1.mustCreate(t, "/v1/merchants", admin, "m-"+prefix, map[string]any{"name": "Shared", "earn_rate_bp": 100}, &fx)
	var key struct {
		Key string `json:"key"`
	}
	const perSecond, burst = 1, 20
	c1.mustCreate(t, "/v1/keys", admin, "k-"+prefix, map[string]any{"role": "pos", "merchant_id": fx.ID,
		"rate_limit_per_second": perSecond, "rate_limit_burst": burst}, &key)

	var allowed, limited atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range []*apiClient{c1, c2, c1, c2} {
		wg.Go(func() {
			for range 15 {
				st, h, body, err := c.do(context.Background(), http.MethodPost, "/v1/ping", key.Key, "", []byte(`{}`))
				switch {
				case err != nil:
					t.Errorf("client %d: %v", i, err)
					return
				case st == http.StatusOK:
					allowed.Add(1)
				case st == http.StatusTooManyRequests:
					limited.Add(1)
					if h.Get("Retry-After") == "" || !strings.Contains(string(body), `"rate_limited"`) {
						t.Errorf("429 without Retry-After or code: %s", body)
					}
				default:
					t.Errorf("client %d: HTTP %d %s", i, st, body)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	// The bucket refills one request per second while the requests run.
	most := int64(burst + perSecond*(int(elapsed.Seconds())+1))
	t.Logf("%d allowed, %d limited in %s, by two servers with one key of %d/s, burst %d", allowed.Load(), limited.Load(), elapsed, perSecond, burst)
	if got := allowed.Load(); got < burst || got > most {
		t.Errorf("%d requests allowed by the two servers together, want from %d to %d (the key's limit; "+
			"two unshared buckets would allow up to %d)", got, burst, most, 2*burst)
	}
	if allowed.Load()+limited.Load() != 60 {
		t.Errorf("%d answered, want 60", allowed.Load()+limited.Load())
	}
}

// TestRateLimitsSurviveRedisDown: a server whose Redis does not answer
// still serves every request, limiting in its own process, and counts it.
func TestRateLimitsSurviveRedisDown(t *testing.T) {
	bin := buildPointd(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	t.Setenv("POINTD_REDIS", "redis://"+dead+"/0")
	srv := newServerProc(t, bin, []string{"--data", t.TempDir()})
	admin := srv.adminKey()
	srv.start()
	c := newAPIClient(srv.addr, 4)
	// A key with a limit of its own: admin keys have no default limit.
	var limited struct {
		Key string `json:"key"`
	}
	c.mustCreate(t, "/v1/keys", admin, "limited-admin", map[string]any{"role": "admin", "rate_limit_per_second": 1000}, &limited)
	for i := range 20 {
		st, _, body, err := c.do(context.Background(), http.MethodPost, "/v1/ping", limited.Key, "", []byte(`{}`))
		if err != nil || st != http.StatusOK {
			t.Fatalf("request %d with Redis down: HTTP %d %v %s", i, st, err, body)
		}
	}
	st, _, body, err := c.do(context.Background(), http.MethodGet, "/metrics", "", "", nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("/metrics: %d %v", st, err)
	}
	var fallbacks float64
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "pointd_ratelimit_redis_fallbacks_total "); ok {
			_ = json.Unmarshal([]byte(v), &fallbacks)
		}
	}
	if fallbacks < 20 {
		t.Errorf("pointd_ratelimit_redis_fallbacks_total %v, want at least the 20 requests decided locally", fallbacks)
	}
	srv.stop()
}
