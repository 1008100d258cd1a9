package sqlite

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// benchWorld is a merchant with one store and n members.
func benchWorld(b *testing.B, db *DB, n int) (ledger.Merchant, ledger.Shop, []ledger.Member) {
	b.Helper()
	ctx := context.Background()
	m := ledger.Merchant{ID: ledger.NewID(), Name: "M", EarnRateBP: 1000, PointValidityDays: 365, Status: "active", CreatedAt: base}
	if err := db.CreateMerchant(ctx, &m); err != nil {
		b.Fatal(err)
	}
	s := ledger.Shop{ID: ledger.NewID(), MerchantID: m.ID, Name: "S", CreatedAt: base}
	if err := db.CreateStore(ctx, s); err != nil {
		b.Fatal(err)
	}
	members := make([]ledger.Member, n)
	for i := range members {
		members[i] = ledger.Member{ID: ledger.NewID(), CardNumber: fmt.Sprintf("94100%011d", i), Status: "active", CreatedAt: base}
		if err := db.CreateMember(ctx, &members[i]); err != nil {
			b.Fatal(err)
		}
	}
	return m, s, members
}

// BenchmarkBatchOf100Earns is one batch of the writer as the engine runs it
// for 100 earns at one store: the loads, then the writes, then the commit
// (synchronous=FULL: one fsync per batch). ns/op is per batch.
func BenchmarkBatchOf100Earns(b *testing.B) {
	ctx := context.Background()
	db, err := Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const n = 100
	m, s, members := benchWorld(b, db, n)
	memberIDs := make([]string, n)
	acctIDs := []int64{ledger.AccountExpired, ledger.AccountAdjustments, m.IssuedAccount, m.RedeemedAccount}
	for i, mem := range members {
		memberIDs[i] = mem.ID
		acctIDs = append(acctIDs, mem.AccountID)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := db.Write(ctx, func(tx ledger.BatchTx) error {
			seq, hash, err := tx.Head(ctx)
			if err != nil {
				return err
			}
			keys := make([]ledger.IdemKey, n)
			receipts := make([]ledger.ReceiptKey, n)
			for j := range n {
				keys[j] = ledger.IdemKey{Scope: "pos", Key: fmt.Sprintf("k-%d-%d", i, j)}
				receipts[j] = ledger.ReceiptKey{MerchantID: m.ID, StoreID: s.ID, Receipt: fmt.Sprintf("r-%d-%d", i, j)}
			}
			if _, err := tx.Idempotency(ctx, keys); err != nil {
				return err
			}
			if _, err := tx.Transactions(ctx, nil); err != nil {
				return err
			}
			if _, err := tx.Members(ctx, memberIDs); err != nil {
				return err
			}
			if _, err := tx.Stores(ctx, []string{s.ID}); err != nil {
				return err
			}
			if _, err := tx.EarnedReceipts(ctx, receipts); err != nil {
				return err
			}
			if _, err := tx.Accounts(ctx, acctIDs); err != nil {
				return err
			}
			now := ledger.MicroTime(time.Now())
			ws := &ledger.WriteSet{}
			deltas := []ledger.AccountChange{{ID: m.IssuedAccount}}
			for j, mem := range members {
				seq++
				t := ledger.Transaction{ID: ledger.NewID(), Seq: seq, Type: ledger.TxEarn, MemberID: mem.ID, MerchantID: m.ID,
					StoreID: s.ID, Receipt: receipts[j].Receipt, PurchaseAmount: 1000, Points: 100, CreatedAt: now, PrevHash: hash,
					Postings: []ledger.Posting{{AccountID: m.IssuedAccount, Amount: -100}, {AccountID: mem.AccountID, Amount: 100}}}
				t.Hash = ledger.ChainHash(hash, &t)
				hash = t.Hash
				ws.Transactions = append(ws.Transactions, t)
				ws.NewLots = append(ws.NewLots, ledger.Lot{ID: t.ID, MemberID: mem.ID, Points: 100, Remaining: 100, ExpiresAt: now.Add(time.Hour)})
				ws.Idempotency = append(ws.Idempotency, ledger.IdemRecord{IdemKey: keys[j], RequestHash: hash, TxnID: t.ID,
					Response: make([]byte, 400), CreatedAt: now})
				deltas[0].BalanceDelta -= 100
				deltas = append(deltas, ledger.AccountChange{ID: mem.AccountID, BalanceDelta: 100})
			}
			ws.Accounts, ws.HeadSeq, ws.HeadHash = deltas, seq, hash
			return tx.Apply(ctx, ws)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "earns/s")
}

// BenchmarkWriterEarns drives the real writer from 64 goroutines: the
// earns per second the SQLite store sustains under the engine.
func BenchmarkWriterEarns(b *testing.B) {
	ctx := context.Background()
	db, err := Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	m, s, members := benchWorld(b, db, 1000)
	w := ledger.NewWriter(db, ledger.WriterConfig{})
	defer w.Close()
	pos := ledger.Actor{KeyID: "pos", MerchantID: m.ID}
	amount := int64(1000)
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
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
					MemberID: members[i%int64(len(members))].ID, StoreID: s.ID, Receipt: ledger.NewID(), PurchaseAmount: &amount})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "earns/s")
}
