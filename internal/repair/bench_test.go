package repair_test

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/repair"
	"github.com/pointd/pointd/internal/sqlite"
	"github.com/pointd/pointd/internal/storetest"
)

// BenchmarkIncidentSQLite lists a window of 100,000 earns on SQLite, in
// text, and reports the largest heap seen while listing: it stays small
// however large the window, since both reads stream.
//
//	go test -run '^$' -bench Incident ./internal/repair/
func BenchmarkIncidentSQLite(b *testing.B) {
	const earns, members = 100_000, 1000
	ctx := context.Background()
	d, err := sqlite.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	clock := storetest.NewClock(base)
	w := ledger.NewWriter(d, ledger.WriterConfig{Now: clock.Now, QueueSize: 8192, MaxBatch: 1000})
	m := ledger.Merchant{ID: ledger.NewID(), EarnRateBP: 500, PointValidityDays: 365, Status: "active"}
	must(b, d.CreateMerchant(ctx, &m))
	shop := ledger.Shop{ID: ledger.NewID(), MerchantID: m.ID}
	must(b, d.CreateStore(ctx, shop))
	ids := make([]string, members)
	for i := range ids {
		mb := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Status: "active"}
		must(b, d.CreateMember(ctx, &mb))
		ids[i] = mb.ID
	}
	var wg sync.WaitGroup
	const workers = 64
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < earns; i += workers {
				amount := int64(1000 + i%500)
				if i%1000 == 0 {
					clock.Advance(time.Second)
				}
				_, err := w.Submit(ctx, ledger.Op{Kind: ledger.OpEarn, Actor: ledger.Actor{KeyID: "bench"},
					IdempotencyKey: fmt.Sprint(i), MemberID: ids[i%members], StoreID: shop.ID,
					Receipt: fmt.Sprint("r", i), PurchaseAmount: &amount})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	w.Close()
	q := repair.IncidentQuery{From: base, To: base.Add(24 * time.Hour)}
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
		var cw countWriter
		s, err := repair.WriteIncident(ctx, d, q, &cw, false)
		if err != nil {
			b.Fatal(err)
		}
		if s.Count != earns || cw.lines < earns {
			b.Fatalf("listed %d operations in %d lines", s.Count, cw.lines)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(peakHeap)/(1<<20), "MiB-peak-heap")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/earns, "ns/txn")
}

var peakHeap uint64

// countWriter counts lines, and samples the heap every 10,000 of them.
type countWriter struct{ lines, sampled int }

func (c *countWriter) Write(p []byte) (int, error) {
	c.lines += strings.Count(string(p), "\n")
	if c.lines-c.sampled >= 10_000 {
		c.sampled = c.lines
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peakHeap = max(peakHeap, ms.HeapAlloc)
	}
	return len(p), nil
}

var _ io.Writer = (*countWriter)(nil)
