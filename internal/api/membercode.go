package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/code128"
	"github.com/boombuler/barcode/qr"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
)

// Member codes at the till (internal/member, code.go; docs/api.md, "Member
// codes"): the member's app shows GET /v1/me/code (or its barcode), the POS
// sends it as member_code instead of member_id or card_number.

func init() {
	for _, c := range []string{member.CodeMemberCodeInvalid, member.CodeMemberCodeExpired,
		member.CodeMemberCodeUsed, member.CodeMemberCodeRequired} {
		statusOf[c] = http.StatusUnprocessableEntity
	}
}

// memberRef is how a request names its member: exactly one of the three.
type memberRef struct {
	ID   string // member_id
	Card string // card_number
	Code string // member_code
}

// idemScope is the scope the ledger's writer keeps idempotency records
// under for op (ledger engine: IdemKey{op.Actor.KeyID, ...}); the two must
// agree for a retry to be recognised here.
func idemScope(op ledger.Op) string { return op.Actor.KeyID }

// resolveMember turns a request's member reference into the member id. A
// redemption or a hold at a merchant that requires member codes takes only
// a code; a code used there claims its time step for that merchant.
func (s *Server) resolveMember(r *http.Request, op ledger.Op, who memberRef) (string, error) {
	if who.Code == "" && op.Kind != ledger.OpAdjust && who.ID == "" && who.Card == "" {
		return "", ledger.Invalid("member_id", "one of member_id, card_number or member_code is required")
	}
	if who.Code != "" && (who.ID != "" || who.Card != "") {
		return "", ledger.Invalid("member_code", "give one of member_id, card_number and member_code, not several")
	}
	spend := op.Kind == ledger.OpRedeem || op.Kind == ledger.OpHold
	var merchantID string
	if spend && op.StoreID != "" {
		// Read through the directory cache: a change of the setting is
		// seen at once on the instance that made it, within the cache's
		// TTL (one minute) on others without shared Redis.
		si, err := s.rp.stores.Get(r.Context(), op.StoreID)
		switch {
		case err == nil:
			if k := caller(r); k.Role == auth.RoleAdmin || k.MerchantID == si.MerchantID {
				merchantID = si.MerchantID
			}
			// Only a caller that may spend at the store learns its
			// merchant's setting; another merchant's key is refused the
			// store by the writer as before.
			if merchantID != "" && si.Merchant.RequireMemberCode && who.Code == "" {
				return "", &ledger.Error{Code: member.CodeMemberCodeRequired, Field: "member_code",
					Message: "this merchant takes redemptions and holds only with the member's code: scan the member code their app shows (member_code), not a card number or member id"}
			}
		case ledger.ErrorCode(err) != ledger.CodeStoreNotFound:
			return "", err
		}
		// An unknown store, or another merchant's: the writer refuses it
		// with its usual answer, and no code step is claimed.
	}
	if who.Code == "" {
		return s.memberID(r, who.ID, who.Card)
	}
	if s.members == nil {
		return "", &ledger.Error{Code: ledger.CodeUnavailable, Message: "member codes are not configured on this server"}
	}
	res, err := s.members.CheckCode(r.Context(), member.CodeCheck{Code: who.Code, KeyID: caller(r).ID,
		Spend: spend, MerchantID: merchantID})
	if err != nil {
		// A retry of a request already done replays its answer even when
		// its code has expired since, or (never for the same caller) was
		// claimed: the writer finds the record and executes nothing.
		if c := ledger.ErrorCode(err); res.MemberID != "" && (c == member.CodeMemberCodeExpired || c == member.CodeMemberCodeUsed) {
			if _, done, ierr := s.store.Idempotency(r.Context(), idemScope(op), op.IdempotencyKey); ierr == nil && done {
				return res.MemberID, nil
			}
		}
		return "", err
	}
	return res.MemberID, nil
}

// getMyCode answers the caller's member code for now.
func (s *Server) getMyCode(w http.ResponseWriter, r *http.Request) {
	if !s.needMembers(w, r) {
		return
	}
	c, err := s.members.IssueCode(r.Context(), caller(r).MemberID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// getMyCodeSVG draws the caller's member code as a QR code or a Code 128
// barcode. The library encodes; the SVG is drawn here from its modules.
func (s *Server) getMyCodeSVG(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for name := range q {
		if name != "format" {
			writeProblem(w, r, ledger.Invalid(name, "is not a parameter of this endpoint (format)"))
			return
		}
	}
	format := q.Get("format")
	if format == "" {
		format = "qr"
	}
	if format != "qr" && format != "code128" {
		writeProblem(w, r, ledger.Invalid("format", "must be qr or code128"))
		return
	}
	if !s.needMembers(w, r) {
		return
	}
	c, err := s.members.IssueCode(r.Context(), caller(r).MemberID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var svg string
	if format == "qr" {
		svg, err = qrSVG(c.Code)
	} else {
		svg, err = code128SVG(c.Code)
	}
	if err != nil {
		writeError(w, r, fmt.Errorf("draw member code: %w", err))
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store") // a code is good for a minute at most
	w.Header().Set("Expires", c.ExpiresAt.UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(svg))
}

// dark reports whether a barcode's module at (x, y) is drawn.
func dark(b barcode.Barcode, x, y int) bool {
	cr, cg, cb, _ := b.At(x, y).RGBA()
	return cr+cg+cb < 3*0x8000
}

// runs calls fn for every run of dark modules of row y: start and length.
func runs(b barcode.Barcode, y int, fn func(x, n int)) {
	bd := b.Bounds()
	for x := bd.Min.X; x < bd.Max.X; {
		if !dark(b, x, y) {
			x++
			continue
		}
		start := x
		for x < bd.Max.X && dark(b, x, y) {
			x++
		}
		fn(start-bd.Min.X, x-start)
	}
}

// qrSVG draws a QR code (numeric mode, error correction M) with the
// standard quiet zone of 4 modules, one SVG unit per module.
func qrSVG(code string) (string, error) {
	b, err := qr.Encode(code, qr.M, qr.Numeric)
	if err != nil {
		return "", err
	}
	const quiet = 4
	n := b.Bounds().Dx()
	size := n + 2*quiet
	var d strings.Builder
	for y := 0; y < b.Bounds().Dy(); y++ {
		runs(b, b.Bounds().Min.Y+y, func(x, l int) {
			fmt.Fprintf(&d, "M%d %dh%dv1h-%dz", x+quiet, y+quiet, l, l)
		})
	}
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" shape-rendering="crispEdges">`+
		`<title>member code</title><rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="%s"/></svg>`+"\n",
		size, size, size*8, size*8, size, size, d.String()), nil
}

// code128SVG draws a Code 128 barcode (numeric content goes in code set C,
// two digits a symbol) with a quiet zone of 10 modules and the digits
// printed under the bars, as a cashier may type them.
func code128SVG(code string) (string, error) {
	b, err := code128.Encode(code)
	if err != nil {
		return "", err
	}
	const quiet, bars, text = 10, 50, 14
	width := b.Bounds().Dx() + 2*quiet
	height := bars + text + 4
	var d strings.Builder
	runs(b, b.Bounds().Min.Y, func(x, l int) {
		fmt.Fprintf(&d, "M%d 0h%dv%dh-%dz", x+quiet, l, bars, l)
	})
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" shape-rendering="crispEdges">`+
		`<title>member code</title><rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="%s"/>`+
		`<text x="%d" y="%d" font-family="monospace" font-size="%d" text-anchor="middle" fill="#000">%s</text></svg>`+"\n",
		width, height, width*3, height*3, width, height, d.String(), width/2, bars+text, text-2, code), nil
}
