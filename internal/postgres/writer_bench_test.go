package postgres

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pointd/pointd/internal/ledger"
)

// oneLoop hides WriteConcurrency: the writer then runs one batch loop.
type oneLoop struct{ ledger.Store }

// BenchmarkWriterEarns64 drives the real writer from 64 closed-loop callers
// (each waits for its answer before the next earn, as 64 POS clients do),
// over 1000 members, with the writer's one batch loop and with two (the
// next batch's BEGIN and loads sent while the current one commits). The two
// run alternately, three rounds, so that a busy machine weighs on both
// alike; compare earns/s within one run.
//
//	go test -run '^$' -bench WriterEarns64 -benchtime 20000x ./internal/postgres/
func BenchmarkWriterEarns64(b *testing.B) {
	ctx := context.Background()
	db := open(b)
	f := newFixture(b, db)
	members := make([]ledger.Member, 1000)
	for i := range members {
		members[i] = ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Status: "active", CreatedAt: t0}
		mustOK(b, db.CreateMember(ctx, &members[i]))
	}
	for range 3 {
		for _, c := range []struct {
			name  string
			store ledger.Store
		}{{"one_loop", oneLoop{db}}, {"two_loops", db}} {
			b.Run(c.name, func(b *testing.B) {
				w := ledger.NewWriter(c.store, ledger.WriterConfig{})
				defer w.Close()
				pos := ledger.Actor{KeyID: "pos", MerchantID: f.merchant.ID}
				amount := int64(1000)
				var next atomic.Int64
				run := ledger.NewID() // receipts of each run of its own
				var wg sync.WaitGroup
				b.ResetTimer()
				for range 64 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							_, err := w.Submit(ctx, ledger.Op{Kind: ledger.OpEarn, Actor: pos, IdempotencyKey: ledger.NewID(),
								MemberID: members[i%int64(len(members))].ID, StoreID: f.store.ID,
								Receipt: run + "-" + fmt.Sprint(i), PurchaseAmount: &amount})
							if err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "earns/s")
			})
		}
	}
}
