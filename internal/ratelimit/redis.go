package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcraScript is gcra on Redis, atomic because a script runs alone. The
// clock is Redis's own (TIME), so instances whose clocks disagree still
// share one bucket fairly. Times are integer microseconds, formatted with
// %.0f because Lua's tostring would round them to 14 digits.
//
// KEYS[1] the bucket; ARGV[1] the interval between requests (µs); ARGV[2]
// the burst. Returns {allowed, remaining, retry_after_µs, reset_after_µs}.
var gcraScript = redis.NewScript(`
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
local nxt = tat + interval
local allow_at = nxt - burst * interval
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / interval), 0, nxt - now}
`)

// Redis shares buckets between instances through Redis. When Redis cannot
// answer, it decides with a local limiter instead and says so (the error,
// a log line at most every 10 s, OnFallback): requests are never failed
// because Redis is down. Each instance then limits on its own, so together
// they let through up to N times a limit until Redis is back.
type Redis struct {
	client  *redis.Client
	prefix  string
	local   *Local
	log     *slog.Logger
	timeout time.Duration
	// OnFallback, when set, is called once per decision made locally
	// because Redis failed (a metric).
	OnFallback func()

	downUntil atomic.Int64 // unix ns: after a failure, Redis is left alone until then
	lastLog   atomic.Int64
}

// RedisConfig sets up a Redis limiter.
type RedisConfig struct {
	Prefix string // every key starts with it, so that servers can share a Redis
	// Timeout bounds one decision's round trip; past it the local limiter
	// decides. 0: 50 ms.
	Timeout time.Duration
	Logger  *slog.Logger
}

// NewRedis makes a limiter on client.
func NewRedis(client *redis.Client, cfg RedisConfig) *Redis {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Redis{client: client, prefix: cfg.Prefix, local: NewLocal(nil), log: cfg.Logger, timeout: cfg.Timeout}
}

// retryRedisAfter is how long after a failure the limiter decides locally
// without asking Redis: a Redis that is down must not cost every request
// a timeout.
const retryRedisAfter = time.Second

// Allow implements Limiter.
func (b *Redis) Allow(ctx context.Context, key string, l Limit) (Decision, error) {
	if l.Unlimited() {
		return Decision{Allowed: true}, nil
	}
	now := time.Now()
	if now.UnixNano() < b.downUntil.Load() {
		return b.fallback(ctx, key, l, nil)
	}
	interval := max(1, int64(float64(time.Second/time.Microsecond)/l.PerSecond))
	burst := l.burst()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
	defer cancel()
	res, err := gcraScript.Run(rctx, b.client, []string{b.prefix + key}, interval, burst).Int64Slice()
	if err != nil || len(res) != 4 {
		if err == nil {
			err = fmt.Errorf("unexpected reply %v", res)
		}
		b.downUntil.Store(now.Add(retryRedisAfter).UnixNano())
		return b.fallback(ctx, key, l, err)
	}
	return Decision{Allowed: res[0] == 1, Limit: burst, Remaining: int(res[1]),
		RetryAfter: time.Duration(res[2]) * time.Microsecond, ResetAfter: time.Duration(res[3]) * time.Microsecond}, nil
}

func (b *Redis) fallback(ctx context.Context, key string, l Limit, err error) (Decision, error) {
	if b.OnFallback != nil {
		b.OnFallback()
	}
	if err != nil {
		now := time.Now().UnixNano()
		if last := b.lastLog.Load(); now-last > int64(10*time.Second) && b.lastLog.CompareAndSwap(last, now) {
			b.log.Warn("rate limits: Redis did not answer; limiting in this instance only until it does", "err", err)
		}
	} else {
		err = errRedisDown
	}
	d, _ := b.local.Allow(ctx, key, l)
	return d, err
}

var errRedisDown = fmt.Errorf("ratelimit: Redis failed less than %s ago; decided locally", retryRedisAfter)
