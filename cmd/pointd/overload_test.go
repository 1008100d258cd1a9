package main

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/admission"
	"github.com/pointd/pointd/internal/api"
)

// TestLedgerWritesFollowTheWritersPace: with admission control on, the
// ledger_write limit follows the writer's pace (Little's law: the target ÷
// the time per operation), and is one full batch before any batch.
func TestLedgerWritesFollowTheWritersPace(t *testing.T) {
	o := overloadFlags{admission: true, target: 50 * time.Millisecond, queue: 32, wait: 5 * time.Millisecond,
		poll: 30 * time.Second}
	var perOp time.Duration // the writer's PerOp: 0 until its first batch
	var cfg api.Config
	o.apply(&cfg, 4096, 256, func() time.Duration { return perOp }, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	limit := func() int {
		tok, err := cfg.Admission.Acquire(t.Context(), admission.LedgerWrite) // the limit follows on acquire
		if err != nil {
			t.Fatal(err)
		}
		tok.Done(false)
		return cfg.Admission.Limiter(admission.LedgerWrite).Stats().Limit
	}
	if got := limit(); got != 256 {
		t.Fatalf("ledger_write limit %d before any batch, want one full batch, 256", got)
	}
	perOp = 100 * time.Microsecond
	if got := limit(); got != 500 {
		t.Errorf("ledger_write limit %d at 100 µs per operation, want 50 ms ÷ 100 µs = 500", got)
	}
	perOp = time.Millisecond
	if got := limit(); got != 256 {
		t.Errorf("ledger_write limit %d at 1 ms per operation, want the floor of one full batch, 256", got)
	}
}
