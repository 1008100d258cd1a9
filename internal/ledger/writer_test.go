package ledger

import (
	"testing"
	"time"
)

// TestLearnCountsOverlapOnce: with two batch loops, a batch's duration
// includes its wait for the other loop's commit; the per-operation estimate
// (the expected wait Submit refuses on) must be the time between
// completions, not each batch's own duration.
func TestLearnCountsOverlapOnce(t *testing.T) {
	w := &Writer{}
	w.learn(20*time.Millisecond, 100) // the first batch: its own time, 200 µs an op
	if got := time.Duration(w.perOp.Load()); got != 200*time.Microsecond {
		t.Fatalf("per op %s after the first batch, want 200µs", got)
	}

	// Batches of 100 that each took 40 ms but ended 10 ms apart: 100 µs an
	// op (each one's own duration would say 400 µs). The margin allows the
	// test to be descheduled for 20 ms between two lines.
	w = &Writer{}
	for range 64 {
		w.learnMu.Lock()
		w.lastEnd = time.Now().Add(-10 * time.Millisecond)
		w.learnMu.Unlock()
		w.learn(40*time.Millisecond, 100)
	}
	if got := time.Duration(w.perOp.Load()); got < 90*time.Microsecond || got > 300*time.Microsecond {
		t.Errorf("per op %s for batches of 100 ending 10 ms apart, want about 100µs (not 400µs)", got)
	}

	// One loop, idle between batches: the batch's own time, not the gap.
	w = &Writer{}
	w.learnMu.Lock()
	w.lastEnd = time.Now().Add(-time.Second)
	w.learnMu.Unlock()
	w.learn(time.Millisecond, 10)
	if got := time.Duration(w.perOp.Load()); got != 100*time.Microsecond {
		t.Errorf("per op %s for a batch of 10 in 1 ms after a second idle, want 100µs", got)
	}
}
