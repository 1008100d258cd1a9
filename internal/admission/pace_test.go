package admission

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		every time.Duration // between batch ends
		took  time.Duration // each batch's own duration
		n     int
		want  time.Duration
	}{
		// One loop, back to back: the batches' own time (the gaps are
		// the writer's own bookkeeping, not database work).
		{"one loop, busy", 22 * time.Millisecond, 20 * time.Millisecond, 100, 200 * time.Microsecond},
		// Two loops, each batch waiting in the database for the other's
		// commit: completions every 10 ms.
		{"two loops overlapping", 10 * time.Millisecond, 20 * time.Millisecond, 100, 100 * time.Microsecond},
		// Idle between small batches: the idle time is not the writer's pace.
		{"idle between batches", time.Second, time.Millisecond, 1, time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			p := NewPace(clk.Now)
			if got := p.PerOp(); got != 0 {
				t.Fatalf("PerOp %s before any batch, want 0", got)
			}
			for range 200 { // long enough for the first batch's weight to vanish
				clk.Add(tc.every)
				p.Batch(tc.n, tc.took, nil)
			}
			if got := p.PerOp(); got != tc.want {
				t.Errorf("PerOp %s, want %s", got, tc.want)
			}
		})
	}
}

func TestPaceFailedBatchesSlowIt(t *testing.T) {
	clk := newClock()
	p := NewPace(clk.Now)
	for range 20 {
		clk.Add(10 * time.Millisecond)
		p.Batch(100, 10*time.Millisecond, nil)
	}
	before := p.PerOp()
	for range 5 {
		clk.Add(10 * time.Millisecond)
		p.Batch(100, 10*time.Millisecond, errors.New("database gone"))
	}
	if after := p.PerOp(); after <= before {
		t.Errorf("PerOp %s after failed batches, want above %s: their time bought nothing", after, before)
	}
	var none *Pace
	none.Batch(1, time.Second, nil) // admission off: a nil Pace is fine
	if none.PerOp() != 0 {
		t.Error("a nil Pace has a pace")
	}
}

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
	p := NewPace(clk.Now)
	l := NewLimiter(LimiterConfig{Initial: 32, Min: 32, Max: 4096, Queue: 0, Target: 50 * time.Millisecond,
		Now: clk.Now, ServiceTime: p.PerOp})
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
		p.Batch(len(toks), took, nil)
		for _, tok := range toks {
			tok.Done(false)
		}
	}
	if got := l.Stats().Limit; got < 200 || got > 250 {
		t.Errorf("limit %d, want about 225", got)
	}
}
