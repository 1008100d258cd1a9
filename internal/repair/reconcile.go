package repair

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// Kinds of reconcile findings.
const (
	// The POS records a purchase the ledger has no earn for. Correction:
	// an earn under the same receipt (which can then never earn twice).
	FindMissing = "missing_earn"
	// The POS records the same receipt twice with different content. For a
	// human: no correction.
	FindConflict = "conflicting_receipt"
	// Two earns of the ledger look like one purchase earned under two
	// receipts: same member, store and purchase amount, less than a minute
	// apart, and the POS does not confirm both. Correction: a cancel of the
	// one the POS does not know (the later one when it knows neither), for
	// a human to confirm.
	FindDuplicate = "possible_duplicate"
	// The ledger's earn differs from the POS's record in points or purchase
	// amount. Correction: an adjustment of the points difference.
	FindMismatch = "amount_mismatch"
	// The POS names another member than the one the ledger credited. For a
	// human: no correction.
	FindMember = "member_mismatch"
	// A missing purchase and an earn the POS does not know match in member,
	// store and amount within a minute: probably one purchase under two
	// receipt numbers. For a human: no correction (an earn would credit it
	// twice).
	FindReceiptMismatch = "receipt_mismatch"
	// The ledger has an earn at a store of the file, within the file's time
	// range, that the POS does not know. For a human: no correction.
	FindUnknown = "unknown_earn"
)

// DuplicateWindow is how close in time two earns of the same member, store
// and amount must be to look like one purchase.
const DuplicateWindow = time.Minute

// Finding is one difference between the POS's record and the ledger.
type Finding struct {
	Kind string `json:"kind"`
	// Lines of the receipts file concerned; none for what only the ledger has.
	Lines         []int     `json:"lines,omitempty"`
	StoreID       string    `json:"store_id"`
	Receipt       string    `json:"receipt,omitempty"`
	MemberID      string    `json:"member_id,omitempty"`
	TransactionID string    `json:"transaction_id,omitempty"` // the ledger's earn
	CreatedAt     time.Time `json:"created_at,omitzero"`      // of that earn
	// What the POS says (net of refunds) and what the ledger has (the earn
	// net of its cancellations, plus reconcile's earlier adjustments).
	POSAmount    *int64 `json:"pos_purchase_amount,omitempty"`
	POSPoints    *int64 `json:"pos_points,omitempty"`
	LedgerAmount *int64 `json:"ledger_purchase_amount,omitempty"`
	LedgerPoints *int64 `json:"ledger_points,omitempty"`
	Detail       string `json:"detail"`
	// Correction is the proposed fix; nil when it is for a human to decide.
	Correction *Correction `json:"correction,omitempty"`
}

// Report is the outcome of Reconcile.
type Report struct {
	Lines     int       `json:"lines"`     // receipt lines read
	Purchases int       `json:"purchases"` // distinct receipts among them
	Stores    []string  `json:"stores"`
	From      time.Time `json:"from"` // the earliest and latest purchase time of the file
	To        time.Time `json:"to"`
	Matched   int       `json:"matched"`
	Findings  []Finding `json:"findings"`
	Notes     []string  `json:"notes,omitempty"`
}

// Clean reports whether the ledger agrees with the POS on everything.
func (r *Report) Clean() bool { return len(r.Findings) == 0 }

// Corrections lists the proposed corrections, in the order of the findings.
func (r *Report) Corrections() []Correction {
	var out []Correction
	for _, f := range r.Findings {
		if f.Correction != nil {
			out = append(out, *f.Correction)
		}
	}
	return out
}

// reasonPrefix starts the reason of every adjustment reconcile proposes;
// the store and receipt follow as "store=ID receipt=R:", so that a later
// reconcile counts the adjustment in that receipt's points.
const reasonPrefix = "reconcile store="

func adjustReason(store, receipt string, amount, want, have int64) string {
	return fmt.Sprintf("%s%s receipt=%s: the POS records a purchase of %d for %d points; the ledger had %d",
		reasonPrefix, store, receipt, amount, want, have)
}

// parseReason returns the store and receipt an adjustment's reason names.
func parseReason(reason string) (store, receipt string, ok bool) {
	f := strings.Fields(reason)
	if len(f) < 3 || f[0] != "reconcile" || !strings.HasPrefix(f[1], "store=") || !strings.HasPrefix(f[2], "receipt=") ||
		!strings.HasSuffix(f[2], ":") {
		return "", "", false
	}
	return strings.TrimPrefix(f[1], "store="), strings.TrimSuffix(strings.TrimPrefix(f[2], "receipt="), ":"), true
}

// purchase is one receipt of the file, with the lines that name it.
type purchase struct {
	Receipt
	lines    []int
	key      ledger.ReceiptKey
	store    ledger.StoreInfo
	member   ledger.Member
	conflict bool
	earn     *ledger.Transaction
}

// earnRec is an earn of the ledger met while streaming the file's range.
type earnRec struct {
	t      ledger.Transaction
	inCSV  bool
	dupOf  *earnRec // the earn it seems to repeat
	paired bool     // taken as the twin of a missing purchase
}

func live(t *ledger.Transaction) bool { return t.Points-t.CancelledPoints > 0 }

type dupKey struct {
	member, store string
	amount        int64
}

// Reconcile compares the POS's receipts with the ledger's earns
// (docs/repair.md has the rules) and proposes corrections. It returns an
// *InputError, and compares nothing, when a line names a store or member
// the ledger does not have.
func Reconcile(ctx context.Context, src Source, receipts []Receipt) (*Report, error) {
	if len(receipts) == 0 {
		return nil, fmt.Errorf("no receipts to reconcile")
	}
	rep := &Report{Lines: len(receipts), Findings: []Finding{}}
	ie := &InputError{What: "receipts file"}

	// Resolve every store and member first: a file that names what the
	// ledger does not know is refused whole.
	stores := map[string]*ledger.StoreInfo{}
	members := map[string]*ledger.Member{}
	badStore, badMember := map[string]bool{}, map[string]bool{}
	byKey := map[ledger.ReceiptKey]*purchase{}
	var order []*purchase
	for _, r := range receipts {
		s := stores[r.StoreID]
		if s == nil && !badStore[r.StoreID] {
			si, err := src.StoreInfo(ctx, r.StoreID)
			switch code := ledger.ErrorCode(err); {
			case err == nil:
				s = &si
				stores[r.StoreID] = s
				rep.Stores = append(rep.Stores, r.StoreID)
			case code == ledger.CodeStoreNotFound || code == ledger.CodeMerchantNotFound:
				badStore[r.StoreID] = true
			default:
				return nil, err
			}
		}
		if s == nil {
			ie.add(r.Line, "store_id", "the ledger has no store %q", r.StoreID)
		}
		who, field := r.MemberID, "member_id"
		if r.CardNumber != "" {
			who, field = r.CardNumber, "card_number"
		}
		m := members[field+who]
		if m == nil && !badMember[field+who] {
			var mb ledger.Member
			var err error
			if r.CardNumber != "" {
				mb, err = src.MemberByCard(ctx, r.CardNumber)
			} else {
				mb, err = src.Member(ctx, r.MemberID)
			}
			switch {
			case err == nil:
				m = &mb
				members[field+who] = m
			case ledger.ErrorCode(err) == ledger.CodeMemberNotFound:
				badMember[field+who] = true
			default:
				return nil, err
			}
		}
		if m == nil {
			ie.add(r.Line, field, "the ledger has no member with %s %q", strings.ReplaceAll(field, "_", " "), who)
		}
		if s == nil || m == nil {
			continue
		}
		if rep.From.IsZero() || r.Time.Before(rep.From) {
			rep.From = r.Time
		}
		if r.Time.After(rep.To) {
			rep.To = r.Time
		}
		key := ledger.ReceiptKey{MerchantID: s.MerchantID, StoreID: s.ID, Receipt: r.Receipt}
		if p := byKey[key]; p != nil {
			if p.member.ID == m.ID && p.PurchaseAmount == r.PurchaseAmount && equalPtr(p.Points, r.Points) && p.Time.Equal(r.Time) {
				rep.Notes = append(rep.Notes, fmt.Sprintf("line %d repeats line %d exactly; counted once", r.Line, p.Line))
				continue
			}
			p.conflict = true
			p.lines = append(p.lines, r.Line)
			continue
		}
		p := &purchase{Receipt: r, lines: []int{r.Line}, key: key, store: *s, member: *m}
		byKey[key] = p
		order = append(order, p)
	}
	if err := ie.orNil(); err != nil {
		return nil, err
	}
	rep.Purchases = len(order)

	// What reconcile already adjusted, by receipt and member.
	type adjKey struct{ store, receipt, member string }
	adjusted := map[adjKey]int64{}
	err := src.AdjustmentsWithReason(ctx, reasonPrefix, func(t ledger.Transaction) error {
		if store, receipt, ok := parseReason(t.Reason); ok {
			adjusted[adjKey{store, receipt, t.MemberID}] += t.Points
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Stream the earns of the file's time range once: match them with the
	// file, and find what the POS does not know and what looks earned twice.
	recent := map[dupKey][]*earnRec{}
	var unknown []*earnRec
	n := 0
	w := Window{From: ledger.MicroTime(rep.From), To: ledger.MicroTime(rep.To).Add(time.Microsecond), Type: ledger.TxEarn}
	err = src.TransactionsCreated(ctx, w, func(e Entry) error {
		if stores[e.StoreID] == nil {
			return nil
		}
		t := e.Transaction
		p := byKey[ledger.ReceiptKey{MerchantID: t.MerchantID, StoreID: t.StoreID, Receipt: t.Receipt}]
		if p != nil {
			p.earn = &t
		}
		if !live(&t) {
			return nil // it changes no balance any more
		}
		x := &earnRec{t: t, inCSV: p != nil}
		if !x.inCSV {
			unknown = append(unknown, x)
		}
		k := dupKey{t.MemberID, t.StoreID, t.PurchaseAmount}
		list := recent[k]
		for len(list) > 0 && t.CreatedAt.Sub(list[0].t.CreatedAt) > DuplicateWindow {
			list = list[1:]
		}
		for _, r := range list {
			switch {
			case r.inCSV && x.inCSV: // the POS confirms both purchases
			case !x.inCSV:
				if x.dupOf == nil {
					x.dupOf = root(r)
				}
			default: // x is known to the POS, r is not
				if r.dupOf == nil {
					r.dupOf = x
				}
			}
		}
		recent[k] = append(list, x)
		if n++; n%4096 == 0 { // forget what is too old to pair with anything
			for k, l := range recent {
				if t.CreatedAt.Sub(l[len(l)-1].t.CreatedAt) > DuplicateWindow {
					delete(recent, k)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Purchases whose earn is outside the range (a POS clock off, a late
	// retry) are looked up by receipt.
	for _, p := range order {
		if p.earn != nil {
			continue
		}
		t, ok, err := src.EarnByReceipt(ctx, p.key)
		if err != nil {
			return nil, err
		}
		if ok {
			p.earn = &t
		}
	}

	unknownBy := map[dupKey][]*earnRec{}
	for _, u := range unknown {
		k := dupKey{u.t.MemberID, u.t.StoreID, u.t.PurchaseAmount}
		unknownBy[k] = append(unknownBy[k], u)
	}
	for _, p := range order {
		f := Finding{Lines: p.lines, StoreID: p.StoreID, Receipt: p.Receipt.Receipt, MemberID: p.member.ID,
			POSAmount: ptr(p.PurchaseAmount), POSPoints: p.Points}
		if p.earn != nil {
			f.TransactionID, f.CreatedAt = p.earn.ID, p.earn.CreatedAt
			f.LedgerAmount = ptr(p.earn.PurchaseAmount - p.earn.CancelledAmount)
			f.LedgerPoints = ptr(p.earn.Points - p.earn.CancelledPoints + adjusted[adjKey{p.StoreID, p.Receipt.Receipt, p.earn.MemberID}])
		}
		switch {
		case p.conflict:
			f.Kind, f.POSAmount, f.POSPoints = FindConflict, nil, nil
			f.Detail = fmt.Sprintf("the POS records receipt %s at store %s %d times with different content; no correction: check the POS",
				p.Receipt.Receipt, p.StoreID, len(p.lines))
			if p.earn != nil {
				f.Detail += fmt.Sprintf(" (the ledger earned %d points on a purchase of %d for member %s)",
					p.earn.Points, p.earn.PurchaseAmount, p.earn.MemberID)
			}
		case p.earn == nil:
			want := p.pointsFor(p.PurchaseAmount)
			f.Kind, f.POSPoints = FindMissing, ptr(want)
			if u := twin(unknownBy[dupKey{p.member.ID, p.StoreID, p.PurchaseAmount}], p); u != nil {
				u.paired = true
				f.Kind, f.TransactionID, f.CreatedAt = FindReceiptMismatch, u.t.ID, u.t.CreatedAt
				f.LedgerAmount, f.LedgerPoints = ptr(u.t.PurchaseAmount), ptr(u.t.Points-u.t.CancelledPoints)
				f.Detail = fmt.Sprintf("the ledger has no earn for receipt %s, but earned %d points for the same member, store and amount under receipt %s at %s, which the POS does not know: probably one purchase under two receipt numbers; no correction: check the POS",
					p.Receipt.Receipt, u.t.Points, u.t.Receipt, fmtTime(u.t.CreatedAt))
				break
			}
			f.Detail = fmt.Sprintf("the POS records a purchase of %d for %d points at %s; the ledger has no earn for it",
				p.PurchaseAmount, want, fmtTime(p.Time))
			c := Correction{Action: ActionEarn, MemberID: p.member.ID, StoreID: p.StoreID, Receipt: p.Receipt.Receipt,
				PurchaseAmount: ptr(p.PurchaseAmount), Points: ptr(want),
				Note: fmt.Sprintf("line %d: missing earn (purchase at %s)", p.Line, fmtTime(p.Time))}
			c.seal()
			f.Correction = &c
		case p.earn.MemberID != p.member.ID:
			f.Kind = FindMember
			f.Detail = fmt.Sprintf("the POS names member %s, the ledger credited member %s; no correction: check the POS and the card used",
				p.member.ID, p.earn.MemberID)
		default:
			if !p.compare(&f, adjusted[adjKey{p.StoreID, p.Receipt.Receipt, p.member.ID}]) {
				rep.Matched++
				continue
			}
		}
		rep.Findings = append(rep.Findings, f)
	}

	for _, u := range unknown {
		if u.paired {
			continue
		}
		t := u.t
		f := Finding{StoreID: t.StoreID, Receipt: t.Receipt, MemberID: t.MemberID, TransactionID: t.ID, CreatedAt: t.CreatedAt,
			LedgerAmount: ptr(t.PurchaseAmount - t.CancelledAmount), LedgerPoints: ptr(t.Points - t.CancelledPoints)}
		if d := u.dupOf; d != nil {
			f.Kind = FindDuplicate
			known := "which the POS does not know either"
			if d.inCSV {
				known = "which the POS records"
			}
			f.Detail = fmt.Sprintf("earned %d points at %s for the same member, store and purchase amount as receipt %s (transaction %s, %s) at %s: probably one purchase earned twice; the POS does not know receipt %s",
				t.Points, fmtTime(t.CreatedAt), d.t.Receipt, d.t.ID, known, fmtTime(d.t.CreatedAt), t.Receipt)
			c := Correction{Action: ActionCancel, TransactionID: t.ID,
				Note: fmt.Sprintf("possible duplicate: receipt %s at store %s (member %s, purchase %d) repeats receipt %s %s apart; delete this line if both purchases were real",
					t.Receipt, t.StoreID, t.MemberID, t.PurchaseAmount, d.t.Receipt, absDur(t.CreatedAt.Sub(d.t.CreatedAt)))}
			c.seal()
			f.Correction = &c
		} else {
			f.Kind = FindUnknown
			f.Detail = fmt.Sprintf("earned %d points on a purchase of %d at %s; the POS does not know receipt %s; no correction: check the POS",
				t.Points, t.PurchaseAmount, fmtTime(t.CreatedAt), t.Receipt)
		}
		rep.Findings = append(rep.Findings, f)
	}
	slices.SortStableFunc(rep.Findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(firstLine(a), firstLine(b)), a.CreatedAt.Compare(b.CreatedAt))
	})
	return rep, nil
}

// pointsFor is what a purchase of amount earns at the merchant's current
// rate, rounded down as the ledger rounds; or the points the POS states.
func (p *purchase) pointsFor(amount int64) int64 {
	if p.Points != nil {
		return *p.Points
	}
	return rateOf(amount, p.store.Merchant.EarnRateBP)
}

func rateOf(amount, rateBP int64) int64 { return amount * rateBP / 10_000 }

// compare fills f with the difference between the POS's purchase and its
// earn, and reports whether there is one. adj is what reconcile's earlier
// adjustments added to the receipt.
//
// The ledger's amount is the earn's purchase amount minus what refunds
// cancelled; its points are the earn's points minus what cancellations
// took back, plus adj. The POS's points are the points field or, when that
// is empty, the ledger's net points moved by what the difference in amount
// is worth at the merchant's rate: floor(pos × rate) − floor(ledger × rate).
// (So an empty points field never disagrees over a refund's rounding.)
func (p *purchase) compare(f *Finding, adj int64) bool {
	e := p.earn
	amount := e.PurchaseAmount - e.CancelledAmount
	net := e.Points - e.CancelledPoints
	have := net + adj
	var want int64
	if p.Points != nil {
		want = *p.Points
	} else {
		rate := p.store.Merchant.EarnRateBP
		want = net + rateOf(p.PurchaseAmount, rate) - rateOf(amount, rate)
	}
	f.POSPoints = ptr(want)
	switch {
	case want == have && p.PurchaseAmount == amount:
		return false
	case want == have && adj != 0:
		return false // settled: an adjustment made the points agree; the amount cannot be rewritten
	case want == have:
		f.Kind = FindMismatch
		f.Detail = fmt.Sprintf("the POS records a purchase of %d, the ledger %d; the points agree (%d); no correction: the ledger's purchase amount cannot be rewritten",
			p.PurchaseAmount, amount, have)
		return true
	}
	f.Kind = FindMismatch
	diff := want - have
	f.Detail = fmt.Sprintf("the POS records a purchase of %d for %d points; the ledger has %d for %d points (earned %d, cancelled %d, adjusted %d)",
		p.PurchaseAmount, want, amount, have, e.Points, e.CancelledPoints, adj)
	if diff > ledger.MaxPoints || diff < -ledger.MaxPoints {
		f.Detail += "; the difference is too large for one adjustment: no correction"
		return true
	}
	c := Correction{Action: ActionAdjust, MemberID: p.member.ID, Points: ptr(diff),
		Reason: adjustReason(p.StoreID, p.Receipt.Receipt, p.PurchaseAmount, want, have),
		Note:   fmt.Sprintf("line %d: amount mismatch on earn %s", p.Line, e.ID)}
	c.seal()
	f.Correction = &c
	return true
}

// twin finds, among the earns the POS does not know of p's member, store
// and amount, one that looks like the missing purchase p under another
// receipt number.
func twin(candidates []*earnRec, p *purchase) *earnRec {
	for _, u := range candidates {
		if u.paired || u.dupOf != nil || absDur(u.t.CreatedAt.Sub(p.Time)) > DuplicateWindow {
			continue
		}
		return u
	}
	return nil
}

func root(r *earnRec) *earnRec {
	for r.dupOf != nil {
		r = r.dupOf
	}
	return r
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func firstLine(f Finding) int {
	if len(f.Lines) == 0 {
		return 1 << 62 // what only the ledger has comes last
	}
	return f.Lines[0]
}

func equalPtr(a, b *int64) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// WriteText prints the report for people.
func (r *Report) WriteText(out io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "reconciled %d receipt lines (%d purchases at %d store(s), %s to %s) with the ledger\n",
		r.Lines, r.Purchases, len(r.Stores), fmtTime(r.From), fmtTime(r.To))
	fmt.Fprintf(&b, "  %d of %d purchases match\n", r.Matched, r.Purchases)
	if r.Clean() {
		b.WriteString("  no findings: the ledger agrees with the POS\n")
	} else {
		fmt.Fprintf(&b, "  %d findings, %d with a proposed correction\n", len(r.Findings), len(r.Corrections()))
	}
	for _, f := range r.Findings {
		where := "ledger only"
		switch len(f.Lines) {
		case 0:
		case 1:
			where = fmt.Sprintf("line %d", f.Lines[0])
		default:
			nums := make([]string, len(f.Lines))
			for i, l := range f.Lines {
				nums[i] = strconv.Itoa(l)
			}
			where = "lines " + strings.Join(nums, ", ")
		}
		fmt.Fprintf(&b, "\n%s: %s: store %s receipt %s member %s", where, f.Kind, f.StoreID, dash(f.Receipt), dash(f.MemberID))
		if f.TransactionID != "" {
			fmt.Fprintf(&b, " earn %s", f.TransactionID)
		}
		fmt.Fprintf(&b, "\n  %s\n", f.Detail)
		if f.Correction != nil {
			fmt.Fprintf(&b, "  proposed: %s\n", f.Correction.Describe())
		} else {
			b.WriteString("  no correction proposed: for a human to decide\n")
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nnotes\n")
		for _, n := range r.Notes {
			b.WriteString("  " + n + "\n")
		}
	}
	_, err := io.WriteString(out, b.String())
	return err
}
