package api

import (
	"encoding/json"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/pointd/pointd/internal/ledger"
)

func TestDecodeBytes(t *testing.T) {
	for _, c := range []struct {
		name  string
		body  string
		empty bool
		code  string // "" when accepted
		field string
		msg   string // in the message, when refused
		want  earnRequest
	}{
		{name: "a full earn is taken", body: `{"member_id":"m","store_id":"s","receipt":"r","purchase_amount":5,"points":2}`,
			want: earnRequest{MemberID: "m", StoreID: "s", Receipt: "r", PurchaseAmount: ptr[int64](5), Points: ptr[int64](2)}},
		{name: "absent and null numbers stay absent", body: `{"purchase_amount":null}`, want: earnRequest{}},
		{name: "zero stays zero, not absent", body: `{"points":0}`, want: earnRequest{Points: ptr[int64](0)}},
		{name: "the largest int64 is taken", body: `{"points":9223372036854775807}`, want: earnRequest{Points: ptr[int64](9223372036854775807)}},
		{name: "escapes are decoded", body: `{"receipt":"a\u00e9\n"}`, want: earnRequest{Receipt: "a\u00e9\n"}},
		{name: "an empty body is taken where allowed", body: " \r\n", empty: true},
		{name: "an empty body is refused where required", body: "", code: codeMalformedJSON},
		{name: "a duplicate name is named", body: `{"receipt":"a","receipt":"b"}`, code: ledger.CodeValidation, field: "receipt"},
		{name: "a nested object is refused at its name", body: `{"store_id":{"a":1,"a":2}}`, code: ledger.CodeValidation, field: "store_id"},
		{name: "an array is refused at its name", body: `{"points":[1]}`, code: ledger.CodeValidation, field: "points"},
		{name: "a duplicate name in other letter case is refused", body: `{"receipt":"a","RECEIPT":"b"}`, code: ledger.CodeValidation, field: "RECEIPT"},
		{name: "a known name in other letter case is unknown", body: `{"Receipt":"a"}`, code: ledger.CodeValidation, field: "Receipt",
			msg: `unknown field "Receipt": did you mean receipt?`},
		{name: "an unknown name is named", body: `{"x":1}`, code: ledger.CodeValidation, field: "x", msg: `unknown field "x" (names are case-sensitive)`},
		{name: "a typo is answered with the name it most likely is", body: `{"purchase_amout":5}`, code: ledger.CodeValidation,
			field: "purchase_amout", msg: `unknown field "purchase_amout": did you mean purchase_amount?`},
		{name: "two letters swapped too", body: `{"member_di":"m"}`, code: ledger.CodeValidation, field: "member_di", msg: "did you mean member_id?"},
		{name: "a wrong type is named", body: `{"points":"1"}`, code: ledger.CodeValidation, field: "points"},
		{name: "an out of range number is named", body: `{"points":1e30}`, code: ledger.CodeValidation, field: "points"},
		{name: "trailing data is refused", body: `{}{}`, code: codeMalformedJSON},
		{name: "invalid UTF-8 is refused", body: "{\"receipt\":\"\xff\"}", code: codeMalformedJSON},
		{name: "an array is refused", body: `[]`, code: codeMalformedJSON},
		{name: "a truncated object is refused", body: `{"receipt":`, code: codeMalformedJSON},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got earnRequest
			err := decodeBytes([]byte(c.body), &got, c.empty)
			if c.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !reflect.DeepEqual(got, c.want) {
					t.Fatalf("decoded %+v, want %+v", got, c.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("taken as %+v; want %s", got, c.code)
			}
			if err.Code != c.code || !strings.EqualFold(err.Field, c.field) {
				t.Fatalf("refused as %s (field %q), want %s (field %q)", err.Code, err.Field, c.code, c.field)
			}
			if !strings.Contains(err.Message, c.msg) {
				t.Fatalf("message %q, want it to say %q", err.Message, c.msg)
			}
		})
	}
}

// TestDecodeCostIsLinear refuses deeply nested bodies, which no request
// has, without spending much more than their size: a body well under the
// 64 KiB limit must not make the server allocate a hundred megabytes.
func TestDecodeCostIsLinear(t *testing.T) {
	const depth = 9000 // under encoding/json's own limit of 10000
	for _, c := range []struct{ name, body string }{
		{"nested arrays", `{"points":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`},
		{"nested objects", `{"points":` + strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth) + `}`},
	} {
		t.Run(c.name+" are refused at a cost linear in their size", func(t *testing.T) {
			var got earnRequest
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := decodeBytes([]byte(c.body), &got, false)
			runtime.ReadMemStats(&after)
			if err == nil || statusOf[err.Code] != 400 {
				t.Errorf("a nested body answers %v, want a 400", err)
			}
			allocated := after.TotalAlloc - before.TotalAlloc
			if limit := uint64(100*len(c.body) + 1<<20); allocated > limit {
				t.Errorf("decoding %d bytes allocated %d MB (limit %d MB): the cost grows with the square of the depth",
					len(c.body), allocated>>20, limit>>20)
			}
		})
	}
}

// FuzzDecode holds the strict decoder to three properties: it never panics;
// a refusal is always a client error with a code; and what it takes is a
// fixed point: encoded again and decoded, it gives the same value.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"member_id":"m","store_id":"s","receipt":"r","purchase_amount":12345}`,
		`{"card_number":"9410000000000005","store_id":"s","receipt":"r","purchase_amount":0,"points":7}`,
		`{"receipt":"a\u00e9\ud800\n","points":null}`,
		`{"points":-9223372036854775808}`,
		`{"receipt":"a","receipt":"b"}`,
		`{"Receipt":"a"}`,
		`{"x":[{"a":[1,{"b":2}]}]}`,
		`{}{}`, `[]`, `null`, ``, ` `, `{"a":`, "{\"receipt\":\"\xff\"}",
		`{"purchase_amount":1e30}`, `{"purchase_amount":1.5}`, `{"purchase_amount":"1"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var a earnRequest
		if err := decodeBytes(data, &a, false); err != nil {
			if status, ok := statusOf[err.Code]; !ok || status < 400 || status > 499 {
				t.Fatalf("refused with code %q (status %d): not a client error", err.Code, status)
			}
			if err.Message == "" {
				t.Fatalf("refused with code %q and no message", err.Code)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("took %q, which is not JSON", data)
		}
		enc, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("encode %+v: %v", a, err)
		}
		var b earnRequest
		if derr := decodeBytes(enc, &b, false); derr != nil {
			t.Fatalf("took %q as %+v, but refuses its own encoding %s: %v", data, a, enc, derr)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("took %q as %+v; encoded %s decodes as %+v", data, a, enc, b)
		}
	})
}
