package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pointd/pointd/internal/admission"
	"github.com/pointd/pointd/internal/api"
	"github.com/pointd/pointd/internal/metrics"
	"github.com/pointd/pointd/internal/ratelimit"
)

// overloadFlags are pointd serve's flags for overload: admission
// control, rate limits, and the Redis that shares limits between instances.
type overloadFlags struct {
	redisURL    string
	redisPrefix string

	keyRate  float64
	keyBurst int
	ipRate   float64
	ipBurst  int

	admission bool
	target    time.Duration
	queue     int
	wait      time.Duration
	poll      time.Duration
	fs        *flagSet
}

func (o *overloadFlags) register(fs *flagSet) {
	o.fs = fs
	fs.StringVar(&o.redisURL, "redis", "", "Redis URL (redis://host:6379/0) to share rate limits between instances; empty: limits in this process only")
	fs.StringVar(&o.redisPrefix, "redis-prefix", "pointd:", "start of every Redis key pointd writes, so that deployments can share one Redis")
	fs.Float64Var(&o.keyRate, "rate-limit-key", 1000, "requests per second a non-admin API key may send unless it has its own limit (0: no limit)")
	fs.IntVar(&o.keyBurst, "rate-limit-key-burst", 0, "requests a key without its own limit may send at once (0: one second's worth)")
	fs.Float64Var(&o.ipRate, "rate-limit-ip", 0, "requests per second one client address may send under /v1/ (0: no limit; behind a proxy, every client has the proxy's address)")
	fs.IntVar(&o.ipBurst, "rate-limit-ip-burst", 0, "requests one client address may send at once (0: one second's worth)")
	fs.BoolVar(&o.admission, "admission", true, "per-class concurrency limits, refusing the excess with 503: ledger writes follow the writer's measured pace, the other classes adapt to latency (false: none)")
	fs.DurationVar(&o.target, "admission-target", 50*time.Millisecond, "ledger writes: the writer time the limit lets in (target ÷ time per operation); other classes: mean latency above which the limit shrinks")
	fs.IntVar(&o.queue, "admission-queue", 32, "requests of a class that may wait for a free slot; more are refused at once")
	fs.DurationVar(&o.wait, "admission-wait", 5*time.Millisecond, "how long a request waits for a free slot at most")
	fs.DurationVar(&o.poll, "poll-interval", 30*time.Second, "Poll-Interval told to polling clients when calm (twice when busy, four times when refusing)")
}

func (o *overloadFlags) validate() error {
	bad := o.fs.bad
	switch {
	case o.redisURL != "" && !strings.HasPrefix(o.redisURL, "redis://") && !strings.HasPrefix(o.redisURL, "rediss://"):
		return bad("redis", "must be a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379/0")
	case len(o.redisPrefix) > 100:
		return bad("redis-prefix", "must be at most 100 bytes")
	case o.keyRate < 0 || o.keyRate > 1e6:
		return bad("rate-limit-key", "must be from 0 (no limit) to 1000000")
	case o.ipRate < 0 || o.ipRate > 1e6:
		return bad("rate-limit-ip", "must be from 0 (no limit) to 1000000")
	case o.keyBurst < 0 || o.keyBurst > 1e6:
		return bad("rate-limit-key-burst", "must be from 0 (one second's worth) to 1000000")
	case o.ipBurst < 0 || o.ipBurst > 1e6:
		return bad("rate-limit-ip-burst", "must be from 0 (one second's worth) to 1000000")
	case o.target < time.Millisecond:
		return bad("admission-target", "must be at least 1ms")
	case o.queue < 0 || o.queue > 100_000:
		return bad("admission-queue", "must be from 0 to 100000")
	case o.wait < 0 || o.wait > time.Second:
		return bad("admission-wait", "must be from 0 to 1s: waiting is for bursts, not for overload")
	case o.poll < time.Second || o.poll > time.Hour:
		return bad("poll-interval", "must be from 1s to 1h")
	}
	return nil
}

// apply sets cfg's overload parts from the flags; writerPace is the ledger
// writer's time per operation (ledger.Writer.PerOp), rc the server's Redis
// (nil without --redis).
func (o *overloadFlags) apply(cfg *api.Config, writeQueue, batchMax int, writerPace func() time.Duration, rc *redis.Client, mt *metrics.Metrics, log *slog.Logger, stdout io.Writer) {
	if o.admission {
		lc := func(minLimit, initial, maxLimit int) admission.LimiterConfig {
			c := admission.DefaultLimiterConfig()
			c.Min, c.Initial, c.Max, c.Queue, c.MaxWait, c.Target = minLimit, initial, maxLimit, o.queue, o.wait, o.target
			return c
		}
		// Ledger writes: as many as the writer finishes within the target
		// at the pace it is measured to go (Little's law; see
		// ledger.Pace), up to its queue and never below one full batch:
		// the pace measured while the writer is half idle is that of small
		// batches, each paying a commit for few operations, and a limit
		// under one batch refused bursts the writer would have taken in
		// one transaction (measured: refusals at a third of capacity).
		// Not the latency gradient of the other classes: on a machine
		// short of CPU every latency rises whatever the limit, the
		// gradient shrinks it, batches shrink with it and so does the
		// writer's throughput (measured: goodput 9 % of capacity at 3×).
		floor := min(batchMax, writeQueue)
		ledgerWrite := lc(floor, max(floor, 128), max(128, writeQueue))
		ledgerWrite.ServiceTime = writerPace
		cfg.Admission = admission.New(admission.Config{PollInterval: o.poll, Classes: map[admission.Class]admission.LimiterConfig{
			admission.LedgerWrite: ledgerWrite,
			// Database reads wait for a fixed pool: a few times the pool
			// keeps it busy.
			admission.DBRead:     lc(8, 64, 1024),
			admission.CachedRead: lc(64, 256, 8192),
		}})
	}
	cfg.PollInterval = o.poll
	cfg.KeyRate = ratelimit.Limit{PerSecond: o.keyRate, Burst: o.keyBurst}
	cfg.IPRate = ratelimit.Limit{PerSecond: o.ipRate, Burst: o.ipBurst}
	if rc == nil {
		cfg.RateLimiter = ratelimit.NewLocal(nil)
		fmt.Fprintf(stdout, "rate limits: in this process (--redis to share them between instances)\n")
		return
	}
	rl := ratelimit.NewRedis(rc, ratelimit.RedisConfig{Prefix: o.redisPrefix + "rl:", Logger: log})
	rl.OnFallback = mt.RateLimitFallback
	cfg.RateLimiter = rl
	fmt.Fprintf(stdout, "rate limits and caches: shared through Redis %s\n", redactURL(o.redisURL))
}

// openRedis makes the one Redis client of a server (shared caches and rate
// limits). A Redis that does not answer is logged, not fatal: every use of
// Redis has a fallback (the database for the caches, this process for the
// limits), and an instance restarted during a Redis outage must still
// serve. Timeouts are short: a slow Redis must cost a request milliseconds,
// not seconds.
func openRedis(ctx context.Context, url string, log *slog.Logger) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("--redis: %v", err)
	}
	opt.DialTimeout = 500 * time.Millisecond
	opt.ReadTimeout = 200 * time.Millisecond
	opt.WriteTimeout = 200 * time.Millisecond
	opt.MaxRetries = 1
	opt.PoolSize = max(opt.PoolSize, 32)
	rdb := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		log.Warn("Redis does not answer: caches read the database and rate limits stay in this process until it does",
			"redis", redactURL(url), "err", err)
	}
	return rdb, nil
}
