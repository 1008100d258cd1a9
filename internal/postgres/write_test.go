package postgres

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pointd/pointd/internal/ledger"
)

// chain numbers and hashes txns after the head, as the batch engine does.
func chain(seq int64, prev []byte, txns ...*ledger.Transaction) (int64, []byte) {
	for _, t := range txns {
		seq++
		t.Seq = seq
		t.PrevHash = prev
		t.Hash = ledger.ChainHash(prev, t)
		prev = t.Hash
	}
	return seq, prev
}

// sorted returns postings in account order, as the engine makes them.
func sorted(ps ...ledger.Posting) []ledger.Posting {
	slices.SortFunc(ps, func(a, b ledger.Posting) int { return int(a.AccountID - b.AccountID) })
	return ps
}

// handMade is a batch written without the engine: an earn for Alice, a
// hold on part of it, and a redeem by Alice with a restore expiry.
type handMade struct {
	earn, hold, redeem ledger.Transaction
	lot                ledger.Lot
	h                  ledger.Hold
	idem               ledger.IdemRecord
	ws                 *ledger.WriteSet
}

func newHandMade(f fixture, seq int64, prev []byte) *handMade {
	m := f.merchant
	now := utc(t0)
	exp := now.AddDate(1, 0, 0)
	x := &handMade{}
	x.earn = ledger.Transaction{ID: ledger.NewID(), Type: ledger.TxEarn, MemberID: f.alice.ID, MerchantID: m.ID,
		StoreID: f.store.ID, Receipt: "R-1", PurchaseAmount: 2000, Points: 100, CreatedAt: now,
		Postings: sorted(ledger.Posting{AccountID: f.alice.AccountID, Amount: 100}, ledger.Posting{AccountID: m.IssuedAccount, Amount: -100})}
	x.hold = ledger.Transaction{ID: ledger.NewID(), Type: ledger.TxHold, MemberID: f.alice.ID, MerchantID: m.ID,
		StoreID: f.store.ID, Points: 30, CreatedAt: now}
	x.redeem = ledger.Transaction{ID: ledger.NewID(), Type: ledger.TxRedeem, MemberID: f.alice.ID, MerchantID: m.ID,
		StoreID: f.store.ID, Receipt: "R-2", Points: 20, CreatedAt: now, RestoreExpiresAt: exp,
		Reason: "ünïcode reason", Postings: sorted(ledger.Posting{AccountID: f.alice.AccountID, Amount: -20}, ledger.Posting{AccountID: m.RedeemedAccount, Amount: 20})}
	headSeq, headHash := chain(seq, prev, &x.earn, &x.hold, &x.redeem)
	x.lot = ledger.Lot{ID: x.earn.ID, MemberID: f.alice.ID, Points: 100, Remaining: 80, ExpiresAt: exp}
	x.h = ledger.Hold{ID: x.hold.ID, MemberID: f.alice.ID, MerchantID: m.ID, StoreID: f.store.ID, Points: 30,
		Status: ledger.HoldActive, ExpiresAt: now.Add(15 * time.Minute), CreatedAt: now}
	x.idem = ledger.IdemRecord{IdemKey: ledger.IdemKey{Scope: "key1", Key: "idem-1"}, RequestHash: []byte{1, 2, 3},
		TxnID: x.earn.ID, Response: []byte(`{"ok":true}`), CreatedAt: now}
	accts := []ledger.AccountChange{
		{ID: m.IssuedAccount, BalanceDelta: -100},
		{ID: m.RedeemedAccount, BalanceDelta: 20},
		{ID: f.alice.AccountID, BalanceDelta: 80, HeldDelta: 30},
	}
	if accts[2].ID < accts[0].ID {
		accts = append(accts[2:], accts[:2]...)
	}
	x.ws = &ledger.WriteSet{
		Transactions: []ledger.Transaction{x.earn, x.hold, x.redeem},
		Accounts:     accts,
		NewLots:      []ledger.Lot{x.lot},
		NewHolds:     []ledger.Hold{x.h},
		Idempotency:  []ledger.IdemRecord{x.idem},
		HeadSeq:      headSeq,
		HeadHash:     headHash,
	}
	return x
}

// applyHandMade writes a hand-made batch through Write, as the engine would:
// head first, accounts locked, then Apply.
func applyHandMade(t *testing.T, db *DB, f fixture) *handMade {
	t.Helper()
	var x *handMade
	err := db.Write(context.Background(), func(tx ledger.BatchTx) error {
		ctx := context.Background()
		seq, hash, err := tx.Head(ctx)
		if err != nil {
			return err
		}
		x = newHandMade(f, seq, hash)
		ids := []int64{ledger.AccountExpired, ledger.AccountAdjustments}
		for _, a := range x.ws.Accounts {
			ids = append(ids, a.ID)
		}
		if _, err := tx.Accounts(ctx, ids); err != nil {
			return err
		}
		return tx.Apply(ctx, x.ws)
	})
	mustOK(t, err)
	return x
}

func TestApplyRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	f := newFixture(t, db)
	x := applyHandMade(t, db, f)

	t.Run("transactions come back exactly, and their hashes recompute", func(t *testing.T) {
		for _, want := range x.ws.Transactions {
			got, err := db.Transaction(ctx, want.ID)
			mustOK(t, err)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
			if h := ledger.ChainHash(got.PrevHash, &got); !bytes.Equal(h, got.Hash) {
				t.Fatalf("hash of %s does not recompute", got.ID)
			}
			if got.CreatedAt.Location() != time.UTC {
				t.Fatalf("created_at in %v", got.CreatedAt.Location())
			}
		}
	})

	t.Run("the first transaction chains to nothing", func(t *testing.T) {
		got, err := db.Transaction(ctx, x.earn.ID)
		mustOK(t, err)
		if got.PrevHash != nil || got.Seq != 1 {
			t.Fatalf("seq %d prev %x", got.Seq, got.PrevHash)
		}
	})

	t.Run("a member's history is newest first, paged by seq", func(t *testing.T) {
		all, err := db.MemberTransactions(ctx, f.alice.ID, 0, 0)
		mustOK(t, err)
		want := []ledger.Transaction{x.redeem, x.hold, x.earn}
		if !reflect.DeepEqual(all, want) {
			t.Fatalf("got %+v", all)
		}
		page, err := db.MemberTransactions(ctx, f.alice.ID, x.redeem.Seq, 1)
		mustOK(t, err)
		if len(page) != 1 || page[0].ID != x.hold.ID {
			t.Fatalf("page %+v", page)
		}
	})

	t.Run("balances, lots, holds and idempotency are written", func(t *testing.T) {
		b, err := db.Balance(ctx, f.alice.ID)
		mustOK(t, err)
		if b != (ledger.Balance{MemberID: f.alice.ID, Balance: 80, Held: 30, Available: 50}) {
			t.Fatalf("balance %+v", b)
		}
		lots, err := db.MemberLots(ctx, f.alice.ID)
		mustOK(t, err)
		// A lot read back says the merchant of its earn.
		want := x.lot
		want.MerchantID = x.earn.MerchantID
		if !reflect.DeepEqual(lots, []ledger.Lot{want}) {
			t.Fatalf("lots %+v", lots)
		}
		h, err := db.Hold(ctx, x.h.ID)
		mustOK(t, err)
		if !reflect.DeepEqual(h, x.h) {
			t.Fatalf("hold %+v", h)
		}
		rec, ok, err := db.Idempotency(ctx, "key1", "idem-1")
		mustOK(t, err)
		if !ok || !reflect.DeepEqual(rec, x.idem) {
			t.Fatalf("idempotency %+v", rec)
		}
	})

	t.Run("the audit sees a sound ledger", func(t *testing.T) {
		rep, err := ledger.Verify(ctx, db.Audit())
		mustOK(t, err)
		if !rep.Sound() || rep.Transactions != 3 || rep.HeadSeq != 3 || rep.Postings != 4 {
			t.Fatalf("report %+v", rep)
		}
	})

	t.Run("the write transaction loads what it needs", func(t *testing.T) {
		err := db.Write(ctx, func(tx ledger.BatchTx) error {
			seq, hash, err := tx.Head(ctx)
			mustOK(t, err)
			if seq != 3 || !bytes.Equal(hash, x.redeem.Hash) {
				t.Errorf("head %d %x", seq, hash)
			}
			idem, err := tx.Idempotency(ctx, []ledger.IdemKey{x.idem.IdemKey, {Scope: "key1", Key: "other"}})
			mustOK(t, err)
			if len(idem) != 1 || !reflect.DeepEqual(idem[x.idem.IdemKey], x.idem) {
				t.Errorf("idempotency %+v", idem)
			}
			txns, err := tx.Transactions(ctx, []string{x.earn.ID, x.hold.ID, "missing"})
			mustOK(t, err)
			if len(txns) != 2 || !reflect.DeepEqual(txns[x.earn.ID], x.earn) || !reflect.DeepEqual(txns[x.hold.ID], x.hold) {
				t.Errorf("transactions %+v", txns)
			}
			holds, err := tx.Holds(ctx, []string{x.h.ID, "missing"})
			mustOK(t, err)
			if len(holds) != 1 || !reflect.DeepEqual(holds[x.h.ID], x.h) {
				t.Errorf("holds %+v", holds)
			}
			members, err := tx.Members(ctx, []string{f.alice.ID, f.bob.ID, "missing"})
			mustOK(t, err)
			if len(members) != 2 || members[f.bob.ID].AccountID != f.bob.AccountID {
				t.Errorf("members %+v", members)
			}
			stores, err := tx.Stores(ctx, []string{f.store.ID, "missing"})
			mustOK(t, err)
			if len(stores) != 1 || stores[f.store.ID].Merchant.IssuedAccount != f.merchant.IssuedAccount {
				t.Errorf("stores %+v", stores)
			}
			earned := ledger.ReceiptKey{MerchantID: f.merchant.ID, StoreID: f.store.ID, Receipt: "R-1"}
			redeemed := ledger.ReceiptKey{MerchantID: f.merchant.ID, StoreID: f.store.ID, Receipt: "R-2"}
			receipts, err := tx.EarnedReceipts(ctx, []ledger.ReceiptKey{earned, redeemed,
				{MerchantID: f.merchant.ID, StoreID: "other", Receipt: "R-1"}})
			mustOK(t, err)
			if len(receipts) != 1 || receipts[earned] != x.earn.ID {
				t.Errorf("receipts %+v", receipts)
			}
			accts, err := tx.Accounts(ctx, []int64{f.alice.AccountID, f.merchant.IssuedAccount, 999999})
			mustOK(t, err)
			if len(accts) != 2 || accts[f.alice.AccountID] != (ledger.Account{ID: f.alice.AccountID, Balance: 80, Held: 30}) {
				t.Errorf("accounts %+v", accts)
			}
			for _, empty := range []error{
				func() error { m, err := tx.Members(ctx, nil); return errIfAny(len(m), err) }(),
				func() error { m, err := tx.Lots(ctx, nil); return errIfAny(len(m), err) }(),
				func() error { m, err := tx.EarnedReceipts(ctx, nil); return errIfAny(len(m), err) }(),
			} {
				mustOK(t, empty)
			}
			// Nothing changed: Apply of an empty write set sends nothing.
			return tx.Apply(ctx, &ledger.WriteSet{HeadSeq: seq, HeadHash: hash})
		})
		mustOK(t, err)
	})

	t.Run("updates change lots, holds and cancel counters", func(t *testing.T) {
		err := db.Write(ctx, func(tx ledger.BatchTx) error {
			seq, hash, err := tx.Head(ctx)
			if err != nil {
				return err
			}
			lot := x.lot
			lot.Remaining = 0
			h := x.h
			h.Status = ledger.HoldVoided
			void := ledger.Transaction{ID: ledger.NewID(), Type: ledger.TxHoldVoid, MemberID: f.alice.ID, Points: 30,
				RefID: h.ID, CreatedAt: utc(t0)}
			seq, hash = chain(seq, hash, &void)
			return tx.Apply(ctx, &ledger.WriteSet{
				Transactions: []ledger.Transaction{void},
				Accounts:     []ledger.AccountChange{{ID: f.alice.AccountID, HeldDelta: -30}},
				LotUpdates:   []ledger.Lot{lot},
				HoldUpdates:  []ledger.Hold{h},
				Cancels:      []ledger.CancelCounters{{ID: x.earn.ID, CancelledPoints: 7, CancelledAmount: 140}},
				HeadSeq:      seq, HeadHash: hash,
			})
		})
		mustOK(t, err)
		lots, err := db.MemberLots(ctx, f.alice.ID)
		mustOK(t, err)
		h, err := db.Hold(ctx, x.h.ID)
		mustOK(t, err)
		earn, err := db.Transaction(ctx, x.earn.ID)
		mustOK(t, err)
		b, err := db.Balance(ctx, f.alice.ID)
		mustOK(t, err)
		if len(lots) != 0 || h.Status != ledger.HoldVoided || earn.CancelledPoints != 7 || earn.CancelledAmount != 140 || b.Held != 0 {
			t.Fatalf("lots %v, hold %s, earn %d/%d, held %d", lots, h.Status, earn.CancelledPoints, earn.CancelledAmount, b.Held)
		}
		seq, _, err := db.Audit().Head(ctx)
		mustOK(t, err)
		if seq != 4 {
			t.Fatalf("head seq %d", seq)
		}
	})
}

func errIfAny(n int, err error) error {
	if err == nil && n != 0 {
		return errors.New("rows for no input")
	}
	return err
}

func TestApplyFailures(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	f := newFixture(t, db)
	x := applyHandMade(t, db, f)

	cases := []struct {
		name string
		ws   func(seq int64, hash []byte) *ledger.WriteSet
		want string
	}{
		{"an update of a missing lot fails", func(seq int64, hash []byte) *ledger.WriteSet {
			return &ledger.WriteSet{LotUpdates: []ledger.Lot{{ID: "missing"}}, HeadSeq: seq, HeadHash: hash}
		}, "update lots"},
		{"an update of a missing hold fails", func(seq int64, hash []byte) *ledger.WriteSet {
			return &ledger.WriteSet{HoldUpdates: []ledger.Hold{{ID: "missing", Status: ledger.HoldVoided}}, HeadSeq: seq, HeadHash: hash}
		}, "update holds"},
		{"an account named twice fails", func(seq int64, hash []byte) *ledger.WriteSet {
			return &ledger.WriteSet{Accounts: []ledger.AccountChange{{ID: 1, BalanceDelta: 1}, {ID: 1, BalanceDelta: 1}}, HeadSeq: seq, HeadHash: hash}
		}, "twice"},
		{"a second earn on a receipt fails", func(seq int64, hash []byte) *ledger.WriteSet {
			dup := x.earn
			dup.ID = ledger.NewID()
			seq, hash = chain(seq, hash, &dup)
			return &ledger.WriteSet{Transactions: []ledger.Transaction{dup}, HeadSeq: seq, HeadHash: hash}
		}, "transactions_earn_receipt"},
		{"postings out of account order fail", func(seq int64, hash []byte) *ledger.WriteSet {
			t := ledger.Transaction{ID: ledger.NewID(), Type: ledger.TxAdjust, MemberID: f.alice.ID, Points: 1,
				Postings: []ledger.Posting{{AccountID: f.alice.AccountID, Amount: 1}, {AccountID: ledger.AccountAdjustments, Amount: -1}}}
			seq, hash = chain(seq, hash, &t)
			return &ledger.WriteSet{Transactions: []ledger.Transaction{t}, HeadSeq: seq, HeadHash: hash}
		}, "account order"},
		{"a reused idempotency key fails", func(seq int64, hash []byte) *ledger.WriteSet {
			return &ledger.WriteSet{Idempotency: []ledger.IdemRecord{x.idem}, HeadSeq: seq, HeadHash: hash}
		}, "idempotency_pkey"},
	}
	for _, c := range cases {
		t.Run(c.name+" and writes nothing", func(t *testing.T) {
			err := db.Write(ctx, func(tx ledger.BatchTx) error {
				seq, hash, err := tx.Head(ctx)
				if err != nil {
					return err
				}
				// Something that would be written if the batch committed.
				if err := tx.Apply(ctx, &ledger.WriteSet{Accounts: []ledger.AccountChange{{ID: ledger.AccountExpired, BalanceDelta: 5}},
					HeadSeq: seq, HeadHash: hash}); err != nil {
					return err
				}
				return tx.Apply(ctx, c.ws(seq, hash))
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one about %q", err, c.want)
			}
			rep, err := ledger.Verify(ctx, db.Audit())
			mustOK(t, err)
			if !rep.Sound() || rep.HeadSeq != 3 {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

func TestWriteRetries(t *testing.T) {
	ctx := context.Background()
	db := open(t)

	t.Run("a serialization failure runs the batch again", func(t *testing.T) {
		calls := 0
		err := db.Write(ctx, func(tx ledger.BatchTx) error {
			calls++
			if _, _, err := tx.Head(ctx); err != nil {
				return err
			}
			if calls == 1 {
				return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
			}
			return nil
		})
		if err != nil || calls != 2 {
			t.Fatalf("err %v after %d calls", err, calls)
		}
	})
	t.Run("retries stop after a few attempts", func(t *testing.T) {
		calls := 0
		err := db.Write(ctx, func(tx ledger.BatchTx) error {
			calls++
			return &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}
		})
		if err == nil || calls != writeAttempts {
			t.Fatalf("err %v after %d calls", err, calls)
		}
	})
	t.Run("other errors are not retried", func(t *testing.T) {
		calls := 0
		boom := errors.New("boom")
		err := db.Write(ctx, func(tx ledger.BatchTx) error { calls++; return boom })
		if !errors.Is(err, boom) || calls != 1 {
			t.Fatalf("err %v after %d calls", err, calls)
		}
	})
	t.Run("the connection goes back to the pool", func(t *testing.T) {
		if inUse, _, _ := db.Stats(); inUse != 0 {
			t.Fatalf("%d connections in use", inUse)
		}
	})
}

func TestLotsAndDue(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	f := newFixture(t, db)
	now := utc(t0)
	day := 24 * time.Hour

	// Alice: lots expiring in 2 days (two, tie broken by id), yesterday, and
	// one used up. Bob: one lot due an hour ago. Holds: one due, one not,
	// one due but no longer active.
	lots := []ledger.Lot{
		{ID: "lot-b", MemberID: f.alice.ID, Points: 10, Remaining: 10, ExpiresAt: now.Add(2 * day)},
		{ID: "lot-a", MemberID: f.alice.ID, Points: 10, Remaining: 5, ExpiresAt: now.Add(2 * day)},
		{ID: "lot-c", MemberID: f.alice.ID, Points: 10, Remaining: 10, ExpiresAt: now.Add(-day)},
		{ID: "lot-d", MemberID: f.alice.ID, Points: 10, Remaining: 0, ExpiresAt: now.Add(-2 * day)},
		{ID: "lot-e", MemberID: f.bob.ID, Points: 10, Remaining: 1, ExpiresAt: now.Add(-time.Hour)},
	}
	holds := []ledger.Hold{
		{ID: "hold-1", MemberID: f.alice.ID, Points: 1, Status: ledger.HoldActive, ExpiresAt: now.Add(-time.Minute)},
		{ID: "hold-2", MemberID: f.alice.ID, Points: 1, Status: ledger.HoldActive, ExpiresAt: now.Add(time.Minute)},
		{ID: "hold-3", MemberID: f.alice.ID, Points: 1, Status: ledger.HoldCaptured, ExpiresAt: now.Add(-time.Hour)},
		{ID: "hold-4", MemberID: f.bob.ID, Points: 1, Status: ledger.HoldActive, ExpiresAt: now},
	}
	mustOK(t, db.Write(ctx, func(tx ledger.BatchTx) error {
		seq, hash, err := tx.Head(ctx)
		if err != nil {
			return err
		}
		// Balances above held: members whose points are all held are not due.
		ids := []int64{f.alice.AccountID, f.bob.AccountID}
		slices.Sort(ids)
		if _, err := tx.Accounts(ctx, ids); err != nil {
			return err
		}
		changes := []ledger.AccountChange{{ID: ids[0], BalanceDelta: 100}, {ID: ids[1], BalanceDelta: 100}}
		return tx.Apply(ctx, &ledger.WriteSet{NewLots: lots, NewHolds: holds, Accounts: changes, HeadSeq: seq, HeadHash: hash})
	}))

	t.Run("a member's open lots come earliest expiry first, ties by id", func(t *testing.T) {
		got, err := db.MemberLots(ctx, f.alice.ID)
		mustOK(t, err)
		want := []ledger.Lot{lots[2], lots[1], lots[0]}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v", got)
		}
		mustOK(t, db.Write(ctx, func(tx ledger.BatchTx) error {
			byMember, err := tx.Lots(ctx, []string{f.alice.ID, f.bob.ID, "nobody"})
			mustOK(t, err)
			if !reflect.DeepEqual(byMember[f.alice.ID], want) || !reflect.DeepEqual(byMember[f.bob.ID], lots[4:]) || len(byMember) != 2 {
				t.Errorf("lots %+v", byMember)
			}
			return nil
		}))
	})

	t.Run("members with due lots are listed, earliest due first", func(t *testing.T) {
		got, err := db.DueLotMembers(ctx, now, 10)
		mustOK(t, err)
		if !reflect.DeepEqual(got, []string{f.alice.ID, f.bob.ID}) {
			t.Fatalf("got %v", got)
		}
		got, err = db.DueLotMembers(ctx, now, 1)
		mustOK(t, err)
		if len(got) != 1 {
			t.Fatalf("limit 1: %v", got)
		}
		got, err = db.DueLotMembers(ctx, now.Add(-30*day), 10)
		mustOK(t, err)
		if len(got) != 0 {
			t.Fatalf("nothing due a month ago: %v", got)
		}
	})

	t.Run("active holds due at or before now are listed", func(t *testing.T) {
		got, err := db.DueHolds(ctx, now, 10)
		mustOK(t, err)
		if !reflect.DeepEqual(got, []string{"hold-1", "hold-4"}) {
			t.Fatalf("got %v", got)
		}
	})
}
