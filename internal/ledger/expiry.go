package ledger

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// ExpiryStats counts what one expiry pass did.
type ExpiryStats struct {
	LotMembers int // members whose due lots were expired
	Holds      int // holds released after their timeout
	Failed     int
}

// ExpireDue runs one expiry pass: it posts what is left of every due lot and
// releases every hold past its timeout, through the writer like any other
// operation (so they batch, and are idempotent by the state they find: a
// second pass over the same due rows changes nothing).
func ExpireDue(ctx context.Context, store Store, w *Writer, now time.Time) (ExpiryStats, error) {
	var st ExpiryStats
	const page = 1000
	var mu sync.Mutex
	run := func(ops []Op, counter *int) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64) // enough in flight to fill batches
		for _, op := range ops {
			wg.Add(1)
			sem <- struct{}{}
			go func(op Op) {
				defer wg.Done()
				defer func() { <-sem }()
				res, err := w.Submit(ctx, op)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					st.Failed++
				case res.Transaction != nil:
					*counter++
				}
			}(op)
		}
		wg.Wait()
	}
	// Each list is read again until a pass makes no progress, whatever a
	// store keeps listing.
	drain := func(list func(context.Context, time.Time, int) ([]string, error), op func(string) Op, counter *int) error {
		for {
			ids, err := list(ctx, now, page)
			if err != nil {
				return err
			}
			ops := make([]Op, len(ids))
			for i, id := range ids {
				ops[i] = op(id)
			}
			before := *counter
			run(ops, counter)
			if len(ids) < page || *counter == before {
				return nil
			}
		}
	}
	if err := drain(store.DueHolds, func(id string) Op { return Op{Kind: OpExpireHold, HoldID: id} }, &st.Holds); err != nil {
		return st, fmt.Errorf("list due holds: %w", err)
	}
	if err := drain(store.DueLotMembers, func(id string) Op { return Op{Kind: OpExpireLots, MemberID: id} }, &st.LotMembers); err != nil {
		return st, fmt.Errorf("list due lots: %w", err)
	}
	if st.Failed > 0 {
		return st, fmt.Errorf("%d expiry operations failed; the next pass retries them", st.Failed)
	}
	return st, nil
}

// RunExpiry runs ExpireDue every interval until ctx ends.
func RunExpiry(ctx context.Context, store Store, w *Writer, interval time.Duration, now func() time.Time, report func(ExpiryStats, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st, err := ExpireDue(ctx, store, w, now())
			if report != nil {
				report(st, err)
			}
		}
	}
}
