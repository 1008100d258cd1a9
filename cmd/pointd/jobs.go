package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/pointd/pointd/internal/alert"
	"github.com/pointd/pointd/internal/ledger"
)

// watchOverdueHolds feeds the HoldExpiryBehind alert: holds still active two
// expiry intervals after their timeout mean the expiry run is not keeping up.
func watchOverdueHolds(ctx context.Context, store ledger.Store, e *alert.Engine, expiryEvery time.Duration) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if ids, err := store.DueHolds(ctx, time.Now().Add(-2*expiryEvery), 1000); err == nil {
			e.SetGauge(alert.HoldsOverdue, float64(len(ids)))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// verifyPeriodically feeds the LedgerVerifyFailed alert.
func verifyPeriodically(ctx context.Context, store ledger.Store, e *alert.Engine, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rep, err := ledger.VerifyStore(ctx, store)
		if err != nil {
			log.Warn("scheduled verify", "err", err)
			continue
		}
		e.SetVerifySound(rep.Sound())
		if !rep.Sound() {
			log.Error("scheduled verify: the ledger is NOT sound; run pointd verify", "discrepancies", len(rep.Discrepancies)+rep.Truncated)
		}
	}
}
