package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"
)

// batch applies a list of operations in memory, on top of the rows a BatchTx
// loaded, and collects what changed into one WriteSet. Each operation checks
// everything before it changes anything, so a failing operation leaves the
// batch exactly as it found it and fails alone.
type batch struct {
	tx  BatchTx
	now time.Time

	seq  int64
	hash []byte

	idem     map[IdemKey]IdemRecord
	txns     map[string]*Transaction
	holds    map[string]*Hold
	members  map[string]Member
	stores   map[string]StoreInfo
	receipts map[ReceiptKey]string
	accounts map[int64]*Account
	lots     map[string][]*Lot // only members whose lots were loaded

	newTxns    []*Transaction
	deltas     map[int64]*AccountChange
	lotByID    map[string]*Lot
	newLots    map[string]bool
	dirtyLots  map[string]bool
	holdNew    map[string]bool
	dirtyHolds map[string]bool
	cancels    map[string]bool
	movedLots  map[string]bool
	merges     []MemberMerge
	newIdem    []IdemRecord
}

// runBatch loads what ops need, applies each, writes the result and returns
// one outcome per op. The returned error is a storage failure of the whole
// batch; per-op failures are in the outcomes.
//
// handOff is called once the batch's writes are handed to the store, just
// before the commit: the next batch may then be taken from the queue.
func runBatch(ctx context.Context, tx BatchTx, now time.Time, ops []Op, handOff func()) ([]outcome, error) {
	b := &batch{
		tx: tx, now: MicroTime(now),
		deltas: map[int64]*AccountChange{}, lotByID: map[string]*Lot{}, newLots: map[string]bool{},
		dirtyLots: map[string]bool{}, holdNew: map[string]bool{}, dirtyHolds: map[string]bool{},
		cancels: map[string]bool{}, movedLots: map[string]bool{}, lots: map[string][]*Lot{}, accounts: map[int64]*Account{},
		txns: map[string]*Transaction{}, holds: map[string]*Hold{},
	}
	if err := b.load(ctx, ops); err != nil {
		return nil, err
	}
	out := make([]outcome, len(ops))
	for i := range ops {
		out[i] = b.apply(&ops[i])
	}
	if err := tx.Apply(ctx, b.writeSet()); err != nil {
		return nil, err
	}
	handOff()
	return out, nil
}

type outcome struct {
	res Result
	err error
}

// prefetchOf lists what ops name directly.
func prefetchOf(ops []Op) Prefetch {
	var p Prefetch
	for _, op := range ops {
		if op.IdempotencyKey != "" {
			p.IdemKeys = append(p.IdemKeys, IdemKey{op.Actor.KeyID, op.IdempotencyKey})
		}
		if op.MemberID != "" {
			p.MemberIDs = append(p.MemberIDs, op.MemberID)
		}
		if op.StoreID != "" {
			p.StoreIDs = append(p.StoreIDs, op.StoreID)
		}
		switch op.Kind {
		case OpEarn:
			p.Receipts = append(p.Receipts, ReceiptKey{StoreID: op.StoreID, Receipt: op.Receipt})
		case OpRedeem, OpExpireLots:
			p.LotMemberIDs = append(p.LotMemberIDs, op.MemberID)
		case OpAdjust:
			if op.Points != nil && *op.Points < 0 {
				p.LotMemberIDs = append(p.LotMemberIDs, op.MemberID)
			}
		case OpCancel:
			p.TransactionIDs = append(p.TransactionIDs, op.TransactionID)
		case OpCapture, OpVoid, OpExpireHold:
			p.HoldIDs = append(p.HoldIDs, op.HoldID)
		case OpMerge:
			p.MemberIDs = append(p.MemberIDs, op.FromMemberID)
			p.LotMemberIDs = append(p.LotMemberIDs, op.MemberID, op.FromMemberID)
		}
	}
	p.IdemKeys, p.MemberIDs, p.StoreIDs = uniq(p.IdemKeys), uniq(p.MemberIDs), uniq(p.StoreIDs)
	p.Receipts, p.LotMemberIDs = uniq(p.Receipts), uniq(p.LotMemberIDs)
	p.TransactionIDs, p.HoldIDs = uniq(p.TransactionIDs), uniq(p.HoldIDs)
	return p
}

func (b *batch) load(ctx context.Context, ops []Op) error {
	var err error
	if p, ok := b.tx.(Prefetcher); ok {
		if err := p.Prefetch(ctx, prefetchOf(ops)); err != nil {
			return fmt.Errorf("prefetch: %w", err)
		}
	}
	if b.seq, b.hash, err = b.tx.Head(ctx); err != nil {
		return fmt.Errorf("load head: %w", err)
	}
	var keys []IdemKey
	var txnIDs, holdIDs []string
	for _, op := range ops {
		if op.IdempotencyKey != "" {
			keys = append(keys, IdemKey{op.Actor.KeyID, op.IdempotencyKey})
		}
		switch op.Kind {
		case OpCancel:
			txnIDs = append(txnIDs, op.TransactionID)
		case OpCapture, OpVoid, OpExpireHold:
			holdIDs = append(holdIDs, op.HoldID)
		}
	}
	if b.idem, err = b.tx.Idempotency(ctx, uniq(keys)); err != nil {
		return fmt.Errorf("load idempotency: %w", err)
	}
	txns, err := b.tx.Transactions(ctx, uniq(txnIDs))
	if err != nil {
		return fmt.Errorf("load transactions: %w", err)
	}
	for id, t := range txns {
		b.txns[id] = &t
	}
	holds, err := b.tx.Holds(ctx, uniq(holdIDs))
	if err != nil {
		return fmt.Errorf("load holds: %w", err)
	}
	for id, h := range holds {
		b.holds[id] = &h
	}

	// Members and stores of the ops and of what they refer to; members whose
	// points may be taken need their lots.
	var memberIDs, storeIDs, debitMembers []string
	var receipts []ReceiptKey
	for _, op := range ops {
		m, s, debit := op.MemberID, op.StoreID, false
		switch op.Kind {
		case OpRedeem, OpExpireLots:
			debit = true
		case OpAdjust:
			debit = op.Points != nil && *op.Points < 0
		case OpCancel:
			if t := b.txns[op.TransactionID]; t != nil {
				m, s, debit = t.MemberID, t.StoreID, t.Type == TxEarn
			}
		case OpCapture, OpVoid, OpExpireHold:
			if h := b.holds[op.HoldID]; h != nil {
				m, s, debit = h.MemberID, h.StoreID, op.Kind == OpCapture
			}
		case OpMerge:
			// Both sides' lots: the merged member's move, and the other's
			// may pay a debt the merged member brings.
			debit = true
			memberIDs = append(memberIDs, op.FromMemberID)
			debitMembers = append(debitMembers, op.FromMemberID)
		}
		if m != "" {
			memberIDs = append(memberIDs, m)
			if debit {
				debitMembers = append(debitMembers, m)
			}
		}
		if s != "" {
			storeIDs = append(storeIDs, s)
		}
	}
	if b.members, err = b.tx.Members(ctx, uniq(memberIDs)); err != nil {
		return fmt.Errorf("load members: %w", err)
	}
	// What reaches a merged member (the cancellation of one of its earns or
	// redemptions) reaches the member it went into: load that one too, with
	// its lots where the merged one's were needed.
	if err := b.loadMergedInto(ctx); err != nil {
		return err
	}
	for _, m := range uniq(debitMembers) {
		if r := b.resolve(m); r != m {
			debitMembers = append(debitMembers, r)
		}
	}
	if b.stores, err = b.tx.Stores(ctx, uniq(storeIDs)); err != nil {
		return fmt.Errorf("load stores: %w", err)
	}
	for _, op := range ops {
		if op.Kind == OpEarn {
			if s, ok := b.stores[op.StoreID]; ok {
				receipts = append(receipts, ReceiptKey{s.MerchantID, s.ID, op.Receipt})
			}
		}
	}
	if b.receipts, err = b.tx.EarnedReceipts(ctx, uniq(receipts)); err != nil {
		return fmt.Errorf("load receipts: %w", err)
	}
	// The batch adds to these as it goes; a store may return nil for none.
	if b.receipts == nil {
		b.receipts = map[ReceiptKey]string{}
	}
	if b.idem == nil {
		b.idem = map[IdemKey]IdemRecord{}
	}
	accountIDs := []int64{AccountExpired, AccountAdjustments}
	for _, m := range b.members {
		accountIDs = append(accountIDs, m.AccountID)
	}
	for _, s := range b.stores {
		accountIDs = append(accountIDs, s.Merchant.IssuedAccount, s.Merchant.RedeemedAccount)
	}
	accounts, err := b.tx.Accounts(ctx, uniq(accountIDs))
	if err != nil {
		return fmt.Errorf("load accounts: %w", err)
	}
	for id, a := range accounts {
		b.accounts[id] = &a
	}
	lots, err := b.tx.Lots(ctx, uniq(debitMembers))
	if err != nil {
		return fmt.Errorf("load lots: %w", err)
	}
	for _, m := range uniq(debitMembers) {
		list := make([]*Lot, 0, len(lots[m]))
		for _, l := range lots[m] {
			l := l
			list = append(list, &l)
			b.lotByID[l.ID] = &l
		}
		b.lots[m] = list
	}
	return nil
}

// loadMergedInto loads the members that loaded merged members went into.
// A merge re-points what was merged into the member it merges, so one round
// finds them; a few more bound the reads if a store's rows say otherwise.
func (b *batch) loadMergedInto(ctx context.Context) error {
	for range 4 {
		var want []string
		for _, m := range b.members {
			if m.MergedInto != "" {
				if _, ok := b.members[m.MergedInto]; !ok {
					want = append(want, m.MergedInto)
				}
			}
		}
		if len(want) == 0 {
			return nil
		}
		more, err := b.tx.Members(ctx, uniq(want))
		if err != nil {
			return fmt.Errorf("load members merged into: %w", err)
		}
		if len(more) == 0 {
			return nil
		}
		for id, m := range more {
			b.members[id] = m
		}
	}
	return nil
}

// resolve follows merges from a member id to the member that now stands for
// it (the id itself unless it was merged).
func (b *batch) resolve(id string) string {
	for range 8 {
		m, ok := b.members[id]
		if !ok || m.Status != StatusMerged || m.MergedInto == "" {
			return id
		}
		id = m.MergedInto
	}
	return id
}

func uniq[T comparable](in []T) []T {
	seen := make(map[T]bool, len(in))
	out := in[:0:0]
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// apply runs one op: an idempotent replay, a refusal, or a new transaction.
func (b *batch) apply(op *Op) outcome {
	var key IdemKey
	var fp []byte
	if op.IdempotencyKey != "" {
		key = IdemKey{op.Actor.KeyID, op.IdempotencyKey}
		fp = op.Fingerprint()
		if rec, ok := b.idem[key]; ok {
			if !bytes.Equal(rec.RequestHash, fp) {
				return outcome{err: Errorf(CodeIdempotencyReused,
					"this Idempotency-Key was already used for a different request; use a new key for a new request")}
			}
			return outcome{res: Result{Replayed: true, Body: rec.Response}}
		}
	}
	res, err := b.do(op)
	if err != nil {
		return outcome{err: err}
	}
	if res.Transaction == nil { // nothing to do (internal ops)
		return outcome{res: res}
	}
	resp := Response{Transaction: *res.Transaction, Balance: res.Balance.Balance, Held: res.Balance.Held,
		Available: res.Balance.Available, Hold: res.Hold}
	body, err := json.Marshal(resp)
	if err != nil {
		return outcome{err: fmt.Errorf("encode response: %w", err)}
	}
	res.Body = body
	if op.IdempotencyKey != "" {
		rec := IdemRecord{IdemKey: key, RequestHash: fp, TxnID: res.Transaction.ID, Response: body, CreatedAt: b.now}
		b.idem[key] = rec
		b.newIdem = append(b.newIdem, rec)
	}
	return outcome{res: res}
}

func (b *batch) do(op *Op) (Result, error) {
	switch op.Kind {
	case OpEarn:
		return b.earn(op)
	case OpRedeem:
		return b.redeem(op)
	case OpHold:
		return b.hold(op)
	case OpCapture:
		return b.capture(op)
	case OpVoid:
		return b.void(op)
	case OpExpireHold:
		return b.expireHold(op)
	case OpCancel:
		return b.cancel(op)
	case OpAdjust:
		return b.adjust(op)
	case OpExpireLots:
		return b.expireLots(op)
	case OpMerge:
		return b.merge(op)
	}
	return Result{}, Invalid("kind", "unknown operation %q", op.Kind)
}

// member finds a member and its account. trading says the op gives or spends
// points at a store (earn, redeem, hold), which a suspended member may not
// do; an operator's adjustment (and a cancellation, which does not come
// here) still applies to a suspended member, so that an operator can put
// right what happened before or during the suspension.
func (b *batch) member(id string, trading bool) (Member, *Account, error) {
	m, ok := b.members[id]
	if !ok {
		return Member{}, nil, Errorf(CodeMemberNotFound, "no member with id %q", id)
	}
	// A merged member is the member it went into: nothing reaches it any
	// more, and the caller is told where to go instead.
	if m.Status == StatusMerged {
		return Member{}, nil, &Error{Code: CodeMemberMerged, Field: "member_id",
			Message: fmt.Sprintf("member %s was merged into member %s: use %s", id, m.MergedInto, m.MergedInto)}
	}
	if trading && m.Status == StatusSuspended {
		return Member{}, nil, Errorf(CodeMemberSuspended, "member %s is suspended", id)
	}
	// A withdrawn member's points are frozen: no earn, redeem, hold or
	// adjustment reaches them (cancellations, captures and voids of what was
	// under way, and expiry, still do). To a caller the member is gone.
	if m.Status == StatusWithdrawn {
		return Member{}, nil, Errorf(CodeMemberNotFound, "member %s has withdrawn", id)
	}
	a, ok := b.accounts[m.AccountID]
	if !ok {
		return Member{}, nil, fmt.Errorf("account %d of member %s not loaded", m.AccountID, id)
	}
	return m, a, nil
}

// store checks the store exists, its merchant trades, and the actor may act there.
func (b *batch) store(actor Actor, id string) (StoreInfo, error) {
	s, ok := b.stores[id]
	if !ok {
		return StoreInfo{}, Errorf(CodeStoreNotFound, "no store with id %q", id)
	}
	if actor.MerchantID != "" && actor.MerchantID != s.MerchantID || actor.StoreID != "" && actor.StoreID != s.ID {
		return StoreInfo{}, Errorf(CodeForbidden, "this key may not act at store %s", id)
	}
	if err := trades(s); err != nil {
		return StoreInfo{}, err
	}
	return s, nil
}

// trades refuses a store that may not take part in new earns, redemptions,
// holds or captures: its merchant or itself is suspended.
func trades(s StoreInfo) error {
	if s.Merchant.Status == StatusSuspended {
		return Errorf(CodeMerchantSuspended, "merchant %s is suspended", s.MerchantID)
	}
	if s.Status == StatusSuspended {
		return Errorf(CodeStoreSuspended, "store %s is suspended", s.ID)
	}
	return nil
}

func (b *batch) mayAct(actor Actor, merchantID, storeID string) error {
	if actor.MerchantID != "" && actor.MerchantID != merchantID || actor.StoreID != "" && actor.StoreID != storeID {
		return Errorf(CodeForbidden, "this key may not act on what another merchant or store did")
	}
	return nil
}

func (b *batch) earn(op *Op) (Result, error) {
	m, acct, err := b.member(op.MemberID, true)
	if err != nil {
		return Result{}, err
	}
	s, err := b.store(op.Actor, op.StoreID)
	if err != nil {
		return Result{}, err
	}
	rk := ReceiptKey{s.MerchantID, s.ID, op.Receipt}
	if prev, ok := b.receipts[rk]; ok {
		return Result{}, Errorf(CodeReceiptEarned, "receipt %q at store %s already earned points (transaction %s)", op.Receipt, s.ID, prev)
	}
	points := *op.PurchaseAmount * s.Merchant.EarnRateBP / 10_000 // ≤ 1e12·1e4: no overflow; rounds down
	if op.Points != nil {
		// Operators (no merchant on the actor: admin keys, repair) name
		// points to put right what the rate got wrong; a merchant's keys
		// only within the merchant's own cap.
		if op.Actor.MerchantID != "" && *op.Points > s.Merchant.MaxExplicitPoints {
			if s.Merchant.MaxExplicitPoints == 0 {
				return Result{}, &Error{Code: CodeExplicitPoints, Field: "points",
					Message: fmt.Sprintf("merchant %s earns by its rate: leave out points (an operator can set max_explicit_points with PATCH /v1/merchants/%s)", s.MerchantID, s.MerchantID)}
			}
			return Result{}, &Error{Code: CodeExplicitPoints, Field: "points",
				Message: fmt.Sprintf("merchant %s allows at most %d explicit points on an earn, %d asked", s.MerchantID, s.Merchant.MaxExplicitPoints, *op.Points)}
		}
		points = *op.Points
	}
	t := b.newTxn(Transaction{Type: TxEarn, MemberID: m.ID, MerchantID: s.MerchantID, StoreID: s.ID,
		Receipt: op.Receipt, PurchaseAmount: *op.PurchaseAmount, Points: points},
		Posting{acct.ID, points}, Posting{s.Merchant.IssuedAccount, -points})
	b.credit(m.ID, acct, points, t.ID, ExpiryAt(b.now, s.Merchant.PointValidityDays))
	b.receipts[rk] = t.ID
	return b.result(t, m.ID, acct, nil), nil
}

// spend checks what redeem and hold share: the member, the store, and that
// the points asked are available.
func (b *batch) spend(op *Op) (Member, *Account, StoreInfo, int64, error) {
	m, acct, err := b.member(op.MemberID, true)
	if err != nil {
		return Member{}, nil, StoreInfo{}, 0, err
	}
	s, err := b.store(op.Actor, op.StoreID)
	if err != nil {
		return Member{}, nil, StoreInfo{}, 0, err
	}
	p := *op.Points
	if avail := acct.Balance - acct.Held; avail < p {
		return Member{}, nil, StoreInfo{}, 0, Errorf(CodeInsufficientPoints, "member has %d points available, %d asked", max(avail, 0), p)
	}
	return m, acct, s, p, nil
}

func (b *batch) redeem(op *Op) (Result, error) {
	m, acct, s, p, err := b.spend(op)
	if err != nil {
		return Result{}, err
	}
	t := b.newTxn(Transaction{Type: TxRedeem, MemberID: m.ID, MerchantID: s.MerchantID, StoreID: s.ID,
		Receipt: op.Receipt, Points: p},
		Posting{acct.ID, -p}, Posting{s.Merchant.RedeemedAccount, p})
	t.RestoreExpiresAt = b.debit(m.ID, acct, p, "")
	return b.result(t, m.ID, acct, nil), nil
}

func (b *batch) hold(op *Op) (Result, error) {
	m, acct, s, p, err := b.spend(op)
	if err != nil {
		return Result{}, err
	}
	t := b.newTxn(Transaction{Type: TxHold, MemberID: m.ID, MerchantID: s.MerchantID, StoreID: s.ID, Points: p})
	h := &Hold{ID: t.ID, MemberID: m.ID, MerchantID: s.MerchantID, StoreID: s.ID, Points: p, Status: HoldActive,
		ExpiresAt: MicroTime(b.now.Add(time.Duration(op.HoldSeconds) * time.Second)), CreatedAt: b.now}
	b.holds[h.ID] = h
	b.holdNew[h.ID] = true
	b.change(acct, 0, p)
	return b.result(t, m.ID, acct, h), nil
}

func (b *batch) activeHold(op *Op) (*Hold, *Account, error) {
	h, ok := b.holds[op.HoldID]
	if !ok {
		return nil, nil, Errorf(CodeHoldNotFound, "no hold with id %q", op.HoldID)
	}
	if err := b.mayAct(op.Actor, h.MerchantID, h.StoreID); err != nil {
		return nil, nil, err
	}
	if h.Status != HoldActive {
		return nil, nil, Errorf(CodeHoldNotActive, "hold %s is %s", h.ID, h.Status)
	}
	m, ok := b.members[h.MemberID]
	if !ok {
		return nil, nil, Errorf(CodeMemberNotFound, "member %s of hold %s is gone", h.MemberID, h.ID)
	}
	return h, b.accounts[m.AccountID], nil
}

func (b *batch) capture(op *Op) (Result, error) {
	h, acct, err := b.activeHold(op)
	if err != nil {
		return Result{}, err
	}
	if !b.now.Before(h.ExpiresAt) {
		return Result{}, Errorf(CodeHoldExpired, "hold %s expired at %s", h.ID, h.ExpiresAt.Format(time.RFC3339))
	}
	p := h.Points
	if op.Points != nil {
		p = *op.Points
	}
	if p > h.Points {
		return Result{}, Invalid("points", "%d is more than the %d points held", p, h.Points)
	}
	// No check of the balance: an acknowledged hold is a promise. Its
	// points were available when it was made and nothing but a refund
	// (a cancelled earn) can take them since; a refund takes what is not
	// held first, and what it still lacked becomes debt here, as if the
	// capture had come before the refund (see debit).
	s, ok := b.stores[h.StoreID]
	if !ok {
		return Result{}, Errorf(CodeStoreNotFound, "store %s of hold %s is gone", h.StoreID, h.ID)
	}
	// A capture is the redemption itself: refused like one when the member,
	// the merchant or the store has been suspended since the hold. (A void
	// or the hold's own expiry still releases the points.)
	if b.members[h.MemberID].Status == StatusSuspended {
		return Result{}, Errorf(CodeMemberSuspended, "member %s is suspended", h.MemberID)
	}
	if err := trades(s); err != nil {
		return Result{}, err
	}
	b.change(acct, 0, -h.Points)
	t := b.newTxn(Transaction{Type: TxRedeem, MemberID: h.MemberID, MerchantID: h.MerchantID, StoreID: h.StoreID,
		Points: p, RefID: h.ID},
		Posting{acct.ID, -p}, Posting{s.Merchant.RedeemedAccount, p})
	t.RestoreExpiresAt = b.debit(h.MemberID, acct, p, "")
	h.Status = HoldCaptured
	b.touchHold(h)
	return b.result(t, h.MemberID, acct, h), nil
}

func (b *batch) void(op *Op) (Result, error) {
	h, acct, err := b.activeHold(op)
	if err != nil {
		return Result{}, err
	}
	return b.releaseHold(h, acct, TxHoldVoid, HoldVoided), nil
}

func (b *batch) expireHold(op *Op) (Result, error) {
	h, ok := b.holds[op.HoldID]
	if !ok || h.Status != HoldActive || b.now.Before(h.ExpiresAt) {
		return Result{}, nil // already resolved, or not due: nothing to do
	}
	m, ok := b.members[h.MemberID]
	if !ok {
		return Result{}, Errorf(CodeMemberNotFound, "member %s of hold %s is gone", h.MemberID, h.ID)
	}
	return b.releaseHold(h, b.accounts[m.AccountID], TxHoldExpire, HoldExpired), nil
}

func (b *batch) releaseHold(h *Hold, acct *Account, typ TxType, st HoldStatus) Result {
	b.change(acct, 0, -h.Points)
	t := b.newTxn(Transaction{Type: typ, MemberID: h.MemberID, MerchantID: h.MerchantID, StoreID: h.StoreID,
		Points: h.Points, RefID: h.ID})
	h.Status = st
	b.touchHold(h)
	return b.result(t, h.MemberID, acct, h)
}

func (b *batch) touchHold(h *Hold) {
	if !b.holdNew[h.ID] {
		b.dirtyHolds[h.ID] = true
	}
}

func (b *batch) cancel(op *Op) (Result, error) {
	orig, ok := b.txns[op.TransactionID]
	if !ok {
		return Result{}, Errorf(CodeTransactionNotFound, "no transaction with id %q", op.TransactionID)
	}
	if err := b.mayAct(op.Actor, orig.MerchantID, orig.StoreID); err != nil {
		return Result{}, err
	}
	if orig.Type != TxEarn && orig.Type != TxRedeem {
		return Result{}, Errorf(CodeNotCancellable, "a %s transaction cannot be cancelled; only earns and redemptions", orig.Type)
	}
	left := orig.Points - orig.CancelledPoints
	amount := orig.CancelledAmount
	var p int64
	switch {
	case op.Points != nil:
		p = *op.Points
		if p > left {
			return Result{}, Errorf(CodeCancelExceeds, "only %d points of transaction %s are left to cancel, %d asked", left, orig.ID, p)
		}
	case op.PurchaseAmount != nil:
		if orig.Type != TxEarn || orig.PurchaseAmount == 0 {
			return Result{}, Invalid("purchase_amount", "only an earn on a purchase can be cancelled by amount")
		}
		a := *op.PurchaseAmount
		if a > orig.PurchaseAmount-amount {
			return Result{}, Errorf(CodeCancelExceeds, "only %d of the purchase amount is left to cancel, %d asked", orig.PurchaseAmount-amount, a)
		}
		amount += a
		if amount == orig.PurchaseAmount {
			p = left // the last refund takes exactly what is left: the parts sum to the whole
		} else {
			p = min(left, mulDiv(orig.Points, a, orig.PurchaseAmount))
		}
	default:
		if left == 0 && (orig.Type != TxEarn || amount == orig.PurchaseAmount) {
			return Result{}, Errorf(CodeCancelExceeds, "transaction %s is already cancelled in full", orig.ID)
		}
		p = left
		if orig.Type == TxEarn {
			amount = orig.PurchaseAmount
		}
	}
	m, ok := b.members[b.resolve(orig.MemberID)]
	if !ok {
		return Result{}, Errorf(CodeMemberNotFound, "member %s of transaction %s is gone", orig.MemberID, orig.ID)
	}
	// The points of a merged member's transaction are now the member it
	// went into: a refund takes them back (or gives them back) there.
	acct := b.accounts[m.AccountID]
	s, ok := b.stores[orig.StoreID]
	if !ok {
		return Result{}, Errorf(CodeStoreNotFound, "store %s of transaction %s is gone", orig.StoreID, orig.ID)
	}
	var t *Transaction
	if orig.Type == TxEarn {
		// Policy: a refund always takes its points back, even when the member
		// has spent them: first from the earn's own lot, then from the other
		// lots, and what is still missing leaves the balance below zero, a
		// debt that the member's next points pay off first. Points that
		// active holds reserve count as spent: the refund leaves them to the
		// holds (available goes below zero instead), and what of them it
		// took becomes debt when a hold is captured.
		t = b.newTxn(Transaction{Type: TxCancelEarn, MemberID: m.ID, MerchantID: orig.MerchantID, StoreID: orig.StoreID,
			Points: p, RefID: orig.ID, PurchaseAmount: amount - orig.CancelledAmount},
			Posting{acct.ID, -p}, Posting{s.Merchant.IssuedAccount, p})
		b.debit(m.ID, acct, p, orig.ID)
	} else {
		// Points given back by a refunded redemption expire when the lots the
		// redemption used would have; past that, at the next expiry run.
		exp := orig.RestoreExpiresAt
		if exp.IsZero() {
			exp = ExpiryAt(b.now, s.Merchant.PointValidityDays)
		}
		t = b.newTxn(Transaction{Type: TxCancelRedeem, MemberID: m.ID, MerchantID: orig.MerchantID, StoreID: orig.StoreID,
			Points: p, RefID: orig.ID},
			Posting{acct.ID, p}, Posting{s.Merchant.RedeemedAccount, -p})
		b.credit(m.ID, acct, p, t.ID, exp)
	}
	orig.CancelledPoints += p
	orig.CancelledAmount = amount
	b.cancels[orig.ID] = true
	return b.result(t, m.ID, acct, nil), nil
}

// mulDiv is floor(a·b/c) for non-negative a, b and positive c, without overflow.
func mulDiv(a, b, c int64) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	q, _ := bits.Div64(hi, lo, uint64(c)) // a ≤ c·… by the callers' bounds: hi < c
	return int64(q)
}

func (b *batch) adjust(op *Op) (Result, error) {
	m, acct, err := b.member(op.MemberID, false)
	if err != nil {
		return Result{}, err
	}
	p := *op.Points
	t := &Transaction{Type: TxAdjust, MemberID: m.ID, Points: p, Reason: op.Reason}
	if p > 0 {
		t = b.newTxn(*t, Posting{acct.ID, p}, Posting{AccountAdjustments, -p})
		b.credit(m.ID, acct, p, t.ID, ExpiryAt(b.now, DefaultAdjustmentValidityDays))
	} else {
		if avail := acct.Balance - acct.Held; avail < -p {
			return Result{}, Errorf(CodeInsufficientPoints, "member has %d points available, the adjustment takes %d", max(avail, 0), -p)
		}
		t = b.newTxn(*t, Posting{acct.ID, p}, Posting{AccountAdjustments, -p})
		b.debit(m.ID, acct, -p, "")
	}
	return b.result(t, m.ID, acct, nil), nil
}

// merge moves member FromMemberID into MemberID: its whole balance in one
// transaction posted out of its account and into the other's, and its open
// lots, each keeping its points and its expiry date (and its id, the earn
// that made it, so that refunding that earn still takes from it first). A
// debt the merged member had (a refund of spent points) moves too and is
// paid from the other's lots like any debt. The merged member ends merged
// and stands for the other from then on. A merged member with points held
// is refused: its holds' captures and voids belong to it.
func (b *batch) merge(op *Op) (Result, error) {
	into, intoAcct, err := b.mergeSide(op.MemberID, "member_id")
	if err != nil {
		return Result{}, err
	}
	from, fromAcct, err := b.mergeSide(op.FromMemberID, "from_member_id")
	if err != nil {
		return Result{}, err
	}
	if fromAcct.Held > 0 {
		return Result{}, Errorf(CodeMergeRefused,
			"member %s has %d points reserved by active holds: capture or void them first (or let them expire), then merge", from.ID, fromAcct.Held)
	}
	p := fromAcct.Balance
	var open int64
	for _, l := range b.lots[from.ID] {
		open += l.Remaining
	}
	if open != max(p, 0) {
		return Result{}, fmt.Errorf("member %s has a balance of %d but open lots of %d: run pointd verify before merging", from.ID, p, open)
	}
	t := b.newTxn(Transaction{Type: TxMerge, MemberID: into.ID, RefID: from.ID, Points: p, Reason: op.Reason},
		Posting{intoAcct.ID, p}, Posting{fromAcct.ID, -p})
	switch {
	case p > 0:
		debt := max(0, -intoAcct.Balance)
		b.moveLots(from.ID, into.ID)
		left := min(debt, p) // a debt of the member merged into is paid first, as by any credit
		for _, l := range b.lots[into.ID] {
			if left == 0 {
				break
			}
			n := min(l.Remaining, left)
			b.takeLot(l, n)
			left -= n
		}
		b.change(intoAcct, p, 0)
	case p < 0:
		b.debit(into.ID, intoAcct, -p, "")
	}
	from.Status, from.MergedInto = StatusMerged, into.ID
	b.members[from.ID] = from
	for id, m := range b.members {
		if m.MergedInto == from.ID {
			m.MergedInto = into.ID
			b.members[id] = m
		}
	}
	b.merges = append(b.merges, MemberMerge{From: from.ID, Into: into.ID, At: b.now})
	return b.result(t, into.ID, intoAcct, nil), nil
}

// mergeSide finds one member of a merge: neither side may be merged or
// withdrawn. A suspended member may be merged and merged into: suspension
// is a pause, and the merged points keep the status of the member they
// reach.
func (b *batch) mergeSide(id, field string) (Member, *Account, error) {
	m, ok := b.members[id]
	if !ok {
		return Member{}, nil, &Error{Code: CodeMemberNotFound, Field: field, Message: fmt.Sprintf("no member with id %q", id)}
	}
	switch m.Status {
	case StatusMerged:
		return Member{}, nil, &Error{Code: CodeMemberMerged, Field: field,
			Message: fmt.Sprintf("member %s was already merged into member %s", id, m.MergedInto)}
	case StatusWithdrawn:
		return Member{}, nil, &Error{Code: CodeMergeRefused, Field: field,
			Message: fmt.Sprintf("member %s has withdrawn: its points are frozen, it can be neither merged nor merged into", id)}
	}
	a, ok := b.accounts[m.AccountID]
	if !ok {
		return Member{}, nil, fmt.Errorf("account %d of member %s not loaded", m.AccountID, id)
	}
	return m, a, nil
}

// moveLots gives every open lot of one member to another, in expiry order.
func (b *batch) moveLots(from, into string) {
	list := b.lots[into]
	for _, l := range b.lots[from] {
		if l.Remaining == 0 {
			continue
		}
		l.MemberID = into
		if !b.newLots[l.ID] {
			b.movedLots[l.ID] = true
		}
		i := sort.Search(len(list), func(i int) bool { return lotLess(l, list[i]) })
		list = slices.Insert(list, i, l)
	}
	b.lots[into] = list
	b.lots[from] = nil
}

// expireLots posts what is left of a member's due lots, but never the points
// that active holds reserve: those expire after the hold ends.
func (b *batch) expireLots(op *Op) (Result, error) {
	m, ok := b.members[op.MemberID]
	if !ok {
		return Result{}, Errorf(CodeMemberNotFound, "no member with id %q", op.MemberID)
	}
	acct := b.accounts[m.AccountID]
	var due int64
	for _, l := range b.lots[m.ID] {
		if !l.ExpiresAt.After(b.now) {
			due += l.Remaining
		}
	}
	x := min(due, acct.Balance-acct.Held)
	if x <= 0 {
		return Result{}, nil
	}
	t := b.newTxn(Transaction{Type: TxExpire, MemberID: m.ID, Points: x},
		Posting{acct.ID, -x}, Posting{AccountExpired, x})
	left := x
	for _, l := range b.lots[m.ID] {
		if left == 0 {
			break
		}
		if l.ExpiresAt.After(b.now) || l.Remaining == 0 {
			continue
		}
		take := min(l.Remaining, left)
		b.takeLot(l, take)
		left -= take
	}
	b.change(acct, -x, 0)
	return b.result(t, m.ID, acct, nil), nil
}

// credit adds p points to a member: a debt left by a cancellation is paid off
// first, the rest becomes a lot (id lotID) expiring at exp.
func (b *batch) credit(memberID string, acct *Account, p int64, lotID string, exp time.Time) {
	if p == 0 {
		return
	}
	debt := max(0, -acct.Balance)
	l := &Lot{ID: lotID, MemberID: memberID, Points: p, Remaining: max(0, p-debt), ExpiresAt: exp}
	b.lotByID[l.ID] = l
	b.newLots[l.ID] = true
	if list, ok := b.lots[memberID]; ok {
		i := sort.Search(len(list), func(i int) bool { return lotLess(l, list[i]) })
		b.lots[memberID] = slices.Insert(list, i, l)
	}
	b.change(acct, p, 0)
}

// debit takes p points from a member's lots, the lot prefer first, then the
// earliest expiry first; what the lots cannot cover becomes debt (only
// cancellations, and the capture of a hold whose points a cancellation took,
// get there: every other debit checks the available points first). It
// returns the latest expiry among the lots it took from.
func (b *batch) debit(memberID string, acct *Account, p int64, prefer string) time.Time {
	var latest time.Time
	left := p
	take := func(l *Lot) {
		n := min(l.Remaining, left)
		if n == 0 {
			return
		}
		b.takeLot(l, n)
		left -= n
		if l.ExpiresAt.After(latest) {
			latest = l.ExpiresAt
		}
	}
	if l, ok := b.lotByID[prefer]; ok && prefer != "" && l.MemberID == memberID {
		take(l)
	}
	for _, l := range b.lots[memberID] {
		if left == 0 {
			break
		}
		take(l)
	}
	b.change(acct, -p, 0)
	return latest
}

func (b *batch) takeLot(l *Lot, n int64) {
	l.Remaining -= n
	if !b.newLots[l.ID] {
		b.dirtyLots[l.ID] = true
	}
}

func lotLess(a, b *Lot) bool {
	if !a.ExpiresAt.Equal(b.ExpiresAt) {
		return a.ExpiresAt.Before(b.ExpiresAt)
	}
	return a.ID < b.ID
}

func (b *batch) change(acct *Account, balance, held int64) {
	acct.Balance += balance
	acct.Held += held
	d := b.deltas[acct.ID]
	if d == nil {
		d = &AccountChange{ID: acct.ID}
		b.deltas[acct.ID] = d
	}
	d.BalanceDelta += balance
	d.HeldDelta += held
}

// newTxn numbers t and applies its postings to the accounts other than the
// member's (the member's goes through credit/debit). Hashes are chained once
// the batch is done, since a transaction's content is final only then.
func (b *batch) newTxn(t Transaction, postings ...Posting) *Transaction {
	id, err := uuid.NewV7()
	if err != nil {
		panic(err) // only when the system's random source fails
	}
	t.ID = id.String()
	t.CreatedAt = b.now
	for _, p := range postings {
		if p.Amount == 0 {
			continue
		}
		t.Postings = append(t.Postings, p)
	}
	slices.SortFunc(t.Postings, func(x, y Posting) int { return cmpInt(x.AccountID, y.AccountID) })
	for _, p := range t.Postings {
		if m, ok := b.members[t.MemberID]; ok && m.AccountID == p.AccountID {
			continue
		}
		if a := b.accounts[p.AccountID]; a != nil {
			b.change(a, p.Amount, 0)
		}
	}
	b.seq++
	t.Seq = b.seq
	p := &t
	b.newTxns = append(b.newTxns, p)
	b.txns[t.ID] = p
	return p
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (b *batch) result(t *Transaction, memberID string, acct *Account, h *Hold) Result {
	var hc *Hold
	if h != nil {
		c := *h
		hc = &c
	}
	tc := *t
	return Result{Transaction: &tc, Balance: NewBalance(memberID, *acct), Hold: hc}
}

func (b *batch) writeSet() *WriteSet {
	w := &WriteSet{HeadSeq: b.seq, Idempotency: b.newIdem}
	prev := b.hash
	for _, t := range b.newTxns {
		t.PrevHash = prev
		t.Hash = ChainHash(prev, t)
		prev = t.Hash
		w.Transactions = append(w.Transactions, *t)
	}
	w.HeadHash = prev
	for _, d := range b.deltas {
		if d.BalanceDelta != 0 || d.HeldDelta != 0 {
			w.Accounts = append(w.Accounts, *d)
		}
	}
	slices.SortFunc(w.Accounts, func(x, y AccountChange) int { return cmpInt(x.ID, y.ID) })
	for id := range b.newLots {
		w.NewLots = append(w.NewLots, *b.lotByID[id])
	}
	for id := range b.dirtyLots {
		w.LotUpdates = append(w.LotUpdates, *b.lotByID[id])
	}
	slices.SortFunc(w.NewLots, func(x, y Lot) int { return cmpStr(x.ID, y.ID) })
	slices.SortFunc(w.LotUpdates, func(x, y Lot) int { return cmpStr(x.ID, y.ID) })
	for id := range b.holdNew {
		w.NewHolds = append(w.NewHolds, *b.holds[id])
	}
	for id := range b.dirtyHolds {
		w.HoldUpdates = append(w.HoldUpdates, *b.holds[id])
	}
	slices.SortFunc(w.NewHolds, func(x, y Hold) int { return cmpStr(x.ID, y.ID) })
	slices.SortFunc(w.HoldUpdates, func(x, y Hold) int { return cmpStr(x.ID, y.ID) })
	for id := range b.cancels {
		t := b.txns[id]
		w.Cancels = append(w.Cancels, CancelCounters{ID: id, CancelledPoints: t.CancelledPoints, CancelledAmount: t.CancelledAmount})
	}
	slices.SortFunc(w.Cancels, func(x, y CancelCounters) int { return cmpStr(x.ID, y.ID) })
	for id := range b.movedLots {
		w.LotMoves = append(w.LotMoves, *b.lotByID[id])
	}
	slices.SortFunc(w.LotMoves, func(x, y Lot) int { return cmpStr(x.ID, y.ID) })
	w.Merges = b.merges
	return w
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
