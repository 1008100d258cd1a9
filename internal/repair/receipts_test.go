package repair_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/repair"
)

const card = "9410000000000005" // a valid check digit

func TestParseReceiptsReadsTheDocumentedFormat(t *testing.T) {
	if !ledger.ValidCardNumber(card) {
		t.Fatal("the test card number is invalid")
	}
	file := "\ufeff" + repair.ReceiptsHeaderCard + "\r\n" +
		"s1,R-001," + card + ",12000,,2026-03-02T18:04:05+09:00\r\n" +
		"\r\n" + // blank lines are skipped
		`"s1","R,2",` + card + `,0,7,2026-03-02T09:04:05.25Z` + "\r\n"
	got, err := repair.ParseReceipts(strings.NewReader(file))
	must(t, err)
	if len(got) != 2 {
		t.Fatalf("%d receipts", len(got))
	}
	a, b := got[0], got[1]
	if a.Line != 2 || a.StoreID != "s1" || a.Receipt != "R-001" || a.CardNumber != card || a.PurchaseAmount != 12000 ||
		a.Points != nil || !a.Time.Equal(time.Date(2026, 3, 2, 9, 4, 5, 0, time.UTC)) {
		t.Errorf("first line: %+v", a)
	}
	if b.Line != 4 || b.Receipt != "R,2" || b.PurchaseAmount != 0 || b.Points == nil || *b.Points != 7 {
		t.Errorf("second line: %+v", b)
	}

	byID, err := repair.ParseReceipts(strings.NewReader(repair.ReceiptsHeaderMember + "\ns1,R,member-7,5,,2026-03-02T09:00:00Z\n"))
	must(t, err)
	if byID[0].MemberID != "member-7" || byID[0].CardNumber != "" {
		t.Errorf("by member id: %+v", byID[0])
	}
}

func TestParseReceiptsRefusesMalformedLinesByLine(t *testing.T) {
	ok := "s1,R1," + card + ",100,,2026-03-02T09:00:00Z"
	cases := []struct {
		name, file string
		line       int
		field      string
		says       string
	}{
		{"an empty file", "", 1, "", "empty"},
		{"a header only", repair.ReceiptsHeaderCard + "\n", 2, "", "no receipts"},
		{"another header", "store,receipt,card,amount,points,time\n" + ok, 1, "", "header"},
		{"columns in another order", "receipt,store_id,card_number,purchase_amount,points,time\n" + ok, 1, "", "header"},
		{"a missing field", repair.ReceiptsHeaderCard + "\n" + ok + "\ns1,R2," + card + ",100,\n", 3, "", "5 fields"},
		{"an extra field", repair.ReceiptsHeaderCard + "\n" + ok + ",x\n", 2, "", "7 fields"},
		{"an empty store", repair.ReceiptsHeaderCard + "\n,R1," + card + ",100,,2026-03-02T09:00:00Z\n", 2, "store_id", "empty"},
		{"a receipt with a space", repair.ReceiptsHeaderCard + "\ns1,R 1," + card + ",100,,2026-03-02T09:00:00Z\n", 2, "receipt", "receipt number"},
		{"a receipt too long", repair.ReceiptsHeaderCard + "\ns1," + strings.Repeat("r", 65) + "," + card + ",100,,2026-03-02T09:00:00Z\n", 2, "receipt", "64"},
		{"a bad check digit", repair.ReceiptsHeaderCard + "\n" + ok + "\ns1,R2,9410000000000006,100,,2026-03-02T09:00:00Z\n", 3, "card_number", "check digit"},
		{"a negative amount", repair.ReceiptsHeaderCard + "\ns1,R1," + card + ",-100,,2026-03-02T09:00:00Z\n", 2, "purchase_amount", "digits only"},
		{"a decimal amount", repair.ReceiptsHeaderCard + "\ns1,R1," + card + ",100.50,,2026-03-02T09:00:00Z\n", 2, "purchase_amount", "digits only"},
		{"an amount with a space", repair.ReceiptsHeaderCard + "\ns1,R1," + card + ", 100,,2026-03-02T09:00:00Z\n", 2, "purchase_amount", "digits only"},
		{"an amount too large", repair.ReceiptsHeaderCard + "\ns1,R1," + card + ",1000000000001,,2026-03-02T09:00:00Z\n", 2, "purchase_amount", "more than"},
		{"points too large", repair.ReceiptsHeaderCard + "\ns1,R1," + card + ",100,1000000001,2026-03-02T09:00:00Z\n", 2, "points", "more than"},
		{"a time without a zone", repair.ReceiptsHeaderCard + "\ns1,R1," + card + ",100,,2026-03-02T09:00:00\n", 2, "time", "RFC 3339"},
		{"a date only", repair.ReceiptsHeaderCard + "\ns1,R1," + card + ",100,,2026-03-02\n", 2, "time", "RFC 3339"},
		{"a bare quote", repair.ReceiptsHeaderCard + "\n" + ok + "\ns1,R\"2," + card + ",100,,2026-03-02T09:00:00Z\n", 3, "", "not valid CSV"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := repair.ParseReceipts(strings.NewReader(c.file))
			var ie *repair.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v; want an InputError", err)
			}
			e := ie.Errs[0]
			if e.Line != c.line || e.Field != c.field || !strings.Contains(e.Msg, c.says) {
				t.Fatalf("first fault %+v; want line %d, field %q, saying %q", e, c.line, c.field, c.says)
			}
			if !strings.Contains(err.Error(), e.Error()) || !strings.Contains(err.Error(), "nothing was done") {
				t.Fatalf("message %q", err)
			}
		})
	}
}

func TestParseReceiptsListsEveryFault(t *testing.T) {
	file := repair.ReceiptsHeaderCard + "\n" +
		"s1,R1,123,x,,yesterday\n" +
		"s1,R2," + card + ",100,,2026-03-02T09:00:00Z\n" +
		"s1,,," + card + ",,\n"
	_, err := repair.ParseReceipts(strings.NewReader(file))
	var ie *repair.InputError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v", err)
	}
	var got []string
	for _, e := range ie.Errs {
		got = append(got, e.Error()[:strings.Index(e.Error(), ":")+1]+e.Field)
	}
	want := "line 2:card_number line 2:purchase_amount line 2:time line 4:receipt line 4:card_number line 4:purchase_amount line 4:time"
	if strings.Join(got, " ") != want {
		t.Fatalf("faults %v; want %s\n%v", got, want, err)
	}
}

func TestReadCorrectionsIsStrict(t *testing.T) {
	h := repair.CorrectionsHeader + "\n"
	cases := []struct {
		name, line string
		field      string
	}{
		{"an unknown action", ",refund,m,,,,,,,\n", "action"},
		{"an earn without a receipt", ",earn,m,s,,100,5,,,\n", "receipt"},
		{"an earn with a reason", ",earn,m,s,r,100,5,,why,\n", "reason"},
		{"an adjust of zero", ",adjust,m,,,,0,,why,\n", "points"},
		{"an adjust without a reason", ",adjust,m,,,,5,,,\n", "reason"},
		{"an adjust at a store", ",adjust,m,s,,,5,,why,\n", "store_id"},
		{"a cancel of nothing", ",cancel,,,,,,,,\n", "transaction_id"},
		{"a cancel of negative points", ",cancel,,,,,-5,t1,,\n", "points"},
		{"points not a number", ",adjust,m,,,,5x,,why,\n", "points"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := repair.ReadCorrections(strings.NewReader(h + c.line))
			var ie *repair.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v; want an InputError", err)
			}
			if e := ie.Errs[0]; e.Line != 2 || e.Field != c.field {
				t.Fatalf("fault %+v; want line 2 field %s", e, c.field)
			}
		})
	}

	// A line changed after reconcile wrote it gets the key of its content.
	cs, edited, err := repair.ReadCorrections(strings.NewReader(h +
		"rc-stale,adjust,m,,,,-5,,a reason,a note\n" +
		",cancel,,,,,,t1,,\n"))
	must(t, err)
	want := repair.KeyOf(ledger.Op{Kind: ledger.OpAdjust, MemberID: "m", Points: p64(-5), Reason: "a reason"})
	if len(cs) != 2 || cs[0].Key != want || len(edited) != 1 || edited[0] != 2 || cs[1].Line != 3 {
		t.Fatalf("corrections %+v, edited %v", cs, edited)
	}
	// The note is not part of the key; everything else is.
	a := repair.Correction{Action: repair.ActionCancel, TransactionID: "t1", Note: "one"}
	b := repair.Correction{Action: repair.ActionCancel, TransactionID: "t1", Note: "two"}
	c := repair.Correction{Action: repair.ActionCancel, TransactionID: "t1", Points: p64(3)}
	if repair.KeyOf(a.Op()) != repair.KeyOf(b.Op()) || repair.KeyOf(a.Op()) == repair.KeyOf(c.Op()) {
		t.Fatal("keys do not follow the operation's content")
	}
}
