package ledger

import (
	"crypto/rand"
	"math/big"

	"github.com/google/uuid"
)

// NewID returns a time-ordered id (UUIDv7), so lists sort by creation.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		panic(err) // only when the system's random source fails
	}
	return id.String()
}

// cardPrefix marks pointd membership cards; the rest is random digits and a
// Luhn check digit, so a mistyped card number is caught before any lookup.
const cardPrefix = "9410"

// NewCardNumber returns a random 16-digit card number with a Luhn check digit.
func NewCardNumber() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1e11))
	if err != nil {
		panic(err)
	}
	body := cardPrefix + leftPad(n.String(), 11)
	return body + string(rune('0'+luhnDigit(body)))
}

// ValidCardNumber reports whether s is 16 digits with a correct check digit.
func ValidCardNumber(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return int(s[15]-'0') == luhnDigit(s[:15])
}

// LuhnDigit is the Luhn check digit of a string of decimal digits: the
// digit to write right of it.
func LuhnDigit(body string) int { return luhnDigit(body) }

func luhnDigit(body string) int {
	sum := 0
	double := true // the check digit will stand right of body
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return (10 - sum%10) % 10
}

func leftPad(s string, n int) string {
	for len(s) < n {
		s = "0" + s
	}
	return s
}
