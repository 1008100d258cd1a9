package api

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

// badCase is a request that must be refused with a problem naming the field
// at fault, and leave the ledger as it was.
type badCase struct {
	name   string
	path   string // default /v1/earns
	key    string // default the POS key of merchant A
	body   any    // sent as is when a string
	ctype  string // Content-Type, when not application/json; "-" for none
	status int
	code   string
	field  string // compared ignoring letter case; "" when the body as a whole is at fault
	// valid, when set, is sent next with the same Idempotency-Key: since the
	// refusal stored nothing, it must be taken as a new request.
	valid any
}

func (h *harness) runBad(t *testing.T, w world, cases []badCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := h.at(t)
			if c.path == "" {
				c.path = "/v1/earns"
			}
			if c.key == "" {
				c.key = w.posA
			}
			hdr := map[string]string{}
			switch c.ctype {
			case "":
			case "-":
				hdr["Content-Type"] = ""
			default:
				hdr["Content-Type"] = c.ctype
			}
			before := h.snap(w.member.ID)
			key := h.idem()
			r := h.do(req{method: http.MethodPost, path: c.path, key: c.key, idem: key, body: c.body, header: hdr})
			p := problem(t, r, c.status, c.code, "-")
			if !strings.EqualFold(p.Field, c.field) {
				t.Errorf("field %q, want %q; body: %s", p.Field, c.field, r.body)
			}
			h.unchanged(before, w.member.ID)
			if c.valid != nil {
				ok := h.post(c.path, c.key, key, c.valid)
				if ok.status != http.StatusCreated || ok.header.Get("Idempotent-Replayed") != "" {
					t.Errorf("a valid request with the refused request's Idempotency-Key answers %s (replayed %q)",
						ok, ok.header.Get("Idempotent-Replayed"))
				}
			}
		})
	}
}

func TestStrictInputOfAnEarn(t *testing.T) {
	h := newHarness(t)
	w := h.newWorld()
	h.earn(w.posA, w.storeA, w.member.ID, 10_000)

	// earn is a valid earn body without its closing brace, so that a case can
	// add to it; each call has a fresh receipt.
	earn := func(without ...string) string {
		fields := []struct{ name, value string }{
			{"member_id", fmt.Sprintf("%q", w.member.ID)},
			{"store_id", fmt.Sprintf("%q", w.storeA)},
			{"receipt", fmt.Sprintf("%q", h.receipt())},
			{"purchase_amount", "1000"},
		}
		var parts []string
	next:
		for _, f := range fields {
			for _, x := range without {
				if f.name == x {
					continue next
				}
			}
			parts = append(parts, fmt.Sprintf("%q:%s", f.name, f.value))
		}
		return "{" + strings.Join(parts, ",")
	}
	valid := func() any { return earn() + "}" }
	big := func(n int) string { // a valid earn of n bytes or more
		s := earn("receipt") + `,"receipt":"` + strings.Repeat("r", n) + `"}`
		return s
	}
	const bad, json415, tooLarge = http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusRequestEntityTooLarge
	const vf, mj = ledger.CodeValidation, codeMalformedJSON

	t.Run("names", func(t *testing.T) {
		h.runBad(t, w, []badCase{
			{name: "an unknown field is refused and named", body: earn() + `,"bonus":1}`, status: bad, code: vf, field: "bonus", valid: valid()},
			{name: "a known name in other letter case is an unknown field", body: earn("purchase_amount") + `,"PURCHASE_AMOUNT":1000}`, status: bad, code: vf, field: "PURCHASE_AMOUNT", valid: valid()},
			{name: "a duplicate field is refused and named", body: earn() + `,"receipt":"other"}`, status: bad, code: vf, field: "receipt", valid: valid()},
			{name: "a duplicate number is refused even with the same value", body: earn() + `,"purchase_amount":1000}`, status: bad, code: vf, field: "purchase_amount", valid: valid()},
			{name: "a duplicate spelled with an escape is still a duplicate", body: earn() + `,"rec\u0065ipt":"x"}`, status: bad, code: vf, field: "receipt", valid: valid()},
			{name: "a duplicate in other letter case is refused", body: earn() + `,"Purchase_Amount":99999999}`, status: bad, code: vf, field: "purchase_amount", valid: valid()},
			{name: "an empty name is unknown", body: earn() + `,"":1}`, status: bad, code: vf, field: "", valid: valid()},
		})
	})
	t.Run("syntax", func(t *testing.T) {
		h.runBad(t, w, []badCase{
			{name: "trailing data after the object is refused", body: earn() + `} x`, status: bad, code: mj, valid: valid()},
			{name: "two objects are refused", body: earn() + `}` + earn() + `}`, status: bad, code: mj, valid: valid()},
			{name: "two objects on two lines are refused", body: earn() + "}\n" + earn() + "}\n", status: bad, code: mj, valid: valid()},
			{name: "a trailing comma is refused", body: earn() + `,}`, status: bad, code: mj, valid: valid()},
			{name: "an object that does not end is refused", body: earn(), status: bad, code: mj, valid: valid()},
			{name: "single quotes are refused", body: `{'member_id':'x'}`, status: bad, code: mj, valid: valid()},
			{name: "a comment is refused", body: earn() + `/* hi */}`, status: bad, code: mj, valid: valid()},
			{name: "NaN is refused", body: earn("purchase_amount") + `,"purchase_amount":NaN}`, status: bad, code: mj, valid: valid()},
			{name: "a byte order mark is refused", body: "\xef\xbb\xbf" + earn() + `}`, status: bad, code: mj, valid: valid()},
		})
	})
	t.Run("encoding", func(t *testing.T) {
		h.runBad(t, w, []badCase{
			{name: "invalid UTF-8 in a value is refused", body: earn("receipt") + `,"receipt":"R-` + "\xff" + `"}`, status: bad, code: mj, valid: valid()},
			{name: "invalid UTF-8 in a name is refused", body: earn() + `,"` + "\xfe" + `":1}`, status: bad, code: mj, valid: valid()},
			{name: "an overlong encoding is refused", body: earn("receipt") + `,"receipt":"` + "\xc0\xaf" + `"}`, status: bad, code: mj, valid: valid()},
			{name: "a surrogate encoded in UTF-8 is refused", body: earn("receipt") + `,"receipt":"` + "\xed\xa0\x80" + `"}`, status: bad, code: mj, valid: valid()},
			{name: "a truncated sequence at the end is refused", body: earn() + "}\xe2\x82", status: bad, code: mj, valid: valid()},
		})
	})
	t.Run("types", func(t *testing.T) {
		h.runBad(t, w, []badCase{
			{name: "a string for a number is refused", body: earn("purchase_amount") + `,"purchase_amount":"1000"}`, status: bad, code: vf, field: "purchase_amount", valid: valid()},
			{name: "1.5 for an integer is refused", body: earn("purchase_amount") + `,"purchase_amount":1.5}`, status: bad, code: vf, field: "purchase_amount", valid: valid()},
			{name: "1000.0 for an integer is refused", body: earn("purchase_amount") + `,"purchase_amount":1000.0}`, status: bad, code: vf, field: "purchase_amount", valid: valid()},
			{name: "1e3 for an integer is refused", body: earn("purchase_amount") + `,"purchase_amount":1e3}`, status: bad, code: vf, field: "purchase_amount", valid: valid()},
			{name: "a number for a string is refused", body: earn("receipt") + `,"receipt":42}`, status: bad, code: vf, field: "receipt", valid: valid()},
			{name: "true for a number is refused", body: earn() + `,"points":true}`, status: bad, code: vf, field: "points", valid: valid()},
			{name: "an array for a string is refused", body: earn("member_id") + `,"member_id":["a"]}`, status: bad, code: vf, field: "member_id", valid: valid()},
			{name: "an object for a string is refused", body: earn("store_id") + `,"store_id":{}}`, status: bad, code: vf, field: "store_id", valid: valid()},
			{name: "null for a required number is refused", body: earn("purchase_amount") + `,"purchase_amount":null}`, status: bad, code: vf, field: "purchase_amount", valid: valid()},
		})
	})
	t.Run("ranges", func(t *testing.T) {
		h.runBad(t, w, []badCase{
			{name: "1e30 is refused", body: earn("purchase_amount") + `,"purchase_amount":1e30}`, status: bad, code: vf, field: "purchase_amount", valid: valid()},
			{name: "2^63 is refused", body: earn("purchase_amount") + `,"purchase_amount":9223372036854775808}`, status: bad, code: vf, field: "purchase_amount", valid: valid()},
			{name: "below -2^63 is refused", body: earn("purchase_amount") + `,"purchase_amount":-9223372036854775809}`, status: bad, code: vf, field: "purchase_amount", valid: valid()},
			{name: "a negative amount is refused", body: earn("purchase_amount") + `,"purchase_amount":-1}`, status: bad, code: vf, field: "purchase_amount", valid: valid()},
			{name: "an amount above the documented maximum is refused", body: earn("purchase_amount") + fmt.Sprintf(`,"purchase_amount":%d}`, ledger.MaxPurchaseAmount+1), status: bad, code: vf, field: "purchase_amount", valid: valid()},
			{name: "negative points are refused", body: earn() + `,"points":-1}`, status: bad, code: vf, field: "points", valid: valid()},
			{name: "points above the documented maximum are refused", body: earn() + fmt.Sprintf(`,"points":%d}`, ledger.MaxPoints+1), status: bad, code: vf, field: "points", valid: valid()},
		})
	})
	t.Run("shape", func(t *testing.T) {
		h.runBad(t, w, []badCase{
			{name: "an array instead of an object is refused", body: `[` + earn() + `}]`, status: bad, code: mj, valid: valid()},
			{name: "null instead of an object is refused", body: `null`, status: bad, code: mj, valid: valid()},
			{name: "a string instead of an object is refused", body: `"earn"`, status: bad, code: mj, valid: valid()},
			{name: "a number instead of an object is refused", body: `42`, status: bad, code: mj, valid: valid()},
			{name: "an empty body is refused", body: ``, status: bad, code: mj, valid: valid()},
			{name: "a body of white space is refused", body: " \n\t ", status: bad, code: mj, valid: valid()},
			{name: "a deeply nested value is refused", body: earn() + `,"points":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `}`, status: bad, code: vf, field: "points", valid: valid()},
			{name: "an empty object names the first field missing", body: `{}`, status: bad, code: vf, field: "member_id", valid: valid()},
			{name: "a missing receipt is named", body: earn("receipt") + `}`, status: bad, code: vf, field: "receipt", valid: valid()},
			{name: "a missing store is named", body: earn("store_id") + `}`, status: bad, code: vf, field: "store_id", valid: valid()},
			{name: "a missing amount is named", body: earn("purchase_amount") + `}`, status: bad, code: vf, field: "purchase_amount", valid: valid()},
		})
	})
	t.Run("size and media type", func(t *testing.T) {
		h.runBad(t, w, []badCase{
			{name: "a body over 64 KiB is refused as too large", body: big(maxBody), status: tooLarge, code: codeBodyTooLarge, valid: valid()},
			{name: "a body of a megabyte is refused as too large", body: big(1 << 20), status: tooLarge, code: codeBodyTooLarge, valid: valid()},
			{name: "text/plain is refused", body: valid(), ctype: "text/plain", status: json415, code: codeUnsupportedMedia, valid: valid()},
			{name: "a form is refused", body: valid(), ctype: "application/x-www-form-urlencoded", status: json415, code: codeUnsupportedMedia, valid: valid()},
			{name: "a Content-Type that does not parse is refused", body: valid(), ctype: "application/json; charset", status: json415, code: codeUnsupportedMedia, valid: valid()},
		})
		for _, c := range []struct{ name, ctype string }{
			{"application/json with a charset is taken", "application/json; charset=utf-8"},
			{"a +json media type is taken", "application/vnd.pointd+json"},
			{"no Content-Type at all is taken", "-"},
		} {
			t.Run(c.name, func(t *testing.T) {
				h := h.at(t)
				hdr := map[string]string{"Content-Type": c.ctype}
				if c.ctype == "-" {
					hdr["Content-Type"] = ""
				}
				r := h.do(req{method: http.MethodPost, path: "/v1/earns", key: w.posA, idem: h.idem(), body: valid(), header: hdr})
				want[opResponse](t, r, http.StatusCreated)
			})
		}
		t.Run("a body of exactly 64 KiB is taken", func(t *testing.T) {
			h := h.at(t)
			body := earn() + "}"
			body += strings.Repeat(" ", maxBody-len(body))
			want[opResponse](t, h.post("/v1/earns", w.posA, h.idem(), body), http.StatusCreated)
		})
	})
	t.Run("ids", func(t *testing.T) {
		card := w.member.CardNumber
		badLuhn := card[:15] + string('0'+(card[15]-'0'+1)%10)
		h.runBad(t, w, []badCase{
			{name: "a member id with a space is refused", body: earn("member_id") + `,"member_id":"a b"}`, status: bad, code: vf, field: "member_id", valid: valid()},
			{name: "a member id of 65 characters is refused", body: earn("member_id") + `,"member_id":"` + strings.Repeat("m", 65) + `"}`, status: bad, code: vf, field: "member_id", valid: valid()},
			{name: "a store id with a control character is refused", body: earn("store_id") + `,"store_id":"s\u0001"}`, status: bad, code: vf, field: "store_id", valid: valid()},
			{name: "a store id with a NUL is refused", body: earn("store_id") + `,"store_id":"s\u0000"}`, status: bad, code: vf, field: "store_id", valid: valid()},
			{name: "a store id that is not ASCII is refused", body: earn("store_id") + `,"store_id":"störe"}`, status: bad, code: vf, field: "store_id", valid: valid()},
			{name: "a receipt of 65 characters is refused", body: earn("receipt") + `,"receipt":"` + strings.Repeat("r", 65) + `"}`, status: bad, code: vf, field: "receipt", valid: valid()},
			{name: "a receipt with a space is refused", body: earn("receipt") + `,"receipt":"R 1"}`, status: bad, code: vf, field: "receipt", valid: valid()},
			{name: "a card number failing the Luhn check is refused", body: earn("member_id") + `,"card_number":"` + badLuhn + `"}`, status: bad, code: vf, field: "card_number", valid: valid()},
			{name: "a card number with letters is refused", body: earn("member_id") + `,"card_number":"94100000000000ab"}`, status: bad, code: vf, field: "card_number", valid: valid()},
			{name: "a card number of 15 digits is refused", body: earn("member_id") + `,"card_number":"` + card[:15] + `"}`, status: bad, code: vf, field: "card_number", valid: valid()},
			{name: "both a member id and a card number are refused", body: earn() + `,"card_number":"` + card + `"}`, status: bad, code: vf, field: "card_number", valid: valid()},
			{name: "an unknown member is not found", body: earn("member_id") + `,"member_id":"` + ledger.NewID() + `"}`, status: http.StatusNotFound, code: ledger.CodeMemberNotFound, valid: valid()},
			{name: "an unknown card number is not found", body: earn("member_id") + `,"card_number":"` + unknownCard(t, card) + `"}`, status: http.StatusNotFound, code: ledger.CodeMemberNotFound, valid: valid()},
			{name: "an unknown store is not found", body: earn("store_id") + `,"store_id":"` + ledger.NewID() + `"}`, status: http.StatusNotFound, code: ledger.CodeStoreNotFound, valid: valid()},
		})
	})
}

func TestStrictInputOfOtherWrites(t *testing.T) {
	h := newHarness(t)
	w := h.newWorld()
	e := h.earn(w.posA, w.storeA, w.member.ID, 100_000) // 1500 points
	hold := want[opResponse](t, h.post("/v1/holds", w.posA, h.idem(),
		map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "points": 10}), http.StatusCreated)
	red := want[opResponse](t, h.post("/v1/redemptions", w.posA, h.idem(),
		map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "points": 10}), http.StatusCreated)
	const bad, vf, mj = http.StatusBadRequest, ledger.CodeValidation, codeMalformedJSON
	m := w.member.ID
	redeem := func(extra string) string {
		return fmt.Sprintf(`{"member_id":%q,"store_id":%q,"receipt":%q%s}`, m, w.storeA, h.receipt(), extra)
	}
	holdBody := func(extra string) string {
		return fmt.Sprintf(`{"member_id":%q,"store_id":%q%s}`, m, w.storeA, extra)
	}
	capture := "/v1/holds/" + hold.ID + "/capture"
	void := "/v1/holds/" + hold.ID + "/void"

	t.Run("redemptions", func(t *testing.T) {
		h.runBad(t, w, []badCase{
			{name: "zero points are refused", path: "/v1/redemptions", body: redeem(`,"points":0`), status: bad, code: vf, field: "points", valid: redeem(`,"points":1`)},
			{name: "negative points are refused", path: "/v1/redemptions", body: redeem(`,"points":-5`), status: bad, code: vf, field: "points", valid: redeem(`,"points":1`)},
			{name: "1.5 points are refused", path: "/v1/redemptions", body: redeem(`,"points":1.5`), status: bad, code: vf, field: "points", valid: redeem(`,"points":1`)},
			{name: "missing points are named", path: "/v1/redemptions", body: redeem(``), status: bad, code: vf, field: "points", valid: redeem(`,"points":1`)},
			{name: "a purchase amount is an unknown field", path: "/v1/redemptions", body: redeem(`,"points":1,"purchase_amount":5`), status: bad, code: vf, field: "purchase_amount", valid: redeem(`,"points":1`)},
			{name: "more points than available are refused", path: "/v1/redemptions", body: redeem(`,"points":1000000`), status: http.StatusUnprocessableEntity, code: ledger.CodeInsufficientPoints, valid: redeem(`,"points":1`)},
		})
	})
	t.Run("holds", func(t *testing.T) {
		h.runBad(t, w, []badCase{
			{name: "a hold of zero seconds is refused", path: "/v1/holds", body: holdBody(`,"points":1,"expires_in_seconds":0`), status: bad, code: vf, field: "expires_in_seconds"},
			{name: "a hold longer than a week is refused", path: "/v1/holds", body: holdBody(fmt.Sprintf(`,"points":1,"expires_in_seconds":%d`, ledger.MaxHoldSeconds+1)), status: bad, code: vf, field: "expires_in_seconds"},
			{name: "a hold of zero points is refused", path: "/v1/holds", body: holdBody(`,"points":0`), status: bad, code: vf, field: "points"},
			{name: "a hold with a receipt is an unknown field", path: "/v1/holds", body: holdBody(`,"points":1,"receipt":"x"`), status: bad, code: vf, field: "receipt"},
			{name: "a capture with an unknown field is refused", path: capture, body: `{"amount":1}`, status: bad, code: vf, field: "amount"},
			{name: "a capture of zero points is refused", path: capture, body: `{"points":0}`, status: bad, code: vf, field: "points"},
			{name: "a capture of more than is held is refused", path: capture, body: `{"points":11}`, status: bad, code: vf, field: "points"},
			{name: "a capture that is not JSON is refused", path: capture, body: `points=1`, status: bad, code: mj},
			{name: "a capture of a hold id pointd could never have made is not found", path: "/v1/holds/" + strings.Repeat("h", 65) + "/capture", body: `{}`, status: http.StatusNotFound, code: ledger.CodeHoldNotFound},
			{name: "a capture of an unknown hold is not found", path: "/v1/holds/" + ledger.NewID() + "/capture", body: `{}`, status: http.StatusNotFound, code: ledger.CodeHoldNotFound},
			{name: "a void with points is refused", path: void, body: `{"points":1}`, status: bad, code: vf, field: "points"},
			{name: "a void with an array is refused", path: void, body: `[]`, status: bad, code: mj},
			{name: "a void of an unknown hold is not found", path: "/v1/holds/" + ledger.NewID() + "/void", status: http.StatusNotFound, code: ledger.CodeHoldNotFound},
		})
	})
	t.Run("cancellations", func(t *testing.T) {
		cancel := func(extra string) string { return fmt.Sprintf(`{"transaction_id":%q%s}`, e.ID, extra) }
		h.runBad(t, w, []badCase{
			{name: "points and an amount together are refused", path: "/v1/cancellations", body: cancel(`,"points":1,"purchase_amount":1`), status: bad, code: vf, field: "points", valid: cancel(`,"points":1`)},
			{name: "a missing transaction is named", path: "/v1/cancellations", body: `{"points":1}`, status: bad, code: vf, field: "transaction_id"},
			{name: "zero points are refused", path: "/v1/cancellations", body: cancel(`,"points":0`), status: bad, code: vf, field: "points", valid: cancel(`,"points":1`)},
			{name: "a zero amount is refused", path: "/v1/cancellations", body: cancel(`,"purchase_amount":0`), status: bad, code: vf, field: "purchase_amount", valid: cancel(`,"points":1`)},
			{name: "more points than the earn is refused", path: "/v1/cancellations", body: cancel(`,"points":1501`), status: http.StatusUnprocessableEntity, code: ledger.CodeCancelExceeds, valid: cancel(`,"points":1`)},
			{name: "more than the purchase amount is refused", path: "/v1/cancellations", body: cancel(`,"purchase_amount":100001`), status: http.StatusUnprocessableEntity, code: ledger.CodeCancelExceeds, valid: cancel(`,"points":1`)},
			{name: "an unknown transaction is not found", path: "/v1/cancellations", body: fmt.Sprintf(`{"transaction_id":%q}`, ledger.NewID()), status: http.StatusNotFound, code: ledger.CodeTransactionNotFound},
			{name: "a hold cannot be cancelled", path: "/v1/cancellations", body: fmt.Sprintf(`{"transaction_id":%q}`, hold.ID), status: http.StatusConflict, code: ledger.CodeNotCancellable},
			{name: "a redemption cannot be cancelled by amount", path: "/v1/cancellations", body: fmt.Sprintf(`{"transaction_id":%q,"purchase_amount":1}`, red.ID), status: bad, code: vf, field: "purchase_amount"},
		})
	})
	t.Run("adjustments", func(t *testing.T) {
		adj := func(extra string) string { return fmt.Sprintf(`{"member_id":%q%s}`, m, extra) }
		ok := adj(`,"points":1,"reason":"ok"`)
		h.runBad(t, w, []badCase{
			{name: "zero points are refused", path: "/v1/adjustments", key: h.admin, body: adj(`,"points":0,"reason":"x"`), status: bad, code: vf, field: "points", valid: ok},
			{name: "points above the maximum are refused", path: "/v1/adjustments", key: h.admin, body: adj(fmt.Sprintf(`,"points":%d,"reason":"x"`, ledger.MaxPoints+1)), status: bad, code: vf, field: "points", valid: ok},
			{name: "points below minus the maximum are refused", path: "/v1/adjustments", key: h.admin, body: adj(fmt.Sprintf(`,"points":%d,"reason":"x"`, -ledger.MaxPoints-1)), status: bad, code: vf, field: "points", valid: ok},
			{name: "a missing reason is named", path: "/v1/adjustments", key: h.admin, body: adj(`,"points":1`), status: bad, code: vf, field: "reason", valid: ok},
			{name: "a blank reason is refused", path: "/v1/adjustments", key: h.admin, body: adj(`,"points":1,"reason":"   "`), status: bad, code: vf, field: "reason", valid: ok},
			{name: "a reason over 500 bytes is refused", path: "/v1/adjustments", key: h.admin, body: adj(`,"points":1,"reason":"` + strings.Repeat("x", 501) + `"`), status: bad, code: vf, field: "reason", valid: ok},
			{name: "taking more than the member has is refused", path: "/v1/adjustments", key: h.admin, body: adj(`,"points":-100000,"reason":"x"`), status: http.StatusUnprocessableEntity, code: ledger.CodeInsufficientPoints, valid: ok},
		})
	})
	t.Run("directory", func(t *testing.T) {
		merchant := func(extra string) string { return `{"name":"New"` + extra + `}` }
		okMerchant := merchant(`,"earn_rate_bp":100`)
		member := func() string { return fmt.Sprintf(`{"phone":"+3312345%04d","name":"N"}`, h.seq.Add(1)) }
		h.runBad(t, w, []badCase{
			{name: "a merchant without a rate is refused", path: "/v1/merchants", key: h.admin, body: merchant(``), status: bad, code: vf, field: "earn_rate_bp", valid: okMerchant},
			{name: "a rate above 10000 bp is refused", path: "/v1/merchants", key: h.admin, body: merchant(`,"earn_rate_bp":10001`), status: bad, code: vf, field: "earn_rate_bp", valid: okMerchant},
			{name: "a negative rate is refused", path: "/v1/merchants", key: h.admin, body: merchant(`,"earn_rate_bp":-1`), status: bad, code: vf, field: "earn_rate_bp", valid: okMerchant},
			{name: "a rate of 1e30 is refused", path: "/v1/merchants", key: h.admin, body: merchant(`,"earn_rate_bp":1e30`), status: bad, code: vf, field: "earn_rate_bp", valid: okMerchant},
			{name: "a validity of zero days is refused", path: "/v1/merchants", key: h.admin, body: merchant(`,"earn_rate_bp":1,"point_validity_days":0`), status: bad, code: vf, field: "point_validity_days", valid: okMerchant},
			{name: "a validity beyond a century is refused", path: "/v1/merchants", key: h.admin, body: merchant(`,"earn_rate_bp":1,"point_validity_days":36501`), status: bad, code: vf, field: "point_validity_days", valid: okMerchant},
			{name: "a validity beyond int32 is refused", path: "/v1/merchants", key: h.admin, body: merchant(`,"earn_rate_bp":1,"point_validity_days":4294967297`), status: bad, code: vf, field: "point_validity_days", valid: okMerchant},
			{name: "a merchant without a name is refused", path: "/v1/merchants", key: h.admin, body: `{"earn_rate_bp":1}`, status: bad, code: vf, field: "name", valid: okMerchant},
			{name: "a name with a control character is refused", path: "/v1/merchants", key: h.admin, body: `{"name":"a\u0007b","earn_rate_bp":1}`, status: bad, code: vf, field: "name", valid: okMerchant},
			{name: "a name over 200 bytes is refused", path: "/v1/merchants", key: h.admin, body: `{"name":"` + strings.Repeat("n", 201) + `","earn_rate_bp":1}`, status: bad, code: vf, field: "name", valid: okMerchant},
			{name: "a store without a name is refused", path: "/v1/merchants/" + w.merchantA + "/stores", key: h.admin, body: `{}`, status: bad, code: vf, field: "name", valid: `{"name":"S2"}`},
			{name: "a store of an unknown merchant is not found", path: "/v1/merchants/" + ledger.NewID() + "/stores", key: h.admin, body: `{"name":"S"}`, status: http.StatusNotFound, code: ledger.CodeMerchantNotFound},
			{name: "a member with letters for a phone is refused", path: "/v1/members", body: `{"phone":"call me","name":"N"}`, status: bad, code: vf, field: "phone", valid: member()},
			{name: "a member with a short phone is refused", path: "/v1/members", body: `{"phone":"123","name":"N"}`, status: bad, code: vf, field: "phone", valid: member()},
			{name: "a member with a phone of 16 digits is refused", path: "/v1/members", body: `{"phone":"1234567890123456","name":"N"}`, status: bad, code: vf, field: "phone", valid: member()},
			{name: "a member without a name is refused", path: "/v1/members", body: `{"phone":"+33612345678"}`, status: bad, code: vf, field: "name", valid: member()},
			{name: "a member with a card number given is refused", path: "/v1/members", body: `{"phone":"+33612345678","name":"N","card_number":"9410000000000005"}`, status: bad, code: vf, field: "card_number", valid: member()},
			{name: "a key of an unknown role is refused", path: "/v1/keys", key: h.admin, body: `{"role":"root"}`, status: bad, code: vf, field: "role"},
			{name: "a POS key without a merchant is refused", path: "/v1/keys", key: h.admin, body: `{"role":"pos"}`, status: bad, code: vf, field: "merchant_id"},
			{name: "an admin key of a merchant is refused", path: "/v1/keys", key: h.admin, body: fmt.Sprintf(`{"role":"admin","merchant_id":%q}`, w.merchantA), status: bad, code: vf, field: "merchant_id"},
			{name: "a POS key of another merchant's store is refused", path: "/v1/keys", key: h.admin, body: fmt.Sprintf(`{"role":"pos","merchant_id":%q,"store_id":%q}`, w.merchantA, w.storeB), status: bad, code: vf, field: "store_id"},
			{name: "a POS key of an unknown merchant is not found", path: "/v1/keys", key: h.admin, body: fmt.Sprintf(`{"role":"pos","merchant_id":%q}`, ledger.NewID()), status: http.StatusNotFound, code: ledger.CodeMerchantNotFound},
		})
	})
}

func TestStrictQueries(t *testing.T) {
	h := newHarness(t)
	w := h.newWorld()
	h.earn(w.posA, w.storeA, w.member.ID, 10_000)
	hist := "/v1/members/" + w.member.ID + "/transactions?"
	adminHist := historyPurpose(auth.Key{Role: auth.RoleAdmin}, w.member.ID)
	for _, c := range []struct {
		name, path string
		status     int
		code       string
		field      string
	}{
		{"a limit of zero is refused", hist + "limit=0", 400, ledger.CodeValidation, "limit"},
		{"a limit above 200 is refused", hist + "limit=201", 400, ledger.CodeValidation, "limit"},
		{"a limit that is not a number is refused", hist + "limit=ten", 400, ledger.CodeValidation, "limit"},
		{"a cursor this API never gave is refused", hist + "cursor=garbage!", 400, ledger.CodeValidation, "cursor"},
		{"a cursor of seq zero is refused", hist + "cursor=" + h.api.makeCursor(adminHist, 0), 400, ledger.CodeValidation, "cursor"},
		{"a cursor of a negative seq is refused", hist + "cursor=" + h.api.makeCursor(adminHist, -4), 400, ledger.CodeValidation, "cursor"},
		{"a cursor in the clear (the old form) is refused", hist + "cursor=" + base64.RawURLEncoding.EncodeToString([]byte("s5")), 400, ledger.CodeValidation, "cursor"},
		{"a cursor of another member's history is refused", hist + "cursor=" + h.api.makeCursor(historyPurpose(auth.Key{Role: auth.RoleAdmin}, ledger.NewID()), 5), 400, ledger.CodeValidation, "cursor"},
		{"an audit log cursor is refused by a history", hist + "cursor=" + h.api.makeCursor("audit", 5), 400, ledger.CodeValidation, "cursor"},
		{"the history of an unknown member is not found", "/v1/members/" + ledger.NewID() + "/transactions", 404, ledger.CodeMemberNotFound, ""},
		{"the balance of an unknown member is not found", "/v1/members/" + ledger.NewID() + "/balance", 404, ledger.CodeMemberNotFound, ""},
		{"the lots of an unknown member are not found", "/v1/members/" + ledger.NewID() + "/lots", 404, ledger.CodeMemberNotFound, ""},
		{"a lookup by card number and phone together is refused", "/v1/members?" + url.Values{"card_number": {w.member.CardNumber}, "phone": {w.member.Phone}}.Encode(), 400, ledger.CodeValidation, "phone"},
		{"a lookup by nothing is refused", "/v1/members", 400, ledger.CodeValidation, "card_number"},
		{"a lookup by a card number failing the Luhn check is refused", "/v1/members?card_number=1234567812345678", 400, ledger.CodeValidation, "card_number"},
		{"a lookup by a phone with letters is refused", "/v1/members?phone=abc", 400, ledger.CodeValidation, "phone"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := h.at(t)
			problem(t, h.get(c.path, w.posA), c.status, c.code, c.field)
		})
	}
}

// TestMalformedIDsInThePath sends ids no API ever gave out where the path
// takes one: each is not found or invalid, on both stores; never a 500.
func TestMalformedIDsInThePath(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run("on "+string(b), func(t *testing.T) {
			h := newHarness(t, withBackend(b))
			w := h.newWorld()
			ids := []struct{ name, id string }{
				{"a word", "nope"},
				{"a long id", strings.Repeat("x", 2000)},
				{"an escaped space", "a%20b"},
				{"an escaped NUL", "a%00b"},
				{"an escaped byte that is not UTF-8", "a%FFb"},
				{"an escaped slash", "a%2Fb"},
				{"a non-ASCII letter", "%C3%A9"},
				{"a quote", "%22%27"},
			}
			for _, id := range ids {
				for _, e := range []struct {
					method, path string
					notFound     string
				}{
					{"GET", "/v1/transactions/%s", ledger.CodeTransactionNotFound},
					{"GET", "/v1/holds/%s", ledger.CodeHoldNotFound},
					{"GET", "/v1/members/%s", ledger.CodeMemberNotFound},
					{"GET", "/v1/members/%s/balance", ledger.CodeMemberNotFound},
					{"GET", "/v1/members/%s/transactions", ledger.CodeMemberNotFound},
					{"GET", "/v1/members/%s/lots", ledger.CodeMemberNotFound},
					{"GET", "/v1/stores/%s", ledger.CodeStoreNotFound},
					{"GET", "/v1/merchants/%s", ledger.CodeMerchantNotFound},
					{"POST", "/v1/merchants/%s/stores", ledger.CodeMerchantNotFound},
					{"POST", "/v1/holds/%s/capture", ledger.CodeHoldNotFound},
					{"POST", "/v1/holds/%s/void", ledger.CodeHoldNotFound},
				} {
					path := fmt.Sprintf(e.path, id.id)
					t.Run(fmt.Sprintf("%s %s with %s", e.method, e.path, id.name), func(t *testing.T) {
						h := h.at(t)
						key := h.admin
						var body any
						if e.method == "POST" {
							body = `{"name":"S"}`
							if strings.Contains(e.path, "holds") {
								body = `{}`
								key = w.posA
							}
						}
						before := h.headSeq()
						r := h.do(req{method: e.method, path: path, key: key, idem: h.idem(), body: body})
						switch r.status {
						case http.StatusNotFound:
							problem(t, r, http.StatusNotFound, e.notFound, "-")
						case http.StatusBadRequest:
							problem(t, r, http.StatusBadRequest, ledger.CodeValidation, "-")
						default:
							t.Errorf("answers %s; want 404 %s or 400", r, e.notFound)
						}
						if after := h.headSeq(); after != before {
							t.Errorf("the ledger moved from %d to %d", before, after)
						}
					})
				}
			}
		})
	}
}
