package admission

import (
	"context"
	"testing"
	"time"
)

// TestLimiterFollowsThePace: with a ServiceTime the limit is Target ÷
// ServiceTime within Min and Max, and latency alone does not move it —
// on a machine short of CPU every request is slow, and shrinking a
// batching writer's limit only shrinks its batches.
func TestLimiterFollowsThePace(t *testing.T) {
	clk := newClock()
	perOp := time.Duration(0)
	l := NewLimiter(LimiterConfig{Initial: 64, Min: 16, Max: 1000, Queue: 0, Target: 50 * time.Millisecond,
		Window: 10, Now: clk.Now, ServiceTime: func() time.Duration { return perOp }})
	if got := run(t, l, clk, 100, 10, time.Millisecond); got != 64 {
		t.Errorf("limit %d with no pace measured yet, want the initial 64", got)
	}
	for _, tc := range []struct {
		perOp time.Duration
		want  int
	}{
		{100 * time.Microsecond, 500},
		{10 * time.Millisecond, 16},   // the floor
		{10 * time.Microsecond, 1000}, // the ceiling
		{250 * time.Microsecond, 200},
	} {
		perOp = tc.perOp
		if got := run(t, l, clk, 2000, 1000, 2*time.Second); got != tc.want {
			t.Errorf("limit %d at %s per operation and 2 s latencies, want %d", got, tc.perOp, tc.want)
		}
	}
}

// TestLimiterFollowingAWriterSettles simulates a batching writer (5 ms per
// commit plus 200 µs per operation) that takes everything let in as one
// batch: starting from the floor, the limit grows as batches grow, and
// settles where a batch takes about the target — (50 − 5) ms ÷ 200 µs =
// 225 — not at its floor.
func TestLimiterFollowingAWriterSettles(t *testing.T) {
	clk := newClock()
	var perOp time.Duration // the writer's pace: its last batch's time per operation
	l := NewLimiter(LimiterConfig{Initial: 32, Min: 32, Max: 4096, Queue: 0, Target: 50 * time.Millisecond,
		Now: clk.Now, ServiceTime: func() time.Duration { return perOp }})
	for range 100 {
		var toks []*Token
		for {
			tok, err := l.Acquire(context.Background())
			if err != nil {
				break
			}
			toks = append(toks, tok)
		}
		took := 5*time.Millisecond + time.Duration(len(toks))*200*time.Microsecond
		clk.Add(took)
		perOp = took / time.Duration(max(1, len(toks)))
		for _, tok := range toks {
			tok.Done(false)
		}
	}
	if got := l.Stats().Limit; got < 200 || got > 250 {
		t.Errorf("limit %d, want about 225", got)
	}
}
