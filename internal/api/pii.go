package api

import (
	"net/http"
	"unicode"
	"unicode/utf8"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
)

// Members' phone numbers leave the server masked: a ledger.Member encodes
// its phone masked (ledger.Member.MarshalJSON), wherever it sits in an
// answer. The whole number is answered only to an admin key that asks
// (?reveal=phone), as a revealedMember, after an audit entry says who read
// whose number when. A member's own session reads its own number through
// /v1/me, which answers a profile, not a ledger.Member. A pos key sees a
// member only as a memberBrief.

// revealedMember encodes like ledger.Member, phone whole (the conversion
// leaves the masking method behind).
type revealedMember ledger.Member

// wantsReveal reads ?reveal=: absent, or "phone" from an admin key. Any
// other value is a 400 naming the parameter; another role asking is 403.
func wantsReveal(r *http.Request) (bool, *ledger.Error) {
	q := r.URL.Query()
	if !q.Has("reveal") {
		return false, nil
	}
	if v := q["reveal"]; len(v) != 1 || v[0] != "phone" {
		return false, ledger.Invalid("reveal", "the only value is phone (reveal=phone, admin keys only)")
	}
	if k := caller(r); k.Role != auth.RoleAdmin {
		return false, ledger.Errorf(ledger.CodeForbidden,
			"a %s key may not reveal phone numbers: answers show them masked; only an admin key may ask for reveal=phone", k.Role)
	}
	return true, nil
}

// memberAnswer is what the caller may see of m: a brief for a pos key, the
// member with its phone masked for an operator, or whole when an admin
// asked to reveal it — but only once the reveal's audit entry is written:
// without its record the number is not shown.
func (s *Server) memberAnswer(r *http.Request, m ledger.Member, reveal bool) (any, error) {
	if !seesAll(caller(r)) {
		return briefOf(m), nil
	}
	if !reveal || m.Phone == "" {
		return m, nil
	}
	if s.office == nil {
		return nil, ledger.Errorf(ledger.CodeInternal, "phone numbers cannot be revealed without an audit log")
	}
	e := auditEntry(r, backoffice.ActionMemberRevealPhone, backoffice.TargetMember, m.ID)
	if err := s.office.AppendAudit(r.Context(), *e); err != nil {
		return nil, err
	}
	return revealedMember(m), nil
}

// memberBrief is what a pos key reads of a member: enough to go on with
// the sale (the id, the card for the receipt, an initial to greet), not
// who the member is. Whoever types a phone number at a till does not learn
// the name behind it.
type memberBrief struct {
	ID          string `json:"id"`
	CardNumber  string `json:"card_number"`
	NameInitial string `json:"name_initial"`
}

func briefOf(m ledger.Member) memberBrief {
	b := memberBrief{ID: m.ID, CardNumber: m.CardNumber}
	if r, n := utf8.DecodeRuneInString(m.Name); n > 0 && r != utf8.RuneError {
		b.NameInitial = string(unicode.ToUpper(r))
	}
	return b
}
