package repair

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// IncidentQuery is the window pointd incident lists: transactions created
// in [From, To), at StoreID when set.
type IncidentQuery struct {
	From, To time.Time
	StoreID  string
	// Now tells which active holds are overdue; zero means time.Now().
	Now time.Time
}

// Outcomes of a transaction in the incident report. The ledger stores only
// committed operations (a refused request writes nothing), so the outcome
// is what became of a committed one since: an earn or a redemption kept or
// cancelled, a hold active, captured, voided or expired.
const (
	OutcomeKept            = "kept"
	OutcomePartlyCancelled = "partly_cancelled"
	OutcomeCancelled       = "cancelled"
	OutcomeCommitted       = "committed"
)

// Kinds of incident findings: patterns that matter for a repair.
const (
	// An earn of the window has been cancelled (refunded), in part or in
	// full, since: in or after the window.
	FindEarnCancelled = "earn_cancelled"
	// A cancellation in the window takes back an earn or a redemption made
	// before the window.
	FindCancelsBefore = "cancels_before_window"
	// A cancellation or hold operation refers to no transaction at all.
	FindDangling = "dangling_reference"
	// A hold placed in the window is still active (its points reserved).
	FindHoldActive = "hold_active"
	// A hold expired in the window: its points were released without a
	// capture, so a sale paid with them may not have been charged.
	FindHoldExpired = "hold_expired"
	// A cancellation in the window left the member's balance below zero.
	FindNegative = "negative_balance"
)

// Total sums a group of transactions.
type Total struct {
	Count          int64 `json:"count"`
	Points         int64 `json:"points"`
	PurchaseAmount int64 `json:"purchase_amount"`
}

func (t *Total) add(e Entry) {
	t.Count++
	t.Points += e.Points
	t.PurchaseAmount += e.PurchaseAmount
}

// TypeTotal is the total of one type and outcome.
type TypeTotal struct {
	Type    ledger.TxType `json:"type"`
	Outcome string        `json:"outcome"`
	Total
}

// StoreTotal is the total of one type at one store ("" for the
// transactions of no store: adjustments and expiry).
type StoreTotal struct {
	StoreID string        `json:"store_id"`
	Type    ledger.TxType `json:"type"`
	Total
}

// IncidentFinding is one pattern the incident report flags.
type IncidentFinding struct {
	Kind          string        `json:"kind"`
	Seq           int64         `json:"seq,omitempty"`
	TransactionID string        `json:"transaction_id,omitempty"`
	Type          ledger.TxType `json:"type,omitempty"`
	MemberID      string        `json:"member_id,omitempty"`
	StoreID       string        `json:"store_id,omitempty"`
	Receipt       string        `json:"receipt,omitempty"`
	RefID         string        `json:"ref_id,omitempty"`
	Points        int64         `json:"points"`
	// Balance is, for negative_balance, the lowest balance a cancellation
	// of the window left; BalanceNow the member's balance now.
	Balance    *int64 `json:"balance,omitempty"`
	BalanceNow *int64 `json:"balance_now,omitempty"`
	Detail     string `json:"detail"`
}

// IncidentSummary is what pointd incident prints before the transactions.
type IncidentSummary struct {
	From     time.Time         `json:"from"`
	To       time.Time         `json:"to"`
	StoreID  string            `json:"store_id,omitempty"`
	Count    int64             `json:"count"`
	FirstSeq int64             `json:"first_seq,omitempty"`
	LastSeq  int64             `json:"last_seq,omitempty"`
	ByType   []TypeTotal       `json:"by_type"`
	ByStore  []StoreTotal      `json:"by_store"`
	Findings []IncidentFinding `json:"findings"`
}

// Outcome is what became of a committed transaction (see the Outcome constants).
func Outcome(e Entry) string {
	switch e.Type {
	case ledger.TxEarn, ledger.TxRedeem:
		switch {
		case e.CancelledPoints == 0 && e.CancelledAmount == 0:
			return OutcomeKept
		case e.CancelledPoints == e.Points && (e.Type != ledger.TxEarn || e.CancelledAmount == e.PurchaseAmount):
			return OutcomeCancelled
		}
		return OutcomePartlyCancelled
	case ledger.TxHold:
		if e.HoldStatus != "" {
			return string(e.HoldStatus)
		}
	}
	return OutcomeCommitted
}

func (q IncidentQuery) validate() error {
	if q.From.IsZero() || q.To.IsZero() {
		return fmt.Errorf("the window needs both a start and an end")
	}
	if !q.To.After(q.From) {
		return fmt.Errorf("the window ends (%s) before it starts (%s)", fmtTime(q.To), fmtTime(q.From))
	}
	return nil
}

func (q IncidentQuery) window() Window {
	return Window{From: ledger.MicroTime(q.From), To: ledger.MicroTime(q.To), StoreID: q.StoreID}
}

// Summarize reads the window once: totals by type and outcome and by store,
// and the findings. It keeps in memory only the totals and the findings,
// whatever the size of the window.
func Summarize(ctx context.Context, src Source, q IncidentQuery) (*IncidentSummary, error) {
	if err := q.validate(); err != nil {
		return nil, err
	}
	now := q.Now
	if now.IsZero() {
		now = time.Now()
	}
	w := q.window()
	s := &IncidentSummary{From: w.From, To: w.To, StoreID: q.StoreID, ByType: []TypeTotal{}, ByStore: []StoreTotal{}, Findings: []IncidentFinding{}}
	type typeKey struct {
		typ     ledger.TxType
		outcome string
	}
	type storeKey struct {
		store string
		typ   ledger.TxType
	}
	byType := map[typeKey]*Total{}
	byStore := map[storeKey]*Total{}
	type cancel struct {
		member, id string
		seq        int64
	}
	var cancels []cancel
	err := src.TransactionsCreated(ctx, w, func(e Entry) error {
		s.Count++
		if s.FirstSeq == 0 || e.Seq < s.FirstSeq {
			s.FirstSeq = e.Seq
		}
		s.LastSeq = max(s.LastSeq, e.Seq)
		tk := typeKey{e.Type, Outcome(e)}
		if byType[tk] == nil {
			byType[tk] = &Total{}
		}
		byType[tk].add(e)
		sk := storeKey{e.StoreID, e.Type}
		if byStore[sk] == nil {
			byStore[sk] = &Total{}
		}
		byStore[sk].add(e)

		f := IncidentFinding{Seq: e.Seq, TransactionID: e.ID, Type: e.Type, MemberID: e.MemberID,
			StoreID: e.StoreID, Receipt: e.Receipt, RefID: e.RefID, Points: e.Points}
		switch e.Type {
		case ledger.TxEarn:
			if e.CancelledPoints > 0 || e.CancelledAmount > 0 {
				f.Kind = FindEarnCancelled
				how := "in part"
				if Outcome(e) == OutcomeCancelled {
					how = "in full"
				}
				f.Detail = fmt.Sprintf("cancelled %s since: %d of %d points, %d of a purchase of %d refunded",
					how, e.CancelledPoints, e.Points, e.CancelledAmount, e.PurchaseAmount)
				s.Findings = append(s.Findings, f)
			}
		case ledger.TxCancelEarn, ledger.TxCancelRedeem:
			if e.Type == ledger.TxCancelEarn {
				cancels = append(cancels, cancel{e.MemberID, e.ID, e.Seq})
			}
			switch {
			case e.RefType == "":
				f.Kind = FindDangling
				f.Detail = fmt.Sprintf("cancels %s, which is no transaction", e.RefID)
				s.Findings = append(s.Findings, f)
			case e.RefCreatedAt.Before(w.From):
				f.Kind = FindCancelsBefore
				f.Detail = fmt.Sprintf("takes back %d points of the %s %s made at %s, before the window",
					e.Points, e.RefType, e.RefID, fmtTime(e.RefCreatedAt))
				s.Findings = append(s.Findings, f)
			}
		case ledger.TxHold:
			if e.HoldStatus == ledger.HoldActive {
				f.Kind = FindHoldActive
				f.Detail = fmt.Sprintf("%d points still held, until %s", e.Points, fmtTime(e.HoldExpiresAt))
				if !e.HoldExpiresAt.After(now) {
					f.Detail += " (overdue: the expiry run has not released it yet)"
				}
				s.Findings = append(s.Findings, f)
			}
		case ledger.TxHoldExpire:
			f.Kind = FindHoldExpired
			if e.RefType == "" {
				f.Kind = FindDangling
				f.Detail = fmt.Sprintf("expires hold %s, which is no transaction", e.RefID)
			} else {
				f.Detail = fmt.Sprintf("hold %s of %d points, placed at %s, expired without a capture: its points went back to the member",
					e.RefID, e.Points, fmtTime(e.RefCreatedAt))
			}
			s.Findings = append(s.Findings, f)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Only a cancelled earn may take a balance below zero (the policy on
	// spent points): the balance right after each one of the window tells
	// whose balance went negative.
	type low struct {
		balance int64
		seq     int64
		id      string
	}
	lows := map[string]*low{}
	var order []string
	for _, c := range cancels {
		b, err := src.MemberBalanceAfter(ctx, c.member, c.seq)
		if err != nil {
			return nil, err
		}
		if b >= 0 {
			continue
		}
		l := lows[c.member]
		if l == nil {
			l = &low{balance: b, seq: c.seq, id: c.id}
			lows[c.member] = l
			order = append(order, c.member)
		} else if b < l.balance {
			*l = low{balance: b, seq: c.seq, id: c.id}
		}
	}
	for _, m := range order {
		l := lows[m]
		f := IncidentFinding{Kind: FindNegative, Seq: l.seq, TransactionID: l.id, Type: ledger.TxCancelEarn,
			MemberID: m, Balance: ptr(l.balance)}
		bal, err := src.Balance(ctx, m)
		if err != nil {
			return nil, err
		}
		f.BalanceNow = ptr(bal.Balance)
		f.Detail = fmt.Sprintf("balance fell to %d after the cancellation %s (seq %d); it is %d now",
			l.balance, l.id, l.seq, bal.Balance)
		s.Findings = append(s.Findings, f)
	}

	for k, t := range byType {
		s.ByType = append(s.ByType, TypeTotal{Type: k.typ, Outcome: k.outcome, Total: *t})
	}
	slices.SortFunc(s.ByType, func(a, b TypeTotal) int {
		return cmp.Or(cmp.Compare(typeRank(a.Type), typeRank(b.Type)), cmp.Compare(a.Outcome, b.Outcome))
	})
	for k, t := range byStore {
		s.ByStore = append(s.ByStore, StoreTotal{StoreID: k.store, Type: k.typ, Total: *t})
	}
	slices.SortFunc(s.ByStore, func(a, b StoreTotal) int {
		return cmp.Or(cmp.Compare(a.StoreID, b.StoreID), cmp.Compare(typeRank(a.Type), typeRank(b.Type)))
	})
	slices.SortStableFunc(s.Findings, func(a, b IncidentFinding) int {
		return cmp.Or(cmp.Compare(findRank(a.Kind), findRank(b.Kind)), cmp.Compare(a.Seq, b.Seq))
	})
	return s, nil
}

var typeOrder = []ledger.TxType{ledger.TxEarn, ledger.TxRedeem, ledger.TxHold, ledger.TxHoldVoid, ledger.TxHoldExpire,
	ledger.TxCancelEarn, ledger.TxCancelRedeem, ledger.TxAdjust, ledger.TxExpire}

func typeRank(t ledger.TxType) int {
	if i := slices.Index(typeOrder, t); i >= 0 {
		return i
	}
	return len(typeOrder)
}

var findOrder = []string{FindNegative, FindDangling, FindCancelsBefore, FindEarnCancelled, FindHoldExpired, FindHoldActive}

func findRank(k string) int { return slices.Index(findOrder, k) }

// Operation is one transaction as pointd incident lists it.
type Operation struct {
	Seq             int64         `json:"seq"`
	ID              string        `json:"id"`
	CreatedAt       time.Time     `json:"created_at"`
	Type            ledger.TxType `json:"type"`
	Outcome         string        `json:"outcome"`
	MerchantID      string        `json:"merchant_id,omitempty"`
	StoreID         string        `json:"store_id,omitempty"`
	Receipt         string        `json:"receipt,omitempty"`
	MemberID        string        `json:"member_id,omitempty"`
	Points          int64         `json:"points"`
	PurchaseAmount  int64         `json:"purchase_amount,omitempty"`
	RefID           string        `json:"ref_id,omitempty"`
	Reason          string        `json:"reason,omitempty"`
	CancelledPoints int64         `json:"cancelled_points,omitempty"`
	CancelledAmount int64         `json:"cancelled_amount,omitempty"`
}

func operationOf(e Entry) Operation {
	return Operation{Seq: e.Seq, ID: e.ID, CreatedAt: e.CreatedAt, Type: e.Type, Outcome: Outcome(e),
		MerchantID: e.MerchantID, StoreID: e.StoreID, Receipt: e.Receipt, MemberID: e.MemberID,
		Points: e.Points, PurchaseAmount: e.PurchaseAmount, RefID: e.RefID, Reason: e.Reason,
		CancelledPoints: e.CancelledPoints, CancelledAmount: e.CancelledAmount}
}

// Operations calls fn for every transaction of the window that s
// summarised (none numbered after s.LastSeq), in creation order.
func Operations(ctx context.Context, src Source, q IncidentQuery, s *IncidentSummary, fn func(Operation) error) error {
	if s.Count == 0 {
		return nil
	}
	w := q.window()
	w.MaxSeq = s.LastSeq
	return src.TransactionsCreated(ctx, w, func(e Entry) error { return fn(operationOf(e)) })
}

// WriteIncident prints the incident report of q to out: the summary and
// findings, then every transaction, one per line (or, with asJSON, one JSON
// document whose "transactions" array is written as it is read). It reads
// the window twice and holds no more than the summary in memory.
func WriteIncident(ctx context.Context, src Source, q IncidentQuery, out io.Writer, asJSON bool) (*IncidentSummary, error) {
	s, err := Summarize(ctx, src, q)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	if asJSON {
		err = writeIncidentJSON(ctx, src, q, s, bw)
	} else {
		err = writeIncidentText(ctx, src, q, s, bw)
	}
	if err != nil {
		return s, err
	}
	return s, bw.Flush()
}

func writeIncidentJSON(ctx context.Context, src Source, q IncidentQuery, s *IncidentSummary, w *bufio.Writer) error {
	head, err := json.Marshal(s)
	if err != nil {
		return err
	}
	w.Write(head[:len(head)-1]) // reopen the object: the transactions follow
	w.WriteString(`,"transactions":[`)
	first := true
	err = Operations(ctx, src, q, s, func(op Operation) error {
		b, err := json.Marshal(op)
		if err != nil {
			return err
		}
		if !first {
			w.WriteByte(',')
		}
		first = false
		w.WriteByte('\n')
		_, err = w.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	_, err = w.WriteString("\n]}\n")
	return err
}

func writeIncidentText(ctx context.Context, src Source, q IncidentQuery, s *IncidentSummary, w *bufio.Writer) error {
	where := "all stores"
	if s.StoreID != "" {
		where = "store " + s.StoreID
	}
	fmt.Fprintf(w, "incident window %s to %s (end excluded), %s\n", fmtTime(s.From), fmtTime(s.To), where)
	if s.Count == 0 {
		fmt.Fprintln(w, "no ledger operations in the window")
		return nil
	}
	fmt.Fprintf(w, "%d ledger operations, seq %d to %d (the ledger keeps only committed operations)\n\n", s.Count, s.FirstSeq, s.LastSeq)

	fmt.Fprintln(w, "by type and outcome")
	fmt.Fprintf(w, "  %-12s %-16s %10s %14s %16s\n", "type", "outcome", "count", "points", "purchase")
	for _, t := range s.ByType {
		fmt.Fprintf(w, "  %-12s %-16s %10d %14d %16d\n", t.Type, t.Outcome, t.Count, t.Points, t.PurchaseAmount)
	}
	fmt.Fprintln(w, "\nby store and type")
	fmt.Fprintf(w, "  %-36s %-12s %10s %14s %16s\n", "store", "type", "count", "points", "purchase")
	for _, t := range s.ByStore {
		fmt.Fprintf(w, "  %-36s %-12s %10d %14d %16d\n", dash(t.StoreID), t.Type, t.Count, t.Points, t.PurchaseAmount)
	}

	if len(s.Findings) == 0 {
		fmt.Fprintln(w, "\nfindings: none")
	} else {
		fmt.Fprintf(w, "\nfindings (%d)\n", len(s.Findings))
		for _, f := range s.Findings {
			fmt.Fprintf(w, "  %-21s %s\n", f.Kind, describeFinding(f))
		}
	}

	fmt.Fprintln(w, "\noperations (fields separated by spaces, - when empty)")
	fmt.Fprintln(w, "seq created_at type store receipt member points ref purchase outcome")
	var line []byte
	return Operations(ctx, src, q, s, func(op Operation) error {
		line = strconv.AppendInt(line[:0], op.Seq, 10)
		line = append(line, ' ')
		line = op.CreatedAt.UTC().AppendFormat(line, timeLayout)
		for _, f := range []string{string(op.Type), op.StoreID, op.Receipt, op.MemberID} {
			line = append(append(line, ' '), dash(f)...)
		}
		line = strconv.AppendInt(append(line, ' '), op.Points, 10)
		line = append(append(line, ' '), dash(op.RefID)...)
		line = strconv.AppendInt(append(line, ' '), op.PurchaseAmount, 10)
		line = append(append(line, ' '), op.Outcome...)
		line = append(line, '\n')
		_, err := w.Write(line)
		return err
	})
}

func describeFinding(f IncidentFinding) string {
	s := ""
	if f.Seq != 0 {
		s = fmt.Sprintf("seq %d %s %s", f.Seq, f.Type, f.TransactionID)
	}
	if f.StoreID != "" {
		s += " store " + f.StoreID
	}
	if f.Receipt != "" {
		s += " receipt " + f.Receipt
	}
	if f.MemberID != "" {
		s += " member " + f.MemberID
	}
	return s + ": " + f.Detail
}

// timeLayout prints times in UTC to the microsecond, the ledger's
// precision, at a fixed width.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ptr[T any](v T) *T { return &v }
