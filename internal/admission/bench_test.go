package admission

import (
	"context"
	"testing"
)

// BenchmarkAcquireDone is what admission adds to every admitted request.
func BenchmarkAcquireDone(b *testing.B) {
	l := NewLimiter(LimiterConfig{Initial: 1 << 20, Max: 1 << 20})
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t, err := l.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			t.Done(false)
		}
	})
}

// BenchmarkRefuse is what a refusal costs admission: a full class, no queue.
func BenchmarkRefuse(b *testing.B) {
	l := NewLimiter(LimiterConfig{Initial: 1, Min: 1, Max: 1, Queue: 0})
	ctx := context.Background()
	held, _ := l.Acquire(ctx)
	defer held.Done(false)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Acquire(ctx); err != ErrOverloaded {
				b.Fatal(err)
			}
		}
	})
}
