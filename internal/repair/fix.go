package repair

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// Actions of a correction: each is one ledger operation.
const (
	ActionEarn   = "earn"   // a purchase the ledger never earned on, under its receipt
	ActionAdjust = "adjust" // an operator adjustment of a member's points, with a reason
	ActionCancel = "cancel" // a cancellation of an earn (of what is left of it, or Points of it)
)

// CorrectionsHeader is the first line of a corrections file.
const CorrectionsHeader = "key,action,member_id,store_id,receipt,purchase_amount,points,transaction_id,reason,note"

// Correction is one proposed ledger operation: a line of the corrections
// file that pointd reconcile --fix writes and --apply applies.
type Correction struct {
	// Line is where the correction is in the file it was read from.
	Line int `json:"-"`
	// Key is the idempotency key the correction is applied with, derived
	// from its content (KeyOf): the same content always gets the same key,
	// so applying it again replays the first outcome instead of repeating it.
	Key            string `json:"key"`
	Action         string `json:"action"`
	MemberID       string `json:"member_id,omitempty"`
	StoreID        string `json:"store_id,omitempty"`
	Receipt        string `json:"receipt,omitempty"`
	PurchaseAmount *int64 `json:"purchase_amount,omitempty"`
	Points         *int64 `json:"points,omitempty"`
	TransactionID  string `json:"transaction_id,omitempty"`
	Reason         string `json:"reason,omitempty"`
	// Note says why the correction is proposed. It is for people: it is
	// not part of the operation nor of the key.
	Note string `json:"note,omitempty"`
}

// Op is the ledger operation of c, without actor and key.
func (c Correction) Op() ledger.Op {
	return ledger.Op{Kind: ledger.OpKind(c.Action), MemberID: c.MemberID, StoreID: c.StoreID, Receipt: c.Receipt,
		PurchaseAmount: c.PurchaseAmount, Points: c.Points, TransactionID: c.TransactionID, Reason: c.Reason}
}

// KeyOf is the idempotency key of an operation: "rc-" and the hex SHA-256
// of its content as the ledger fingerprints it. Two corrections get the same
// key exactly when the ledger would see the same request.
func KeyOf(op ledger.Op) string { return "rc-" + hex.EncodeToString(op.Fingerprint()) }

func (c *Correction) seal() { c.Key = KeyOf(c.Op()) }

// WriteCorrections writes cs as a corrections file (docs/repair.md).
func WriteCorrections(out io.Writer, cs []Correction) error {
	w := csv.NewWriter(out)
	if _, err := io.WriteString(out, CorrectionsHeader+"\n"); err != nil {
		return err
	}
	for _, c := range cs {
		if err := w.Write([]string{c.Key, c.Action, c.MemberID, c.StoreID, c.Receipt,
			optInt(c.PurchaseAmount), optInt(c.Points), c.TransactionID, c.Reason, c.Note}); err != nil {
			return err
		}
	}
	w.Flush()
	return w.Error()
}

func optInt(p *int64) string {
	if p == nil {
		return ""
	}
	return strconv.FormatInt(*p, 10)
}

// ReadCorrections reads a corrections file and checks every line: its
// action, that it has the fields its action needs and no others, and the
// operation as the ledger would validate it. A file with any fault is
// refused as a whole (*InputError). Keys are computed again from each
// line's content; Edited lists the lines whose key column no longer
// matches (the line was changed after reconcile wrote it, so it is a new
// request with a new key), for the caller to tell the operator.
func ReadCorrections(in io.Reader) (cs []Correction, edited []int, err error) {
	ie := &InputError{What: "corrections file"}
	cr, err := newCSVReader(in, ie, CorrectionsHeader)
	if err != nil {
		return nil, nil, err
	}
	for {
		rec, line, err := cr.next(ie)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if rec == nil {
			continue
		}
		c := Correction{Line: line, Action: rec[1], MemberID: rec[2], StoreID: rec[3], Receipt: rec[4],
			TransactionID: rec[7], Reason: rec[8], Note: rec[9]}
		ok := true
		bad := func(field, format string, args ...any) {
			ie.add(line, field, format, args...)
			ok = false
		}
		// Which fields each action takes: required (r), optional (o) or none.
		var need map[string]byte
		switch c.Action {
		case ActionEarn:
			need = map[string]byte{"member_id": 'r', "store_id": 'r', "receipt": 'r', "purchase_amount": 'r', "points": 'o'}
		case ActionAdjust:
			need = map[string]byte{"member_id": 'r', "points": 'r', "reason": 'r'}
		case ActionCancel:
			need = map[string]byte{"transaction_id": 'r', "points": 'o'}
		default:
			bad("action", "%q is not one of earn, adjust, cancel", c.Action)
			continue
		}
		for i, name := range []string{"member_id", "store_id", "receipt", "purchase_amount", "points", "transaction_id", "reason"} {
			v := rec[2+i]
			switch {
			case v == "" && need[name] == 'r':
				bad(name, "is required for %s", c.Action)
			case v != "" && need[name] == 0:
				bad(name, "must be empty for %s", c.Action)
			}
		}
		if rec[5] != "" && need["purchase_amount"] != 0 {
			if n, msg := parseCount(rec[5], ledger.MaxPurchaseAmount); msg != "" {
				bad("purchase_amount", "%s", msg)
			} else {
				c.PurchaseAmount = &n
			}
		}
		if rec[6] != "" && need["points"] != 0 {
			if n, msg := parseSigned(rec[6], ledger.MaxPoints); msg != "" {
				bad("points", "%s", msg)
			} else {
				c.Points = &n
			}
		}
		if !ok {
			continue
		}
		op := c.Op()
		if err := op.Validate(); err != nil {
			var le *ledger.Error
			if errors.As(err, &le) {
				bad(le.Field, "%s", le.Message)
			} else {
				bad("", "%v", err)
			}
			continue
		}
		c.seal()
		if rec[0] != "" && rec[0] != c.Key {
			edited = append(edited, line)
		}
		cs = append(cs, c)
	}
	if err := ie.orNil(); err != nil {
		return nil, nil, err
	}
	return cs, edited, nil
}

// Applied outcomes of a correction.
const (
	StatusApplied        = "applied"
	StatusAlreadyApplied = "already applied"
	StatusFailed         = "failed"
)

// ApplyResult is what became of one correction.
type ApplyResult struct {
	Correction    Correction
	Status        string
	TransactionID string // the ledger transaction that carries it
	Balance       *int64 // the member's balance right after it (new or replayed)
	Err           error  // when it failed
}

// ApplyStats counts the outcomes of a corrections file.
type ApplyStats struct {
	Applied        int `json:"applied"`
	AlreadyApplied int `json:"already_applied"`
	Failed         int `json:"failed"`
}

// Apply submits each correction, in order, through w as Actor with its
// content key, and calls report with each outcome. A correction the ledger
// refuses (say, an adjustment that would take more points than the member
// has) fails alone; the others go on. Applying the same corrections again
// changes nothing: every key is already used, so the writer replays each
// first outcome and reports it as already applied.
func Apply(ctx context.Context, w *ledger.Writer, cs []Correction, report func(ApplyResult)) (ApplyStats, error) {
	var st ApplyStats
	for _, c := range cs {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		c.seal()
		op := c.Op()
		op.Actor, op.IdempotencyKey = Actor, c.Key
		res, err := submit(ctx, w, op)
		r := ApplyResult{Correction: c}
		switch {
		case err != nil:
			r.Status, r.Err = StatusFailed, err
			st.Failed++
		default:
			r.Status = StatusApplied
			if res.Replayed {
				r.Status = StatusAlreadyApplied
			}
			var body ledger.Response
			if json.Unmarshal(res.Body, &body) == nil {
				r.TransactionID = body.ID
				r.Balance = ptr(body.Balance)
			}
			if res.Replayed {
				st.AlreadyApplied++
			} else {
				st.Applied++
			}
		}
		if report != nil {
			report(r)
		}
	}
	return st, nil
}

// submit retries what the writer asks to retry (it is busy, or the outcome
// is unknown): with the same key a retry is always safe.
func submit(ctx context.Context, w *ledger.Writer, op ledger.Op) (ledger.Result, error) {
	for attempt := 1; ; attempt++ {
		res, err := w.Submit(ctx, op)
		var le *ledger.Error
		if err == nil || attempt == 5 || !errors.As(err, &le) || le.RetryAfter == 0 {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(time.Duration(le.RetryAfter) * time.Second):
		}
	}
}

// Describe is a one-line account of a correction, for people.
func (c Correction) Describe() string {
	switch c.Action {
	case ActionEarn:
		return fmt.Sprintf("earn %s points for member %s at store %s, receipt %s, purchase %s",
			optInt(c.Points), c.MemberID, c.StoreID, c.Receipt, optInt(c.PurchaseAmount))
	case ActionAdjust:
		by := "?"
		if c.Points != nil {
			by = fmt.Sprintf("%+d", *c.Points)
		}
		return fmt.Sprintf("adjust member %s by %s points (%s)", c.MemberID, by, c.Reason)
	case ActionCancel:
		what := "what is left of"
		if c.Points != nil {
			what = optInt(c.Points) + " points of"
		}
		return fmt.Sprintf("cancel %s earn %s", what, c.TransactionID)
	}
	return c.Action
}
