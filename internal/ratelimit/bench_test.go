package ratelimit

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkLocalAllow is what the in-process limiter adds to a request.
func BenchmarkLocalAllow(b *testing.B) {
	l := NewLocal(nil)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "key:" + strconv.Itoa(i)
	}
	lim := Limit{PerSecond: 1e9, Burst: 1e9}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_, _ = l.Allow(context.Background(), keys[i%len(keys)], lim)
			i++
		}
	})
}

// BenchmarkRedisAllow is one decision through the test Redis (a round trip).
func BenchmarkRedisAllow(b *testing.B) {
	c := testRedis(b)
	l := NewRedis(c, RedisConfig{Prefix: randomPrefix()})
	lim := Limit{PerSecond: 1e6, Burst: 1e6}
	b.Cleanup(func() { c.Del(context.Background(), l.prefix+"k") })
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.Allow(context.Background(), "k", lim); err != nil {
			b.Fatal(err)
		}
	}
}
