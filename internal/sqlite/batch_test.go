package sqlite

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// world is a merchant with one store and two members, the accounts they got
// and a first batch of hand-made transactions written through Write.
type world struct {
	m            ledger.Merchant
	s            ledger.Shop
	alice, bob   ledger.Member
	txns         map[string]ledger.Transaction // by id
	order        []string                      // ids in seq order
	lots         []ledger.Lot
	hold         ledger.Hold
	idem         []ledger.IdemRecord
	headSeq      int64
	headHash     []byte
	issued, redd int64
}

const (
	t1 = "tx-b-earn1" // ids chosen so that id order and seq order differ
	t2 = "tx-c-earn2"
	t3 = "tx-d-hold"
	t4 = "tx-e-adjust-bob"
	t5 = "tx-f-redeem"
	t6 = "tx-a-adjust"
)

// chain numbers txns from seq+1 on and links their hashes to prev.
func chain(prev []byte, seq int64, txns []ledger.Transaction) ([]ledger.Transaction, []byte) {
	for i := range txns {
		seq++
		txns[i].Seq = seq
		txns[i].PrevHash = prev
		txns[i].Hash = ledger.ChainHash(prev, &txns[i])
		prev = txns[i].Hash
	}
	return txns, prev
}

func newWorld(t *testing.T, db *DB) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{txns: map[string]ledger.Transaction{}}
	w.m = ledger.Merchant{ID: "m1", Name: "Coffee", EarnRateBP: 1000, PointValidityDays: 30, Status: "active", CreatedAt: base}
	if err := db.CreateMerchant(ctx, &w.m); err != nil {
		t.Fatal(err)
	}
	w.issued, w.redd = w.m.IssuedAccount, w.m.RedeemedAccount
	w.s = ledger.Shop{ID: "s1", MerchantID: "m1", Name: "Main street", Status: ledger.StatusActive, CreatedAt: base}
	if err := db.CreateStore(ctx, w.s); err != nil {
		t.Fatal(err)
	}
	w.alice = ledger.Member{ID: "alice", CardNumber: "9410000000000001", Name: "Alice", Status: "active", CreatedAt: base}
	w.bob = ledger.Member{ID: "bob", CardNumber: "9410000000000002", Phone: "+4915100000002", Name: "Bob", Status: "active", CreatedAt: base}
	for _, m := range []*ledger.Member{&w.alice, &w.bob} {
		if err := db.CreateMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	a, b, iss, red := w.alice.AccountID, w.bob.AccountID, w.issued, w.redd
	day := 24 * time.Hour
	txns, head := chain(nil, 0, []ledger.Transaction{
		{ID: t1, Type: ledger.TxEarn, MemberID: "alice", MerchantID: "m1", StoreID: "s1", Receipt: "r1",
			PurchaseAmount: 1000, Points: 100, CreatedAt: base,
			Postings: []ledger.Posting{{AccountID: iss, Amount: -100}, {AccountID: a, Amount: 100}}},
		{ID: t2, Type: ledger.TxEarn, MemberID: "alice", MerchantID: "m1", StoreID: "s1", Receipt: "r2",
			PurchaseAmount: 500, Points: 50, CreatedAt: base.Add(time.Second),
			Postings: []ledger.Posting{{AccountID: iss, Amount: -50}, {AccountID: a, Amount: 50}}},
		{ID: t3, Type: ledger.TxHold, MemberID: "alice", MerchantID: "m1", StoreID: "s1", Points: 30,
			CreatedAt: base.Add(2 * time.Second)},
		{ID: t4, Type: ledger.TxAdjust, MemberID: "bob", Points: 20, Reason: "goodwill", CreatedAt: base.Add(3 * time.Second),
			Postings: []ledger.Posting{{AccountID: ledger.AccountAdjustments, Amount: -20}, {AccountID: b, Amount: 20}}},
		{ID: t5, Type: ledger.TxRedeem, MemberID: "alice", MerchantID: "m1", StoreID: "s1", Receipt: "r1",
			Points: 40, CreatedAt: base.Add(4 * time.Second), RestoreExpiresAt: base.Add(10 * day),
			Postings: []ledger.Posting{{AccountID: red, Amount: 40}, {AccountID: a, Amount: -40}}},
		{ID: t6, Type: ledger.TxAdjust, MemberID: "alice", Points: 5, Reason: "sorry", CreatedAt: base.Add(5 * time.Second),
			Postings: []ledger.Posting{{AccountID: ledger.AccountAdjustments, Amount: -5}, {AccountID: a, Amount: 5}}},
	})
	for _, tx := range txns {
		w.txns[tx.ID] = tx
		w.order = append(w.order, tx.ID)
	}
	w.lots = []ledger.Lot{
		{ID: t1, MemberID: "alice", Points: 100, Remaining: 100, ExpiresAt: base.Add(30 * day)},
		{ID: t2, MemberID: "alice", Points: 50, Remaining: 10, ExpiresAt: base.Add(10 * day)},
		{ID: t4, MemberID: "bob", Points: 20, Remaining: 20, ExpiresAt: base.Add(365 * day)},
		{ID: t6, MemberID: "alice", Points: 5, Remaining: 5, ExpiresAt: base.Add(30 * day)},
	}
	w.hold = ledger.Hold{ID: t3, MemberID: "alice", MerchantID: "m1", StoreID: "s1", Points: 30,
		Status: ledger.HoldActive, ExpiresAt: base.Add(15 * time.Minute), CreatedAt: base.Add(2 * time.Second)}
	w.idem = []ledger.IdemRecord{
		{IdemKey: ledger.IdemKey{Scope: "key-pos", Key: "idem-1"}, RequestHash: []byte{1, 2, 3}, TxnID: t1,
			Response: []byte(`{"id":"` + t1 + `"}`), CreatedAt: base},
		{IdemKey: ledger.IdemKey{Scope: "key-pos", Key: "idem-2"}, RequestHash: []byte{4, 5, 6}, TxnID: t2,
			Response: []byte(`{"id":"` + t2 + `"}`), CreatedAt: base.Add(time.Second)},
	}
	w.headSeq, w.headHash = int64(len(txns)), head
	ws := &ledger.WriteSet{
		Transactions: txns,
		Accounts: []ledger.AccountChange{ // in id order
			{ID: ledger.AccountAdjustments, BalanceDelta: -25},
			{ID: iss, BalanceDelta: -150},
			{ID: red, BalanceDelta: 40},
			{ID: a, BalanceDelta: 115, HeldDelta: 30},
			{ID: b, BalanceDelta: 20},
		},
		NewLots:     w.lots,
		NewHolds:    []ledger.Hold{w.hold},
		Idempotency: w.idem,
		HeadSeq:     w.headSeq,
		HeadHash:    head,
	}
	err := db.Write(ctx, func(tx ledger.BatchTx) error {
		seq, hash, err := tx.Head(ctx)
		if err != nil {
			return err
		}
		if seq != 0 || len(hash) != 0 {
			t.Errorf("head of an empty ledger = %d, %x; want 0 and no hash", seq, hash)
		}
		return tx.Apply(ctx, ws)
	})
	if err != nil {
		t.Fatalf("write first batch: %v", err)
	}
	return w
}

func mustBeSound(t *testing.T, db *DB) *ledger.AuditReport {
	t.Helper()
	rep, err := ledger.Verify(context.Background(), db.Audit())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rep.Discrepancies {
		t.Errorf("audit: %s: %s", d.Kind, d.Detail)
	}
	return rep
}

func TestWriteAndReadBack(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	w := newWorld(t, db)

	rep := mustBeSound(t, db)
	if rep.Transactions != 6 || rep.Postings != 10 || rep.Members != 2 || rep.Lots != 4 || rep.Holds != 1 || rep.HeadSeq != 6 {
		t.Errorf("audit counted %+v", rep)
	}

	t.Run("transactions round-trip exactly, hash included", func(t *testing.T) {
		for _, id := range w.order {
			got, err := db.Transaction(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if want := w.txns[id]; !reflect.DeepEqual(got, want) {
				t.Errorf("transaction %s:\n got %+v\nwant %+v", id, got, want)
			}
			if h := ledger.ChainHash(got.PrevHash, &got); string(h) != string(got.Hash) {
				t.Errorf("transaction %s read back does not hash to its hash", id)
			}
		}
		_, err := db.Transaction(ctx, "nope")
		wantCode(t, err, ledger.CodeTransactionNotFound)
	})

	t.Run("member history is newest first and pages by seq", func(t *testing.T) {
		ids := func(txns []ledger.Transaction) []string {
			var out []string
			for _, tx := range txns {
				out = append(out, tx.ID)
				if !reflect.DeepEqual(tx, w.txns[tx.ID]) {
					t.Errorf("history entry %s differs from what was written", tx.ID)
				}
			}
			return out
		}
		for _, tc := range []struct {
			member string
			before int64
			limit  int
			want   []string
		}{
			{"alice", 0, 10, []string{t6, t5, t3, t2, t1}},
			{"alice", 0, 2, []string{t6, t5}},
			{"alice", 5, 2, []string{t3, t2}},
			{"alice", 2, 10, []string{t1}},
			{"alice", 1, 10, nil},
			{"bob", 0, 10, []string{t4}},
			{"nobody", 0, 10, nil},
		} {
			got, err := db.MemberTransactions(ctx, tc.member, tc.before, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if g := ids(got); !slices.Equal(g, tc.want) {
				t.Errorf("history of %s before %d limit %d = %v, want %v", tc.member, tc.before, tc.limit, g, tc.want)
			}
		}
	})

	t.Run("balances, lots and holds", func(t *testing.T) {
		if b, err := db.Balance(ctx, "alice"); err != nil || b != (ledger.Balance{MemberID: "alice", Balance: 115, Held: 30, Available: 85}) {
			t.Errorf("alice's balance = %+v, %v", b, err)
		}
		lots, err := db.MemberLots(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		// Earliest expiry first; t6 and t1 expire together and go by id.
		// A lot read back says the merchant of its earn (an adjustment's
		// none), which the write path neither needs nor keeps in the lot.
		earnedAt := func(l ledger.Lot, merchant string) ledger.Lot { l.MerchantID = merchant; return l }
		want := []ledger.Lot{earnedAt(w.lots[1], "m1"), w.lots[3], earnedAt(w.lots[0], "m1")}
		if !reflect.DeepEqual(lots, want) {
			t.Errorf("alice's lots:\n got %+v\nwant %+v", lots, want)
		}
		if h, err := db.Hold(ctx, t3); err != nil || h != w.hold {
			t.Errorf("hold = %+v, %v; want %+v", h, err, w.hold)
		}
		_, err = db.Hold(ctx, "nope")
		wantCode(t, err, ledger.CodeHoldNotFound)
	})

	t.Run("idempotency records", func(t *testing.T) {
		rec, ok, err := db.Idempotency(ctx, "key-pos", "idem-1")
		if err != nil || !ok || !reflect.DeepEqual(rec, w.idem[0]) {
			t.Errorf("idempotency = %+v, %v, %v; want %+v", rec, ok, err, w.idem[0])
		}
		if _, ok, err := db.Idempotency(ctx, "key-other", "idem-1"); ok || err != nil {
			t.Errorf("another caller's key found: %v, %v", ok, err)
		}
	})

	t.Run("due lots and holds", func(t *testing.T) {
		day := 24 * time.Hour
		for _, tc := range []struct {
			now   time.Time
			limit int
			want  []string
		}{
			{base.Add(10*day - time.Microsecond), 10, nil},
			{base.Add(10 * day), 10, []string{"alice"}}, // at or before now
			{base.Add(30 * day), 10, []string{"alice"}}, // one member, however many lots
			{base.Add(400 * day), 10, []string{"alice", "bob"}},
			{base.Add(400 * day), 1, nil}, // one of them
		} {
			got, err := db.DueLotMembers(ctx, tc.now, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if tc.want == nil && tc.limit == 1 {
				if len(got) != 1 {
					t.Errorf("due lot members with limit 1 = %v", got)
				}
				continue
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("due lot members at %v = %v, want %v", tc.now, got, tc.want)
			}
		}
		if got, err := db.DueHolds(ctx, w.hold.ExpiresAt.Add(-time.Microsecond), 10); err != nil || len(got) != 0 {
			t.Errorf("due holds before expiry = %v, %v", got, err)
		}
		if got, err := db.DueHolds(ctx, w.hold.ExpiresAt, 10); err != nil || !slices.Equal(got, []string{t3}) {
			t.Errorf("due holds at expiry = %v, %v", got, err)
		}
	})

	t.Run("audit scans", func(t *testing.T) {
		var seqs []int64
		err := db.Audit().Transactions(ctx, func(tx ledger.Transaction) error {
			seqs = append(seqs, tx.Seq)
			if !reflect.DeepEqual(tx, w.txns[tx.ID]) {
				t.Errorf("audit read transaction %s differently", tx.ID)
			}
			return nil
		})
		if err != nil || !slices.Equal(seqs, []int64{1, 2, 3, 4, 5, 6}) {
			t.Errorf("audit transactions in order %v, %v", seqs, err)
		}
		stop := errors.New("stop")
		n := 0
		err = db.Audit().Transactions(ctx, func(ledger.Transaction) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Errorf("a callback error ends the scan: got %v after %d calls", err, n)
		}
		members := map[int64]string{}
		err = db.Audit().Accounts(ctx, func(a ledger.Account, m string) error {
			members[a.ID] = m
			return nil
		})
		if err != nil || members[w.alice.AccountID] != "alice" || members[w.bob.AccountID] != "bob" ||
			members[w.issued] != "" || len(members) != 6 {
			t.Errorf("accounts = %v, %v", members, err)
		}
		seq, hash, err := db.Audit().Head(ctx)
		if err != nil || seq != 6 || string(hash) != string(w.headHash) {
			t.Errorf("head = %d, %x, %v", seq, hash, err)
		}
		if orphans, err := db.Audit().OrphanIdempotency(ctx); err != nil || len(orphans) != 0 {
			t.Errorf("orphans = %v, %v", orphans, err)
		}
	})
}

func TestBatchLoadsAndUpdates(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	w := newWorld(t, db)
	a := w.alice.AccountID

	err := db.Write(ctx, func(tx ledger.BatchTx) error {
		seq, hash, err := tx.Head(ctx)
		if err != nil || seq != w.headSeq || string(hash) != string(w.headHash) {
			t.Errorf("head = %d, %x, %v", seq, hash, err)
		}
		idem, err := tx.Idempotency(ctx, []ledger.IdemKey{w.idem[1].IdemKey, {Scope: "key-pos", Key: "unknown"}, {Scope: "other", Key: "idem-1"}})
		if err != nil || len(idem) != 1 || !reflect.DeepEqual(idem[w.idem[1].IdemKey], w.idem[1]) {
			t.Errorf("idempotency = %+v, %v", idem, err)
		}
		txns, err := tx.Transactions(ctx, []string{t1, t3, "nope"})
		if err != nil || len(txns) != 2 || !reflect.DeepEqual(txns[t1], w.txns[t1]) || !reflect.DeepEqual(txns[t3], w.txns[t3]) {
			t.Errorf("transactions = %+v, %v", txns, err)
		}
		holds, err := tx.Holds(ctx, []string{t3, "nope"})
		if err != nil || len(holds) != 1 || holds[t3] != w.hold {
			t.Errorf("holds = %+v, %v", holds, err)
		}
		members, err := tx.Members(ctx, []string{"alice", "bob", "nope"})
		if err != nil || len(members) != 2 || members["alice"] != w.alice || members["bob"] != w.bob {
			t.Errorf("members = %+v, %v", members, err)
		}
		stores, err := tx.Stores(ctx, []string{"s1", "nope"})
		if err != nil || len(stores) != 1 || stores["s1"] != (ledger.StoreInfo{Shop: w.s, Merchant: w.m}) {
			t.Errorf("stores = %+v, %v", stores, err)
		}
		receipts, err := tx.EarnedReceipts(ctx, []ledger.ReceiptKey{
			{MerchantID: "m1", StoreID: "s1", Receipt: "r1"},
			{MerchantID: "m1", StoreID: "s1", Receipt: "r3"},    // never used
			{MerchantID: "m1", StoreID: "other", Receipt: "r2"}, // another store's r2
		})
		if want := map[ledger.ReceiptKey]string{{MerchantID: "m1", StoreID: "s1", Receipt: "r1"}: t1}; err != nil || !reflect.DeepEqual(receipts, want) {
			t.Errorf("earned receipts = %v, %v; want %v", receipts, err, want)
		}
		accts, err := tx.Accounts(ctx, []int64{a, w.issued, 999})
		if want := map[int64]ledger.Account{a: {ID: a, Balance: 115, Held: 30}, w.issued: {ID: w.issued, Balance: -150}}; err != nil || !reflect.DeepEqual(accts, want) {
			t.Errorf("accounts = %v, %v; want %v", accts, err, want)
		}
		lots, err := tx.Lots(ctx, []string{"alice", "bob", "nope"})
		if want := map[string][]ledger.Lot{"alice": {w.lots[1], w.lots[3], w.lots[0]}, "bob": {w.lots[2]}}; err != nil || !reflect.DeepEqual(lots, want) {
			t.Errorf("lots:\n got %+v\nwant %+v", lots, want)
		}
		for name, load := range map[string]func() (int, error){
			"idempotency":  func() (int, error) { m, err := tx.Idempotency(ctx, nil); return len(m), err },
			"transactions": func() (int, error) { m, err := tx.Transactions(ctx, nil); return len(m), err },
			"accounts":     func() (int, error) { m, err := tx.Accounts(ctx, []int64{}); return len(m), err },
			"lots":         func() (int, error) { m, err := tx.Lots(ctx, nil); return len(m), err },
		} {
			if n, err := load(); n != 0 || err != nil {
				t.Errorf("%s of no keys = %d, %v", name, n, err)
			}
		}

		// Capture the hold (30: 10 from t2, 5 from t6, 15 from t1), cancel 10
		// points of t1 (taken from t1's own lot), hold 5 of bob's.
		t7, t8, t9 := "tx-g-capture", "tx-h-cancel", "tx-i-hold-bob"
		newTxns, head := chain(hash, seq, []ledger.Transaction{
			{ID: t7, Type: ledger.TxRedeem, MemberID: "alice", MerchantID: "m1", StoreID: "s1", Points: 30, RefID: t3,
				CreatedAt: base.Add(time.Minute), RestoreExpiresAt: w.lots[0].ExpiresAt,
				Postings: []ledger.Posting{{AccountID: w.redd, Amount: 30}, {AccountID: a, Amount: -30}}},
			{ID: t8, Type: ledger.TxCancelEarn, MemberID: "alice", MerchantID: "m1", StoreID: "s1", Points: 10, RefID: t1,
				PurchaseAmount: 100, CreatedAt: base.Add(time.Minute),
				Postings: []ledger.Posting{{AccountID: w.issued, Amount: 10}, {AccountID: a, Amount: -10}}},
			{ID: t9, Type: ledger.TxHold, MemberID: "bob", MerchantID: "m1", StoreID: "s1", Points: 5, CreatedAt: base.Add(time.Minute)},
		})
		for _, x := range newTxns {
			w.txns[x.ID] = x
		}
		captured := w.hold
		captured.Status = ledger.HoldCaptured
		return tx.Apply(ctx, &ledger.WriteSet{
			Transactions: newTxns,
			Accounts: []ledger.AccountChange{
				{ID: w.issued, BalanceDelta: 10},
				{ID: w.redd, BalanceDelta: 30},
				{ID: a, BalanceDelta: -40, HeldDelta: -30},
				{ID: w.bob.AccountID, HeldDelta: 5},
			},
			LotUpdates: []ledger.Lot{
				{ID: t1, MemberID: "alice", Points: 100, Remaining: 75, ExpiresAt: w.lots[0].ExpiresAt},
				{ID: t2, MemberID: "alice", Points: 50, Remaining: 0, ExpiresAt: w.lots[1].ExpiresAt},
				{ID: t6, MemberID: "alice", Points: 5, Remaining: 0, ExpiresAt: w.lots[3].ExpiresAt},
			},
			NewHolds: []ledger.Hold{{ID: t9, MemberID: "bob", MerchantID: "m1", StoreID: "s1", Points: 5,
				Status: ledger.HoldActive, ExpiresAt: base.Add(time.Hour), CreatedAt: base.Add(time.Minute)}},
			HoldUpdates: []ledger.Hold{captured},
			Cancels:     []ledger.CancelCounters{{ID: t1, CancelledPoints: 10, CancelledAmount: 100}},
			Idempotency: []ledger.IdemRecord{{IdemKey: ledger.IdemKey{Scope: "key-pos", Key: "idem-3"},
				RequestHash: []byte{7}, TxnID: t7, Response: []byte("{}"), CreatedAt: base.Add(time.Minute)}},
			HeadSeq:  seq + 3,
			HeadHash: head,
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := mustBeSound(t, db)
	if rep.Transactions != 9 || rep.HeadSeq != 9 {
		t.Errorf("audit counted %+v", rep)
	}
	if got, err := db.Transaction(ctx, t1); err != nil || got.CancelledPoints != 10 || got.CancelledAmount != 100 {
		t.Errorf("cancelled counters of t1 = %d, %d, %v", got.CancelledPoints, got.CancelledAmount, err)
	}
	if h, err := db.Hold(ctx, t3); err != nil || h.Status != ledger.HoldCaptured {
		t.Errorf("hold = %+v, %v", h, err)
	}
	lots, err := db.MemberLots(ctx, "alice")
	if err != nil || len(lots) != 1 || lots[0].ID != t1 || lots[0].Remaining != 75 {
		t.Errorf("alice's lots with points left = %+v, %v", lots, err)
	}
	if b, err := db.Balance(ctx, "alice"); err != nil || b != (ledger.Balance{MemberID: "alice", Balance: 75, Held: 0, Available: 75}) {
		t.Errorf("alice's balance = %+v, %v", b, err)
	}
	if b, err := db.Balance(ctx, "bob"); err != nil || b != (ledger.Balance{MemberID: "bob", Balance: 20, Held: 5, Available: 15}) {
		t.Errorf("bob's balance = %+v, %v", b, err)
	}
	if got, err := db.DueHolds(ctx, base.Add(24*time.Hour), 10); err != nil || !slices.Equal(got, []string{"tx-i-hold-bob"}) {
		t.Errorf("due holds = %v, %v (the captured hold is no longer active)", got, err)
	}
}

// TestFailedBatchWritesNothing: whatever fails inside Write, the whole
// transaction is rolled back.
func TestFailedBatchWritesNothing(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	w := newWorld(t, db)

	earn := func(id, receipt string) ledger.Transaction {
		txns, _ := chain(w.headHash, w.headSeq, []ledger.Transaction{{ID: id, Type: ledger.TxEarn, MemberID: "bob",
			MerchantID: "m1", StoreID: "s1", Receipt: receipt, PurchaseAmount: 10, Points: 1, CreatedAt: base,
			Postings: []ledger.Posting{{AccountID: w.issued, Amount: -1}, {AccountID: w.bob.AccountID, Amount: 1}}}})
		return txns[0]
	}
	good := earn("tx-new", "r9")
	for _, tc := range []struct {
		name string
		ws   ledger.WriteSet
		fail error // returned by fn after Apply, when set
	}{
		{"fn fails after apply", ledger.WriteSet{Transactions: []ledger.Transaction{good}, HeadSeq: good.Seq, HeadHash: good.Hash}, errors.New("boom")},
		{"receipt already earned", ledger.WriteSet{Transactions: []ledger.Transaction{earn("tx-again", "r1")}, HeadSeq: good.Seq, HeadHash: good.Hash}, nil},
		{"account missing", ledger.WriteSet{Transactions: []ledger.Transaction{good},
			Accounts: []ledger.AccountChange{{ID: w.bob.AccountID, BalanceDelta: 1}, {ID: 999, BalanceDelta: -1}}, HeadSeq: good.Seq, HeadHash: good.Hash}, nil},
		{"lot missing", ledger.WriteSet{Transactions: []ledger.Transaction{good},
			LotUpdates: []ledger.Lot{{ID: "nope", Remaining: 1}}, HeadSeq: good.Seq, HeadHash: good.Hash}, nil},
		{"hold missing", ledger.WriteSet{Transactions: []ledger.Transaction{good},
			HoldUpdates: []ledger.Hold{{ID: "nope", Status: ledger.HoldVoided}}, HeadSeq: good.Seq, HeadHash: good.Hash}, nil},
		{"cancelled transaction missing", ledger.WriteSet{Transactions: []ledger.Transaction{good},
			Cancels: []ledger.CancelCounters{{ID: "nope", CancelledPoints: 1}}, HeadSeq: good.Seq, HeadHash: good.Hash}, nil},
		{"idempotency key taken", ledger.WriteSet{Transactions: []ledger.Transaction{good},
			Idempotency: []ledger.IdemRecord{w.idem[0]}, HeadSeq: good.Seq, HeadHash: good.Hash}, nil},
		{"seq taken", ledger.WriteSet{Transactions: []ledger.Transaction{func() ledger.Transaction { x := good; x.Seq = 1; return x }()},
			HeadSeq: good.Seq, HeadHash: good.Hash}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := db.Write(ctx, func(tx ledger.BatchTx) error {
				if _, _, err := tx.Head(ctx); err != nil {
					return err
				}
				if err := tx.Apply(ctx, &tc.ws); err != nil {
					return err
				}
				return tc.fail
			})
			if err == nil {
				t.Fatal("the batch succeeded")
			}
			if tc.fail != nil && !errors.Is(err, tc.fail) {
				t.Errorf("Write returned %v, want fn's error", err)
			}
			if _, err := db.Transaction(ctx, good.ID); ledger.ErrorCode(err) != ledger.CodeTransactionNotFound {
				t.Errorf("the batch's transaction was written: %v", err)
			}
			if b, _ := db.Balance(ctx, "bob"); b.Balance != 20 {
				t.Errorf("bob's balance changed to %d", b.Balance)
			}
			mustBeSound(t, db)
		})
	}
}

// TestAuditCatchesDamage edits the file behind the ledger's back.
func TestAuditCatchesDamage(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		query func(w *world) (string, []any)
		kinds []string
	}{
		{"a transaction's points changed", func(*world) (string, []any) {
			return `UPDATE transactions SET points = points + 1 WHERE id = ?`, []any{t2}
		}, []string{ledger.BadHashChain}},
		{"a posting changed", func(w *world) (string, []any) {
			return `UPDATE postings SET amount = amount + 1 WHERE txn_id = ? AND account_id = ?`, []any{t1, w.alice.AccountID}
		}, []string{ledger.BadHashChain, ledger.BadUnbalanced, ledger.BadBalance}},
		{"a balance changed", func(w *world) (string, []any) {
			return `UPDATE accounts SET balance = balance + 7 WHERE id = ?`, []any{w.bob.AccountID}
		}, []string{ledger.BadBalance, ledger.BadLots}},
		{"a transaction deleted", func(*world) (string, []any) {
			return `DELETE FROM transactions WHERE id = ?`, []any{t2}
		}, []string{ledger.BadSequence, ledger.BadHashChain, ledger.BadBalance, ledger.BadIdempotency}},
		{"a hold released behind the ledger's back", func(*world) (string, []any) {
			return `UPDATE holds SET status = 'voided' WHERE id = ?`, []any{t3}
		}, []string{ledger.BadHeld}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openTest(t)
			w := newWorld(t, db)
			q, args := tc.query(w)
			if err := db.Exec(ctx, q, args...); err != nil {
				t.Fatal(err)
			}
			rep, err := ledger.Verify(ctx, db.Audit())
			if err != nil {
				t.Fatal(err)
			}
			found := map[string]bool{}
			for _, d := range rep.Discrepancies {
				found[d.Kind] = true
			}
			for _, k := range tc.kinds {
				if !found[k] {
					t.Errorf("audit missed %s; found %+v", k, rep.Discrepancies)
				}
			}
		})
	}
}

// TestWithTheWriter runs the real engine on the store: every kind of
// operation, then the expiry pass, then the audit.
func TestWithTheWriter(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	now := base
	clock := func() time.Time { return now } // only moved while the writer is idle
	m := ledger.Merchant{ID: ledger.NewID(), Name: "Bakery", EarnRateBP: 1000, PointValidityDays: 30, Status: "active", CreatedAt: base}
	if err := db.CreateMerchant(ctx, &m); err != nil {
		t.Fatal(err)
	}
	s := ledger.Shop{ID: ledger.NewID(), MerchantID: m.ID, Name: "Corner", CreatedAt: base}
	if err := db.CreateStore(ctx, s); err != nil {
		t.Fatal(err)
	}
	var members []string
	for range 20 {
		mem := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Status: "active", CreatedAt: base}
		if err := db.CreateMember(ctx, &mem); err != nil {
			t.Fatal(err)
		}
		members = append(members, mem.ID)
	}
	wr := ledger.NewWriter(db, ledger.WriterConfig{Now: clock, MaxBatch: 64})
	defer func() { wr.Close() }()
	pos := ledger.Actor{KeyID: "pos", MerchantID: m.ID}
	p := func(v int64) *int64 { return &v }
	submit := func(op ledger.Op) ledger.Result {
		t.Helper()
		op.Actor, op.IdempotencyKey = pos, ledger.NewID()
		res, err := wr.Submit(ctx, op)
		if err != nil {
			t.Fatalf("%s: %v", op.Kind, err)
		}
		return res
	}

	// Many earns at once, so that batches form.
	errs := make(chan error, len(members)*5)
	for i, mem := range members {
		for j := range 5 {
			go func() {
				_, err := wr.Submit(ctx, ledger.Op{Kind: ledger.OpEarn, Actor: pos, IdempotencyKey: ledger.NewID(),
					MemberID: mem, StoreID: s.ID, Receipt: ledger.NewID(), PurchaseAmount: p(int64(1000 * (i + j + 1)))})
				errs <- err
			}()
		}
	}
	for range len(members) * 5 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if wr.PerOp() <= 0 {
		t.Errorf("the writer's pace is %s after %d earns, want the time its batches took per operation", wr.PerOp(), len(members)*5)
	}
	earn := submit(ledger.Op{Kind: ledger.OpEarn, MemberID: members[0], StoreID: s.ID, Receipt: "R-1", PurchaseAmount: p(5000)})
	dup := ledger.Op{Kind: ledger.OpEarn, Actor: pos, IdempotencyKey: ledger.NewID(), MemberID: members[1], StoreID: s.ID,
		Receipt: "R-1", PurchaseAmount: p(5000)}
	if _, err := wr.Submit(ctx, dup); ledger.ErrorCode(err) != ledger.CodeReceiptEarned {
		t.Fatalf("second earn on a receipt: %v", err)
	}
	submit(ledger.Op{Kind: ledger.OpRedeem, MemberID: members[0], StoreID: s.ID, Receipt: "R-2", Points: p(30)})
	hold := submit(ledger.Op{Kind: ledger.OpHold, MemberID: members[0], StoreID: s.ID, Points: p(40), HoldSeconds: 60})
	submit(ledger.Op{Kind: ledger.OpCapture, HoldID: hold.Hold.ID, Points: p(25)})
	submit(ledger.Op{Kind: ledger.OpHold, MemberID: members[1], StoreID: s.ID, Points: p(10), HoldSeconds: 60})
	submit(ledger.Op{Kind: ledger.OpCancel, TransactionID: earn.Transaction.ID, PurchaseAmount: p(2500)})
	if _, err := wr.Submit(ctx, ledger.Op{Kind: ledger.OpAdjust, Actor: ledger.Actor{KeyID: "admin"}, IdempotencyKey: ledger.NewID(),
		MemberID: members[2], Points: p(-3), Reason: "typo"}); err != nil {
		t.Fatal(err)
	}
	mustBeSound(t, db)

	// A replay answers byte for byte what was stored.
	op := ledger.Op{Kind: ledger.OpEarn, Actor: pos, IdempotencyKey: "same-key", MemberID: members[3], StoreID: s.ID,
		Receipt: "R-3", PurchaseAmount: p(700)}
	first, err := wr.Submit(ctx, op)
	if err != nil {
		t.Fatal(err)
	}
	again, err := wr.Submit(ctx, op)
	if err != nil || !again.Replayed || string(again.Body) != string(first.Body) {
		t.Fatalf("replay = %+v, %v", again, err)
	}

	wr.Close() // let the clock move without a race
	now = base.Add(31 * 24 * time.Hour)
	wr = ledger.NewWriter(db, ledger.WriterConfig{Now: clock})
	st, err := ledger.ExpireDue(ctx, db, wr, now)
	if err != nil {
		t.Fatal(err)
	}
	if st.Holds != 1 || st.LotMembers != len(members) {
		t.Errorf("expiry pass = %+v; want 1 hold and %d members", st, len(members))
	}
	if due, err := db.DueLotMembers(ctx, now, 100); err != nil || len(due) != 0 {
		t.Errorf("due after the pass = %v, %v", due, err)
	}
	rep := mustBeSound(t, db)
	if rep.Transactions < 100 {
		t.Errorf("audit saw %d transactions", rep.Transactions)
	}
	// No connection is left in use once the work is done; the background
	// WAL checkpoint (checkpoint.go) may hold a reader for a moment, so
	// look until it is back (a leak never comes back).
	deadline := time.Now().Add(10 * time.Second)
	for {
		w, r, max := db.Stats()
		if w == 0 && r == 0 && max == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("connections in use after the work = %d, %d of %d", w, r, max)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}
