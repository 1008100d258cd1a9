package repair

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// Receipt is one purchase as the point-of-sale recorded it: a line of the
// receipts file (docs/repair.md has the format).
type Receipt struct {
	Line    int    // in the file, counting the header as line 1
	StoreID string // a store of the ledger
	Receipt string
	// Exactly one of CardNumber and MemberID is set, as the header says.
	CardNumber     string
	MemberID       string
	PurchaseAmount int64 // net of refunds, in the unit of the API's purchase_amount
	// Points the member should have from the purchase now; nil: what the
	// merchant's earn rate gives.
	Points *int64
	Time   time.Time // when the purchase happened, by the POS's clock
}

// Receipts file headers: the member is named by card number or by id.
const (
	ReceiptsHeaderCard   = "store_id,receipt,card_number,purchase_amount,points,time"
	ReceiptsHeaderMember = "store_id,receipt,member_id,purchase_amount,points,time"
)

// LineError is one fault of an input file.
type LineError struct {
	Line  int    `json:"line"`
	Field string `json:"field,omitempty"`
	Msg   string `json:"message"`
}

func (e LineError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Msg)
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// maxLineErrors is how many faults an InputError lists; it counts the rest.
const maxLineErrors = 50

// InputError refuses a whole file: nothing of it was used. It lists the
// faults found, each with its line.
type InputError struct {
	What string // "receipts file", "corrections file"
	Errs []LineError
	More int // faults found beyond those listed
}

func (e *InputError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the %s is refused, nothing was done: %d fault(s)", e.What, len(e.Errs)+e.More)
	for _, le := range e.Errs {
		b.WriteString("\n  " + le.Error())
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n  … and %d more", e.More)
	}
	return b.String()
}

func (e *InputError) add(line int, field, format string, args ...any) {
	if len(e.Errs) >= maxLineErrors {
		e.More++
		return
	}
	e.Errs = append(e.Errs, LineError{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (e *InputError) orNil() error {
	if len(e.Errs) == 0 && e.More == 0 {
		return nil
	}
	return e
}

// csvReader reads a strict CSV file: RFC 4180 quoting, a header line that
// must be exactly one of headers, every line with as many fields as the
// header. A UTF-8 byte order mark at the start is skipped; blank lines are
// skipped.
type csvReader struct {
	r      *csv.Reader
	header string
	fields []string
}

func newCSVReader(in io.Reader, ie *InputError, headers ...string) (*csvReader, error) {
	data, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	rec, err := r.Read()
	if errors.Is(err, io.EOF) {
		ie.add(1, "", "the file is empty; the first line must be the header %q", headers[0])
		return nil, ie
	}
	if err != nil {
		ie.add(csvLine(err, 1), "", "%s", csvMsg(err))
		return nil, ie
	}
	got := strings.Join(rec, ",")
	for _, h := range headers {
		if got == h {
			return &csvReader{r: r, header: h, fields: rec}, nil
		}
	}
	want := strings.Join(quoteAll(headers), " or ")
	ie.add(1, "", "the header is %q; it must be exactly %s", got, want)
	return nil, ie
}

// next returns the next record and its line, io.EOF at the end, or a
// syntax error after which the file cannot be read further.
func (c *csvReader) next(ie *InputError) ([]string, int, error) {
	rec, err := c.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, io.EOF
		}
		ie.add(csvLine(err, 0), "", "%s; the rest of the file was not read", csvMsg(err))
		return nil, 0, ie
	}
	line, _ := c.r.FieldPos(0)
	if len(rec) != len(c.fields) {
		ie.add(line, "", "%d fields, the header has %d", len(rec), len(c.fields))
		return nil, line, nil
	}
	return rec, line, nil
}

func csvLine(err error, dflt int) int {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Line
	}
	return dflt
}

func csvMsg(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("not valid CSV (column %d): %v", pe.Column, pe.Err)
	}
	return err.Error()
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// ParseReceipts reads a receipts file (docs/repair.md) and checks every
// line on its own: ids, card numbers, numbers and times. A file with any
// fault is refused as a whole with an *InputError listing the faults by
// line. Whether stores and members exist is Reconcile's business.
func ParseReceipts(in io.Reader) ([]Receipt, error) {
	ie := &InputError{What: "receipts file"}
	cr, err := newCSVReader(in, ie, ReceiptsHeaderCard, ReceiptsHeaderMember)
	if err != nil {
		return nil, err
	}
	byCard := cr.header == ReceiptsHeaderCard
	var out []Receipt
	for {
		rec, line, err := cr.next(ie)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if rec == nil {
			continue
		}
		r := Receipt{Line: line}
		ok := true
		bad := func(field, format string, args ...any) {
			ie.add(line, field, format, args...)
			ok = false
		}
		if msg := checkID(rec[0]); msg != "" {
			bad("store_id", "%s", msg)
		}
		r.StoreID = rec[0]
		if msg := checkReceipt(rec[1]); msg != "" {
			bad("receipt", "%s", msg)
		}
		r.Receipt = rec[1]
		if byCard {
			if !ledger.ValidCardNumber(rec[2]) {
				bad("card_number", "%q is not a 16-digit card number with a valid check digit", rec[2])
			}
			r.CardNumber = rec[2]
		} else {
			if msg := checkID(rec[2]); msg != "" {
				bad("member_id", "%s", msg)
			}
			r.MemberID = rec[2]
		}
		if n, msg := parseCount(rec[3], ledger.MaxPurchaseAmount); msg != "" {
			bad("purchase_amount", "%s", msg)
		} else {
			r.PurchaseAmount = n
		}
		if rec[4] != "" {
			if n, msg := parseCount(rec[4], ledger.MaxPoints); msg != "" {
				bad("points", "%s (or empty: the merchant's earn rate)", msg)
			} else {
				r.Points = &n
			}
		}
		if t, err := time.Parse(time.RFC3339, rec[5]); err != nil || strings.ContainsAny(rec[5], " \t") {
			bad("time", "%q is not an RFC 3339 time such as 2026-03-02T18:04:05+09:00", rec[5])
		} else {
			r.Time = t
		}
		if ok {
			out = append(out, r)
		}
	}
	if err := ie.orNil(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		ie.add(2, "", "the file has a header but no receipts")
		return nil, ie
	}
	return out, nil
}

// The rules of ids and receipts are the ledger's: 1 to 64 visible ASCII
// characters (no spaces).
func checkID(s string) string {
	if s == "" {
		return "is empty"
	}
	if len(s) > 64 || !visible(s) {
		return fmt.Sprintf("%q is not an id: 1 to 64 visible ASCII characters, no spaces", s)
	}
	return ""
}

func checkReceipt(s string) string {
	if s == "" {
		return "is empty"
	}
	if len(s) > 64 || !visible(s) {
		return fmt.Sprintf("%q is not a receipt number: 1 to 64 visible ASCII characters, no spaces", s)
	}
	return ""
}

func visible(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// parseCount reads a whole number from 0 to max written with digits only:
// no sign, no spaces, no separators, no decimals.
func parseCount(s string, max int64) (int64, string) {
	if s == "" {
		return 0, "is empty"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Sprintf("%q is not a whole number written with digits only", s)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > max {
		return 0, fmt.Sprintf("%s is more than %d", s, max)
	}
	return n, ""
}

// parseSigned reads a whole number, with an optional leading minus, whose
// absolute value is at most max.
func parseSigned(s string, max int64) (int64, string) {
	neg := strings.HasPrefix(s, "-")
	n, msg := parseCount(strings.TrimPrefix(s, "-"), max)
	if msg != "" {
		if msg == "is empty" && neg {
			msg = fmt.Sprintf("%q is not a whole number", s)
		}
		return 0, msg
	}
	if neg {
		n = -n
	}
	return n, ""
}
