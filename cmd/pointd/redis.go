package main

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// openRedis connects to the Redis a --redis URL names (redis://, rediss://)
// and checks that it answers. (Issue 4: the read path's wiring; the
// admission-control work has one too, to be unified at merge.)
func openRedis(ctx context.Context, url string) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("--redis: %w", err)
	}
	// Short timeouts: a cache that waits longer than the database would
	// is no cache. A failed Redis read falls back to the database.
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 2*time.Second, 500*time.Millisecond, 500*time.Millisecond
	rdb := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("--redis: %s does not answer: %w", redactURL(url), err)
	}
	return rdb, nil
}
