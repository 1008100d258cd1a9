package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/postgres/pgtest"
)

// These tests drive the real batched writer over the store: what the server
// does, minus HTTP.

func ptr(v int64) *int64 { return &v }

func newWriter(t testing.TB, db *DB) *ledger.Writer {
	t.Helper()
	w := ledger.NewWriter(db, ledger.WriterConfig{MaxBatch: 100})
	t.Cleanup(w.Close)
	return w
}

func submit(t testing.TB, w *ledger.Writer, op ledger.Op) ledger.Result {
	t.Helper()
	res, err := w.Submit(context.Background(), op)
	if err != nil {
		t.Fatalf("%s: %v", op.Kind, err)
	}
	return res
}

// audit runs the audit on one snapshot and fails t unless the ledger is sound.
func audit(t testing.TB, db *DB) *ledger.AuditReport {
	t.Helper()
	var rep *ledger.AuditReport
	err := db.AuditSnapshot(context.Background(), func(src ledger.AuditSource) error {
		var err error
		rep, err = ledger.Verify(context.Background(), src)
		return err
	})
	mustOK(t, err)
	if !rep.Sound() {
		t.Fatalf("audit: %+v", rep.Discrepancies)
	}
	return rep
}

func TestWriterOnPostgres(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	f := newFixture(t, db)
	w := newWriter(t, db)
	actor := ledger.Actor{KeyID: "pos-key", MerchantID: f.merchant.ID}

	// 100 earns at once: they share batches.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			member := f.alice.ID
			if i%2 == 1 {
				member = f.bob.ID
			}
			_, err := w.Submit(ctx, ledger.Op{Kind: ledger.OpEarn, Actor: actor, IdempotencyKey: fmt.Sprintf("earn-%d", i),
				MemberID: member, StoreID: f.store.ID, Receipt: fmt.Sprintf("R%03d", i), PurchaseAmount: ptr(1000)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		mustOK(t, err)
	}
	b, err := db.Balance(ctx, f.alice.ID)
	mustOK(t, err)
	if b.Balance != 50*50 {
		t.Fatalf("alice %+v", b)
	}

	t.Run("a replay answers the original", func(t *testing.T) {
		op := ledger.Op{Kind: ledger.OpEarn, Actor: actor, IdempotencyKey: "earn-0", MemberID: f.alice.ID,
			StoreID: f.store.ID, Receipt: "R000", PurchaseAmount: ptr(1000)}
		res := submit(t, w, op)
		if !res.Replayed {
			t.Fatal("not replayed")
		}
	})
	t.Run("a receipt earns once", func(t *testing.T) {
		_, err := w.Submit(ctx, ledger.Op{Kind: ledger.OpEarn, Actor: actor, MemberID: f.alice.ID,
			StoreID: f.store.ID, Receipt: "R000", PurchaseAmount: ptr(1000)})
		wantCode(t, err, ledger.CodeReceiptEarned, "")
	})

	t.Run("redeem, hold, capture, void, cancel and adjust keep the books sound", func(t *testing.T) {
		red := submit(t, w, ledger.Op{Kind: ledger.OpRedeem, Actor: actor, MemberID: f.alice.ID, StoreID: f.store.ID,
			Receipt: "R-red", Points: ptr(120)})
		h1 := submit(t, w, ledger.Op{Kind: ledger.OpHold, Actor: actor, MemberID: f.alice.ID, StoreID: f.store.ID, Points: ptr(100)})
		submit(t, w, ledger.Op{Kind: ledger.OpCapture, Actor: actor, HoldID: h1.Hold.ID, Points: ptr(60)})
		h2 := submit(t, w, ledger.Op{Kind: ledger.OpHold, Actor: actor, MemberID: f.bob.ID, StoreID: f.store.ID, Points: ptr(10)})
		submit(t, w, ledger.Op{Kind: ledger.OpVoid, Actor: actor, HoldID: h2.Hold.ID})
		submit(t, w, ledger.Op{Kind: ledger.OpCancel, Actor: actor, TransactionID: red.Transaction.ID, Points: ptr(20)})
		earns, err := db.MemberTransactions(ctx, f.bob.ID, 0, 0)
		mustOK(t, err)
		earn := earns[len(earns)-1]
		submit(t, w, ledger.Op{Kind: ledger.OpCancel, Actor: actor, TransactionID: earn.ID, PurchaseAmount: ptr(300)})
		submit(t, w, ledger.Op{Kind: ledger.OpAdjust, Actor: ledger.Actor{KeyID: "admin"}, MemberID: f.bob.ID, Points: ptr(-5), Reason: "goodwill reversed"})

		got, err := db.Transaction(ctx, red.Transaction.ID)
		mustOK(t, err)
		if got.CancelledPoints != 20 || got.RestoreExpiresAt.IsZero() {
			t.Fatalf("redeem after cancel: %+v", got)
		}
		rep := audit(t, db)
		if rep.Members != 2 || rep.HeadSeq != 108 {
			t.Fatalf("report %+v", rep)
		}
	})

	t.Run("the expiry run posts due lots", func(t *testing.T) {
		mustOK(t, db.Exec(ctx, `UPDATE lots SET expires_at = now() - interval '1 day' WHERE member_id = $1`, f.bob.ID))
		due, err := db.DueLotMembers(ctx, time.Now(), 10)
		mustOK(t, err)
		if len(due) != 1 || due[0] != f.bob.ID {
			t.Fatalf("due %v", due)
		}
		submit(t, w, ledger.Op{Kind: ledger.OpExpireLots, MemberID: f.bob.ID})
		b, err := db.Balance(ctx, f.bob.ID)
		mustOK(t, err)
		if b.Balance != 0 {
			t.Fatalf("bob after expiry %+v", b)
		}
		audit(t, db)
	})
}

func TestAuditFindsTampering(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name, sql, kind string
	}{
		{"an edited posting", `UPDATE postings SET amount = amount + 1 WHERE amount > 0 AND txn_id = (SELECT id FROM transactions WHERE seq = 1)`, ledger.BadHashChain},
		{"an edited receipt", `UPDATE transactions SET receipt = 'forged' WHERE seq = 2`, ledger.BadHashChain},
		{"a deleted transaction", `DELETE FROM transactions WHERE seq = 3`, ledger.BadIdempotency},
		{"an edited balance", `UPDATE accounts SET balance = balance + 7 WHERE id = (SELECT account_id FROM members LIMIT 1)`, ledger.BadBalance},
		{"an edited lot", `UPDATE lots SET remaining = remaining - 1 WHERE id = (SELECT min(id) FROM lots)`, ledger.BadLots},
		{"a moved head", `UPDATE ledger_head SET seq = seq + 1`, ledger.BadHead},
	}
	for _, c := range cases {
		t.Run(c.name+" is a "+c.kind, func(t *testing.T) {
			db := open(t)
			f := newFixture(t, db)
			w := newWriter(t, db)
			for i := range 3 {
				submit(t, w, ledger.Op{Kind: ledger.OpEarn, Actor: ledger.Actor{KeyID: "k"}, IdempotencyKey: fmt.Sprint(i),
					MemberID: f.alice.ID, StoreID: f.store.ID, Receipt: fmt.Sprint("R", i), PurchaseAmount: ptr(1000)})
			}
			audit(t, db)
			mustOK(t, db.Exec(ctx, c.sql))
			rep, err := ledger.Verify(ctx, db.Audit())
			mustOK(t, err)
			found := false
			for _, d := range rep.Discrepancies {
				found = found || d.Kind == c.kind
			}
			if !found {
				t.Fatalf("no %s in %+v", c.kind, rep.Discrepancies)
			}
		})
	}
}

// Two pointd instances on one database: each its own pool and writer, both
// earning at the same merchant (the hot issuing account) at once.
func TestTwoInstancesSerialise(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	db1 := openOn(t, dsn)
	db2 := openOn(t, dsn)
	f := newFixture(t, db1)
	writers := []*ledger.Writer{newWriter(t, db1), newWriter(t, db2)}

	const perWriter = 300
	var wg sync.WaitGroup
	errs := make(chan error, 2*perWriter)
	for wi, w := range writers {
		for i := range perWriter {
			wg.Add(1)
			go func() {
				defer wg.Done()
				member := f.alice.ID
				if i%3 == 0 {
					member = f.bob.ID
				}
				_, err := w.Submit(ctx, ledger.Op{Kind: ledger.OpEarn, Actor: ledger.Actor{KeyID: "k"},
					IdempotencyKey: fmt.Sprintf("w%d-%d", wi, i), MemberID: member, StoreID: f.store.ID,
					Receipt: fmt.Sprintf("w%d-%d", wi, i), PurchaseAmount: ptr(200)})
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		mustOK(t, err)
	}
	rep := audit(t, db2)
	if rep.HeadSeq != 2*perWriter {
		t.Fatalf("head seq %d", rep.HeadSeq)
	}
	m, err := db1.Merchant(ctx, f.merchant.ID)
	mustOK(t, err)
	var issued int64
	mustOK(t, db1.pool.QueryRow(ctx, `SELECT balance FROM accounts WHERE id = $1`, m.IssuedAccount).Scan(&issued))
	if issued != -2*perWriter*10 {
		t.Fatalf("issued %d", issued)
	}
}

// A snapshot audit is exact while a writer runs; the per-scan one may not be.
func TestAuditSnapshotWhileWriting(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	f := newFixture(t, db)
	w := newWriter(t, db)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := w.Submit(ctx, ledger.Op{Kind: ledger.OpEarn, Actor: ledger.Actor{KeyID: "k"},
				MemberID: f.alice.ID, StoreID: f.store.ID, Receipt: fmt.Sprint("R", i), PurchaseAmount: ptr(100)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// Audit until the audits have seen the ledger move a few times.
	var last int64
	moves := 0
	for i := 0; moves < 5; i++ {
		if i == 1000 {
			t.Fatalf("the ledger moved only %d times in %d audits", moves, i)
		}
		rep := audit(t, db)
		if rep.HeadSeq < last {
			t.Fatalf("head went back from %d to %d", last, rep.HeadSeq)
		}
		if rep.HeadSeq > last {
			moves++
		}
		last = rep.HeadSeq
	}
	close(stop)
	<-done
}

func runEarns(t testing.TB, w *ledger.Writer, f fixture, n int, prefix string) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := w.Submit(context.Background(), ledger.Op{Kind: ledger.OpEarn, Actor: ledger.Actor{KeyID: "k"},
				MemberID: f.alice.ID, StoreID: f.store.ID, Receipt: fmt.Sprintf("%s-%d", prefix, i), PurchaseAmount: ptr(100)})
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

// BenchmarkWriter100Earns measures batches of 100 earns at one merchant
// through the real writer: per op, what the write path costs.
func BenchmarkWriter100Earns(b *testing.B) {
	db := open(b)
	f := newFixture(b, db)
	w := newWriter(b, db)
	b.ResetTimer()
	for i := range b.N {
		runEarns(b, w, f, 100, fmt.Sprint("b", i))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/earn")
}

// BenchmarkApply100Earns measures one write transaction of 100 earns made
// by hand (no engine): head, account locks and one Apply pipeline.
func BenchmarkApply100Earns(b *testing.B) {
	ctx := context.Background()
	db := open(b)
	f := newFixture(b, db)
	m := f.merchant
	now := utc(t0)
	b.ResetTimer()
	for i := range b.N {
		err := db.Write(ctx, func(tx ledger.BatchTx) error {
			seq, hash, err := tx.Head(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.Accounts(ctx, []int64{1, 2, f.alice.AccountID, m.IssuedAccount, m.RedeemedAccount}); err != nil {
				return err
			}
			ws := &ledger.WriteSet{}
			for j := range 100 {
				t := ledger.Transaction{ID: ledger.NewID(), Type: ledger.TxEarn, MemberID: f.alice.ID, MerchantID: m.ID,
					StoreID: f.store.ID, Receipt: fmt.Sprintf("%d-%d", i, j), PurchaseAmount: 100, Points: 5, CreatedAt: now,
					Postings: sorted(ledger.Posting{AccountID: m.IssuedAccount, Amount: -5}, ledger.Posting{AccountID: f.alice.AccountID, Amount: 5})}
				seq, hash = chain(seq, hash, &t)
				ws.Transactions = append(ws.Transactions, t)
				ws.NewLots = append(ws.NewLots, ledger.Lot{ID: t.ID, MemberID: f.alice.ID, Points: 5, Remaining: 5, ExpiresAt: now})
			}
			ws.Accounts = []ledger.AccountChange{{ID: m.IssuedAccount, BalanceDelta: -500}, {ID: f.alice.AccountID, BalanceDelta: 500}}
			if ws.Accounts[1].ID < ws.Accounts[0].ID {
				ws.Accounts[0], ws.Accounts[1] = ws.Accounts[1], ws.Accounts[0]
			}
			ws.HeadSeq, ws.HeadHash = seq, hash
			return tx.Apply(ctx, ws)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/batch")
}
