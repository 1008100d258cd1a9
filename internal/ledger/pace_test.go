package ledger

import (
	"errors"
	"testing"
	"time"
)

// clock is a clock the test moves.
type clock struct{ t time.Time }

func newClock() *clock               { return &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time      { return c.t }
func (c *clock) Add(d time.Duration) { c.t = c.t.Add(d) }

// TestPace: the time per operation is each batch's own duration when the
// writer was busy or idle before it, and the time between completions when
// batches overlap (two batch loops, each waiting in the database for the
// other's commit): counting each overlapping batch's own duration would
// count that wait twice, and Submit would refuse earns the writer had time
// for (bench/README.md, overload, P3).
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
			clk.Add(tc.every)
			p.Batch(tc.n, tc.took, nil)
			if got, first := p.PerOp(), tc.took/time.Duration(tc.n); got != first {
				t.Fatalf("PerOp %s after the first batch, want its own %s", got, first)
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
	none.Batch(1, time.Second, nil)
	if none.PerOp() != 0 {
		t.Error("a nil Pace has a pace")
	}
}
