package ledger

import (
	"bytes"
	"context"
	"fmt"
)

// Discrepancy is one thing the audit found wrong.
type Discrepancy struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

// AuditReport is the result of Verify.
type AuditReport struct {
	Transactions  int64         `json:"transactions"`
	Postings      int64         `json:"postings"`
	Accounts      int64         `json:"accounts"`
	Members       int64         `json:"members"`
	Lots          int64         `json:"lots"`
	Holds         int64         `json:"holds"`
	HeadSeq       int64         `json:"head_seq"`
	Discrepancies []Discrepancy `json:"discrepancies"`
	// Truncated counts discrepancies found beyond the listed ones.
	Truncated int `json:"truncated,omitempty"`
}

// Sound reports whether the audit found nothing wrong.
func (r *AuditReport) Sound() bool { return len(r.Discrepancies) == 0 && r.Truncated == 0 }

const maxListed = 1000

func (r *AuditReport) add(kind, format string, args ...any) {
	if len(r.Discrepancies) >= maxListed {
		r.Truncated++
		return
	}
	r.Discrepancies = append(r.Discrepancies, Discrepancy{Kind: kind, Detail: fmt.Sprintf(format, args...)})
}

// Discrepancy kinds, stable for scripts.
const (
	BadUnbalanced    = "unbalanced_transaction"
	BadHashChain     = "hash_chain_broken"
	BadSequence      = "sequence_gap"
	BadBalance       = "balance_mismatch"
	BadHeld          = "held_mismatch"
	BadLots          = "lots_mismatch"
	BadLot           = "lot_out_of_range"
	BadNegative      = "negative_balance"
	BadCancelled     = "cancel_counter_mismatch"
	BadOverCancelled = "over_cancelled"
	BadIdempotency   = "orphan_idempotency_record"
	BadHead          = "head_mismatch"
	BadReference     = "dangling_reference"
	BadMerge         = "merge_mismatch"
)

type origin struct {
	typ             TxType
	points          int64
	purchase        int64
	cancelled       int64 // the stored counters
	cancelledAmount int64
	summed          int64 // what cancellations referencing it add up to
	summedAmount    int64
}

// Snapshotter is a Store that can run all the audit's scans on one
// consistent snapshot, so that auditing a live database is exact.
type Snapshotter interface {
	AuditSnapshot(ctx context.Context, fn func(AuditSource) error) error
}

// VerifyStore audits s, on one snapshot when s offers one.
func VerifyStore(ctx context.Context, s Store) (*AuditReport, error) {
	sn, ok := s.(Snapshotter)
	if !ok {
		return Verify(ctx, s.Audit())
	}
	var rep *AuditReport
	err := sn.AuditSnapshot(ctx, func(src AuditSource) error {
		var err error
		rep, err = Verify(ctx, src)
		return err
	})
	return rep, err
}

// Verify audits the whole ledger: every transaction balanced and chained,
// balances equal to their postings, lots equal to balances, held points equal
// to active holds, no balance below zero but by the cancellation policy,
// cancellations never above their original, every idempotency record backed
// by a transaction.
func Verify(ctx context.Context, src AuditSource) (*AuditReport, error) {
	r := &AuditReport{}
	sums := map[int64]int64{}
	memberAcct := map[string]int64{}
	running := map[int64]int64{} // member account → balance replayed in seq order
	// Held points replayed in seq order, by member, and the points of each
	// hold still active at that point of the replay.
	runningHeld := map[string]int64{}
	activeHolds := map[string]int64{}
	origins := map[string]*origin{}
	merged := map[string]string{} // merged member → the merge transaction
	var prevHash []byte
	var lastSeq int64
	err := src.Transactions(ctx, func(t Transaction) error {
		r.Transactions++
		if t.Seq != lastSeq+1 {
			r.add(BadSequence, "transaction %s has seq %d after %d", t.ID, t.Seq, lastSeq)
		}
		lastSeq = t.Seq
		if !bytes.Equal(t.PrevHash, prevHash) {
			r.add(BadHashChain, "transaction %s (seq %d) does not chain to the one before it", t.ID, t.Seq)
		}
		if want := ChainHash(t.PrevHash, &t); !bytes.Equal(want, t.Hash) {
			r.add(BadHashChain, "transaction %s (seq %d) was changed after it was written: its content does not match its hash", t.ID, t.Seq)
		}
		prevHash = t.Hash
		var total int64
		for _, p := range t.Postings {
			r.Postings++
			total += p.Amount
			sums[p.AccountID] += p.Amount
		}
		if total != 0 {
			r.add(BadUnbalanced, "transaction %s (seq %d) postings sum to %d", t.ID, t.Seq, total)
		}
		// The member's posting is the one that is not a merchant's or the
		// platform's; find it by the member's account once known.
		switch t.Type {
		case TxEarn, TxRedeem:
			origins[t.ID] = &origin{typ: t.Type, points: t.Points, purchase: t.PurchaseAmount,
				cancelled: t.CancelledPoints, cancelledAmount: t.CancelledAmount}
		case TxCancelEarn, TxCancelRedeem:
			o := origins[t.RefID]
			if o == nil {
				r.add(BadReference, "cancellation %s refers to %s, which is not an earlier earn or redemption", t.ID, t.RefID)
			} else {
				o.summed += t.Points
				o.summedAmount += t.PurchaseAmount // what this refund added to the refunded amount
				if (t.Type == TxCancelEarn) != (o.typ == TxEarn) {
					r.add(BadReference, "cancellation %s is of the wrong type for %s", t.ID, t.RefID)
				}
			}
		}
		if t.Type == TxMerge {
			r.verifyMerge(t, memberAcct, running, merged)
			return nil
		}
		heldBefore := runningHeld[t.MemberID]
		switch t.Type {
		case TxHold:
			activeHolds[t.ID] = t.Points
			runningHeld[t.MemberID] += t.Points
		case TxHoldVoid, TxHoldExpire, TxRedeem:
			if p, ok := activeHolds[t.RefID]; ok && t.RefID != "" {
				delete(activeHolds, t.RefID)
				runningHeld[t.MemberID] -= p
			}
		}
		// What may not go below zero is what the member can spend, balance
		// minus held: every operation checks it but a cancelled earn, which
		// may overdraw (the documented debt). A capture never lowers it (it
		// releases at least what it posts), so it may take the balance
		// below zero only where a cancellation already took the available
		// points there.
		acct, posts := memberAccountOf(t)
		if posts {
			if prev, seen := memberAcct[t.MemberID]; seen && prev != acct {
				r.add(BadReference, "member %s posts to two accounts (%d and %d)", t.MemberID, prev, acct)
			}
			memberAcct[t.MemberID] = acct
		} else {
			acct = memberAcct[t.MemberID] // a hold posts nothing
		}
		if posts || t.Type == TxHold {
			before := running[acct]
			after := before
			for _, p := range t.Postings {
				if p.AccountID == acct {
					after += p.Amount
				}
			}
			running[acct] = after
			availBefore, availAfter := before-heldBefore, after-runningHeld[t.MemberID]
			if availAfter < 0 && availAfter < availBefore && t.Type != TxCancelEarn {
				r.add(BadNegative, "transaction %s (%s) took member %s below zero (available %d → %d); only a cancelled earn may",
					t.ID, t.Type, t.MemberID, availBefore, availAfter)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan transactions: %w", err)
	}
	r.HeadSeq = lastSeq
	for id, o := range origins {
		if o.summed != o.cancelled {
			r.add(BadCancelled, "transaction %s records %d points cancelled, its cancellations sum to %d", id, o.cancelled, o.summed)
		}
		if o.summed > o.points {
			r.add(BadOverCancelled, "transaction %s of %d points had %d cancelled", id, o.points, o.summed)
		}
		// The refunded amount decides what the next refund by amount takes
		// back, so it is audited like the points.
		if o.summedAmount != o.cancelledAmount {
			r.add(BadCancelled, "transaction %s records %d of its purchase refunded, its cancellations sum to %d", id, o.cancelledAmount, o.summedAmount)
		}
		if o.summedAmount > o.purchase {
			r.add(BadOverCancelled, "transaction %s of a %d purchase had %d refunded", id, o.purchase, o.summedAmount)
		}
	}
	seq, hash, err := src.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("read head: %w", err)
	}
	if seq != lastSeq || !bytes.Equal(hash, prevHash) {
		r.add(BadHead, "the chain head says seq %d, the last transaction is seq %d (or their hashes differ)", seq, lastSeq)
	}

	balances := map[string]int64{} // member id → balance
	helds := map[string]int64{}
	err = src.Accounts(ctx, func(a Account, memberID string) error {
		r.Accounts++
		if a.Balance != sums[a.ID] {
			r.add(BadBalance, "account %d has balance %d, its postings sum to %d", a.ID, a.Balance, sums[a.ID])
		}
		delete(sums, a.ID)
		if memberID != "" {
			r.Members++
			balances[memberID] = a.Balance
			helds[memberID] = a.Held
		} else if a.Held != 0 {
			r.add(BadHeld, "account %d is not a member's but holds %d points", a.ID, a.Held)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan accounts: %w", err)
	}
	for id, s := range sums {
		r.add(BadBalance, "postings to account %d (sum %d) but no such account", id, s)
	}
	// A merged member's points all went into the other member, and nothing
	// reaches it after: it must hold none.
	for m, txn := range merged {
		if balances[m] != 0 || helds[m] != 0 {
			r.add(BadMerge, "member %s was merged (transaction %s) but has a balance of %d and %d held", m, txn, balances[m], helds[m])
		}
	}

	lotSums := map[string]int64{}
	err = src.Lots(ctx, func(l Lot) error {
		r.Lots++
		if l.Remaining < 0 || l.Remaining > l.Points {
			r.add(BadLot, "lot %s of member %s has %d of %d points remaining", l.ID, l.MemberID, l.Remaining, l.Points)
		}
		lotSums[l.MemberID] += l.Remaining
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan lots: %w", err)
	}
	for m, bal := range balances {
		if want := max(bal, 0); lotSums[m] != want {
			r.add(BadLots, "member %s has balance %d but lots remaining sum to %d", m, bal, lotSums[m])
		}
		delete(lotSums, m)
	}
	for m, s := range lotSums {
		r.add(BadLots, "lots of %d points belong to %s, which is no member", s, m)
	}

	activeHeld := map[string]int64{}
	err = src.Holds(ctx, func(h Hold) error {
		r.Holds++
		if h.Status == HoldActive {
			activeHeld[h.MemberID] += h.Points
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan holds: %w", err)
	}
	for m, held := range helds {
		if held != activeHeld[m] {
			r.add(BadHeld, "member %s has %d points held, active holds sum to %d", m, held, activeHeld[m])
		}
	}

	orphans, err := src.OrphanIdempotency(ctx)
	if err != nil {
		return nil, fmt.Errorf("scan idempotency: %w", err)
	}
	for _, k := range orphans {
		r.add(BadIdempotency, "idempotency key %q of %s answers for a transaction that does not exist", k.Key, k.Scope)
	}
	return r, nil
}

// verifyMerge checks one merge transaction: it moves exactly the merged
// member's whole balance (as replayed so far) into the other member, once.
// Points is the signed amount the member merged into receives, so its
// posting is the one of that amount; the other is the merged member's. A
// merge may leave the member merged into below zero only by the debt the
// merged member brought, which the replayed balances show.
func (r *AuditReport) verifyMerge(t Transaction, memberAcct map[string]int64, running map[int64]int64, merged map[string]string) {
	if t.RefID == "" || t.RefID == t.MemberID {
		r.add(BadReference, "merge %s does not name another member it merged (%q)", t.ID, t.RefID)
		return
	}
	if prev, ok := merged[t.RefID]; ok {
		r.add(BadMerge, "member %s is merged twice (transactions %s and %s)", t.RefID, prev, t.ID)
	}
	merged[t.RefID] = t.ID
	if t.Points == 0 {
		if len(t.Postings) != 0 {
			r.add(BadMerge, "merge %s moves no points but has postings", t.ID)
		}
		return
	}
	if len(t.Postings) != 2 {
		r.add(BadMerge, "merge %s of %d points has %d postings, not 2", t.ID, t.Points, len(t.Postings))
		return
	}
	into, from := t.Postings[0], t.Postings[1]
	if into.Amount != t.Points {
		into, from = from, into
	}
	if into.Amount != t.Points || from.Amount != -t.Points {
		r.add(BadMerge, "merge %s of %d points posts %d and %d", t.ID, t.Points, into.Amount, from.Amount)
		return
	}
	for _, side := range []struct {
		member string
		acct   int64
	}{{t.MemberID, into.AccountID}, {t.RefID, from.AccountID}} {
		if prev, seen := memberAcct[side.member]; seen && prev != side.acct {
			r.add(BadReference, "member %s posts to two accounts (%d and %d)", side.member, prev, side.acct)
		}
		memberAcct[side.member] = side.acct
	}
	if got := running[from.AccountID]; got != t.Points {
		r.add(BadMerge, "merge %s moved %d points of member %s, whose balance was %d", t.ID, t.Points, t.RefID, got)
	}
	running[from.AccountID] += from.Amount
	running[into.AccountID] += into.Amount
}

// memberAccountOf finds the member's account among t's postings: the member
// side is the only posting whose sign matches the transaction's effect on
// the member.
func memberAccountOf(t Transaction) (int64, bool) {
	if len(t.Postings) != 2 {
		return 0, false
	}
	var sign int64
	switch t.Type {
	case TxEarn, TxCancelRedeem:
		sign = 1
	case TxRedeem, TxCancelEarn, TxExpire:
		sign = -1
	case TxAdjust:
		sign = 1
		if t.Points < 0 {
			sign = -1
		}
	default:
		return 0, false
	}
	for _, p := range t.Postings {
		if p.Amount*sign > 0 {
			return p.AccountID, true
		}
	}
	return 0, false
}
