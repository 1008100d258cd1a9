// Package redistest gives tests a Redis client and a key prefix of their
// own on the server POINTD_TEST_REDIS names (redis://127.0.0.1:6379/0 by
// default). A test that cannot reach Redis fails: it does not skip.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvURL names the environment variable that points tests at Redis.
const EnvURL = "POINTD_TEST_REDIS"

// DefaultURL is used when EnvURL is unset.
const DefaultURL = "redis://127.0.0.1:6379/0"

// New returns a client (closed when t ends) and a fresh prefix; the keys
// under the prefix are deleted when t ends.
func New(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	url := os.Getenv(EnvURL)
	if url == "" {
		url = DefaultURL
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("%s=%q: %v", EnvURL, url, err)
	}
	rdb := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		t.Fatalf("Redis at %s does not answer (start redis-server, or set %s): %v", url, EnvURL, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "pointdtest:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		rdb.Close()
	})
	return rdb, prefix
}
