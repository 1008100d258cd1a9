// Package phone turns the ways people write a phone number into the one
// form pointd keeps and looks numbers up by: E.164 ("+821012345678"). It
// parses with github.com/nyaruka/phonenumbers, a maintained Go port of
// Google's libphonenumber, so "010-1234-5678", "+82 10 1234 5678" and
// "821012345678" are one number, and a national number is read in the
// operator's region (--phone-region).
package phone

import (
	"fmt"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// DefaultRegion is the region national numbers are read in unless the
// operator says otherwise.
const DefaultRegion = "KR"

// Plan normalises phone numbers for one default region. The zero Plan is
// the DefaultRegion's.
type Plan struct {
	region   string // ISO 3166-1 alpha-2, upper case
	code     int    // its country calling code
	expected string // what a refusal says was expected
}

// NewPlan is the Plan of a region given as an ISO 3166-1 alpha-2 code
// ("KR", "us"). A region libphonenumber does not know is an error.
func NewPlan(region string) (Plan, error) {
	r := strings.ToUpper(strings.TrimSpace(region))
	code := phonenumbers.GetCountryCodeForRegion(r)
	if code == 0 {
		return Plan{}, fmt.Errorf("unknown region %q: want a two-letter country code such as KR, JP or US", region)
	}
	expected := "must be a phone number valid in " + r
	if ex := phonenumbers.GetExampleNumberForType(r, phonenumbers.MOBILE); ex != nil {
		expected += ", such as " + phonenumbers.Format(ex, phonenumbers.NATIONAL) + " or " +
			phonenumbers.Format(ex, phonenumbers.INTERNATIONAL)
	}
	expected += ", or a number of another country written with + and its country code"
	return Plan{region: r, code: code, expected: expected}, nil
}

func (p Plan) orDefault() Plan {
	if p.region != "" {
		return p
	}
	d, _ := NewPlan(DefaultRegion)
	return d
}

// Region is the plan's region code.
func (p Plan) Region() string { return p.orDefault().region }

// Expected says what a valid number looks like, for refusals.
func (p Plan) Expected() string { return p.orDefault().expected }

// Error is a number that was refused; its text says what was expected
// and never repeats the number (messages end up in logs).
type Error struct{ msg string }

func (e *Error) Error() string { return e.msg }

// Normalize returns s in E.164. A number of the plan's own country (written
// nationally, or with its country code, with or without the +) must be a
// valid number in libphonenumber's metadata: that catches a digit too many
// or too few. A number written with another country's code must have a
// length possible there: pointd cannot vouch for other countries' newly
// opened ranges, and refusing a visitor's real number would be worse than
// keeping a well-formed one it cannot check. An extension is refused: a
// login code cannot be sent to one, and dropping it would make two
// numbers one.
func (p Plan) Normalize(s string) (string, error) {
	p = p.orDefault()
	if strings.TrimSpace(s) == "" {
		return "", &Error{p.expected}
	}
	n, err := phonenumbers.Parse(s, p.region)
	if err != nil {
		return "", &Error{p.expected}
	}
	if n.GetExtension() != "" {
		return "", &Error{"must be a phone number without an extension"}
	}
	ok := phonenumbers.IsValidNumber(n)
	if int(n.GetCountryCode()) != p.code && !ok {
		ok = phonenumbers.IsPossibleNumber(n)
	}
	if !ok {
		return "", &Error{p.expected}
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

// NormalizeQuery is Normalize for a number that came in a URL's query
// string, where an unencoded "+" arrives as a space: a value that starts
// with spaces and then a digit from 1 to 9 is read as starting with "+".
// When that reading is not a number, the refusal says how to send "+"
// (%2B) rather than trying the digits as a national number, which could
// be someone else's.
func (p Plan) NormalizeQuery(s string) (string, error) {
	t := strings.TrimLeft(s, " ")
	if t == s || t == "" || t[0] < '1' || t[0] > '9' {
		return p.Normalize(s)
	}
	n, err := p.Normalize("+" + t)
	if err != nil {
		return "", &Error{err.Error() + "; a leading space is read as a + that was not URL-encoded: send + as %2B"}
	}
	return n, nil
}
