package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/pointd/pointd/internal/ledger"
)

// The writes are sent in the same pipeline as the COMMIT, so every check of
// what they did must happen in PostgreSQL, before the COMMIT: a failed check
// must leave nothing written.
func TestPipelinedCommitChecksBeforeCommitting(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	f := newFixture(t, db)
	applyHandMade(t, db, f)

	t.Run("an account that changed behind the batch's lock fails the batch and writes nothing", func(t *testing.T) {
		err := db.Write(ctx, func(tx ledger.BatchTx) error {
			seq, hash, err := tx.Head(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.Accounts(ctx, []int64{f.alice.AccountID, ledger.AccountAdjustments}); err != nil {
				return err
			}
			// As if the balance had moved between the load and the write.
			b := tx.(*batchTx)
			a := b.accounts[f.alice.AccountID]
			a.Balance++
			b.accounts[f.alice.AccountID] = a
			adj := ledger.Transaction{ID: ledger.NewID(), Type: ledger.TxAdjust, MemberID: f.alice.ID, Points: 5, Reason: "test",
				Postings: sorted(ledger.Posting{AccountID: f.alice.AccountID, Amount: 5}, ledger.Posting{AccountID: ledger.AccountAdjustments, Amount: -5})}
			seq, hash = chain(seq, hash, &adj)
			return tx.Apply(ctx, &ledger.WriteSet{Transactions: []ledger.Transaction{adj},
				Accounts: []ledger.AccountChange{{ID: ledger.AccountAdjustments, BalanceDelta: -5}, {ID: f.alice.AccountID, BalanceDelta: 5}},
				HeadSeq:  seq, HeadHash: hash})
		})
		if !errors.Is(err, errRowCount) {
			t.Fatalf("err = %v, want %v", err, errRowCount)
		}
		rep, err := ledger.Verify(ctx, db.Audit())
		mustOK(t, err)
		if !rep.Sound() || rep.HeadSeq != 3 {
			t.Fatalf("report %+v", rep)
		}
	})

	t.Run("a batch that applied nothing still commits what it loaded, and the next batch goes on", func(t *testing.T) {
		for range 2 {
			err := db.Write(ctx, func(tx ledger.BatchTx) error {
				seq, hash, err := tx.Head(ctx)
				if err != nil {
					return err
				}
				return tx.Apply(ctx, &ledger.WriteSet{HeadSeq: seq, HeadHash: hash})
			})
			mustOK(t, err)
		}
	})
}
