package main

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/admission"
	"github.com/pointd/pointd/internal/api"
	"github.com/pointd/pointd/internal/metrics"
)

// TestLedgerWritesFollowTheWritersPace: with admission control on, the
// writer's batches reach the ledger_write limit (Little's law: the target ÷
// the time per operation); with it off, the writer has only the metrics to
// tell, or nothing at all.
func TestLedgerWritesFollowTheWritersPace(t *testing.T) {
	o := overloadFlags{admission: true, target: 50 * time.Millisecond, queue: 32, wait: 5 * time.Millisecond,
		poll: 30 * time.Second}
	obs := o.observer(nil) // metrics off
	var cfg api.Config
	o.apply(&cfg, 4096, 256, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	limit := func() int { return cfg.Admission.Limiter(admission.LedgerWrite).Stats().Limit }
	if got := limit(); got != 256 {
		t.Fatalf("ledger_write limit %d before any batch, want one full batch, 256", got)
	}
	// Batches of 200 taking 20 ms (or less, since one ended): at most
	// 100 µs per operation, so a limit of at least 50 ms ÷ 100 µs = 500.
	for range 100 {
		obs.Batch(200, 20*time.Millisecond, nil)
	}
	tok, err := cfg.Admission.Acquire(t.Context(), admission.LedgerWrite) // the limit follows on acquire
	if err != nil {
		t.Fatal(err)
	}
	tok.Done(false)
	if got := limit(); got < 500 {
		t.Errorf("ledger_write limit %d after batches at a pace of at most 100 µs per operation, want at least 500", got)
	}

	off := overloadFlags{}
	if obs := off.observer(nil); obs != nil {
		t.Errorf("observer %v with neither metrics nor admission, want none", obs)
	}
	mt := metrics.New()
	if obs := off.observer(mt); obs != mt {
		t.Errorf("observer %v with metrics only, want the metrics", obs)
	}
}
