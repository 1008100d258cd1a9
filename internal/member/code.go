package member

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/pointd/pointd/internal/ledger"
)

// Member codes: the number a member's app shows (as a QR code or a Code 128
// barcode) and a POS scans, so that spending points needs the member at the
// till. A code is 20 digits (docs/api.md, "Member codes"):
//
//	RRRRRRRRR SS TTTTTTTT C
//
// R: the member's code reference, 9 digits, first one not 0; a number of
// its own, not the card number, so a code tells nothing a card does and
// finds its member through an index. S: the code's time step modulo 100,
// so the server knows which step a code claims and can tell an old code
// (expired) from a wrong one with one HMAC. T: the RFC 6238 one-time
// password of that step (HMAC-SHA1 of the step under the member's secret,
// 30 s steps, 8 digits). C: a Luhn check digit over the 19 before it, so a
// misread is refused before any lookup and never counts as a guess.

// Error codes of member codes.
const (
	CodeMemberCodeInvalid  = "member_code_invalid"  // 422: not a code, or not this member's code of a recent step
	CodeMemberCodeExpired  = "member_code_expired"  // 422: a right code of an older step
	CodeMemberCodeUsed     = "member_code_used"     // 422: another merchant spent it
	CodeMemberCodeRequired = "member_code_required" // 422: the merchant spends only with a code
)

// The code's layout.
const (
	MemberCodeLength = 20
	MemberCodeStep   = 30 * time.Second
	refDigits        = 9
	stepDigits       = 2
	totpDigits       = 8
	minRef           = 100_000_000
	refSpan          = 900_000_000 // refs are minRef .. minRef+refSpan-1
	stepModulus      = 100
)

// MemberCode is a member's code secret as a store keeps it (sealed there,
// opened here).
type MemberCode struct {
	MemberID  string
	Ref       int64
	Secret    []byte
	CreatedAt time.Time
}

// Errors of the code store.
var (
	ErrNoMemberCode = errors.New("no member code with this reference")
	ErrCodeRefTaken = errors.New("this member code reference belongs to another member")
)

// CodeStore keeps member code secrets, the merchants that spent them and
// the counts of code checks.
type CodeStore interface {
	// EnsureMemberCode stores c unless c.MemberID has a code already, and
	// returns the member's code (c, or the one stored before). A reference
	// another member has is ErrCodeRefTaken.
	EnsureMemberCode(ctx context.Context, c MemberCode) (MemberCode, error)
	// MemberCodeByRef finds a code by its reference, ErrNoMemberCode if none.
	MemberCodeByRef(ctx context.Context, ref int64) (MemberCode, error)
	// TakeCodeAttempts counts one attempt for every subject, in one
	// transaction, unless one of them has had max attempts in its window
	// (which starts at its first attempt and lasts window): then it counts
	// none and returns when the latest such window ends.
	TakeCodeAttempts(ctx context.Context, subjects []string, at time.Time, window time.Duration, max int) (ok bool, retryAt time.Time, err error)
	// ReturnCodeAttempts gives back one attempt of every subject (a right
	// code is no guess).
	ReturnCodeAttempts(ctx context.Context, subjects []string) error
	// ClaimCodeStep records that merchantID spends the member's code of
	// step, unless a merchant did already, and returns the merchant that
	// holds it (merchantID, or the earlier one). Concurrent claims on any
	// number of instances agree on one holder.
	ClaimCodeStep(ctx context.Context, memberID string, step int64, merchantID string, at time.Time) (holder string, err error)
}

// totpOpts is the one-time part: RFC 6238 with 30 s steps and 8 digits.
var totpOpts = totp.ValidateOpts{Period: uint(MemberCodeStep / time.Second), Digits: otp.Digits(totpDigits), Algorithm: otp.AlgorithmSHA1}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// stepOf is the time step of t.
func stepOf(t time.Time) int64 { return t.Unix() / int64(MemberCodeStep/time.Second) }

// stepStart is when step begins.
func stepStart(step int64) time.Time {
	return time.Unix(step*int64(MemberCodeStep/time.Second), 0).UTC()
}

// oneTime is the RFC 6238 password of a secret at a step.
func oneTime(secret []byte, step int64) (string, error) {
	return totp.GenerateCodeCustom(b32.EncodeToString(secret), stepStart(step), totpOpts)
}

// formatCode builds the 20 digits of a code.
func formatCode(ref, step int64, otp string) string {
	body := fmt.Sprintf("%0*d%0*d%s", refDigits, ref, stepDigits, step%stepModulus, otp)
	return body + strconv.Itoa(ledger.LuhnDigit(body))
}

// parsedCode is a code read back, its check digit verified.
type parsedCode struct {
	ref     int64
	stepMod int64
	otp     string
}

// parseCode reads a code; ok is false for anything that is not 20 digits
// with a right check digit and a possible reference.
func parseCode(s string) (parsedCode, bool) {
	if len(s) != MemberCodeLength {
		return parsedCode{}, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return parsedCode{}, false
		}
	}
	if int(s[MemberCodeLength-1]-'0') != ledger.LuhnDigit(s[:MemberCodeLength-1]) {
		return parsedCode{}, false
	}
	ref, _ := strconv.ParseInt(s[:refDigits], 10, 64)
	sm, _ := strconv.ParseInt(s[refDigits:refDigits+stepDigits], 10, 64)
	if ref < minRef {
		return parsedCode{}, false
	}
	return parsedCode{ref: ref, stepMod: sm, otp: s[refDigits+stepDigits : MemberCodeLength-1]}, true
}

// LooksLikeMemberCode reports whether s has a member code's form: 20 digits
// with a right check digit. It says nothing of whether the code is good.
func LooksLikeMemberCode(s string) bool {
	_, ok := parseCode(s)
	return ok
}

// IssuedCode is a member's code of the current step.
type IssuedCode struct {
	Code string `json:"code"`
	// RefreshAt is when the next step begins: the app shows a new code then.
	RefreshAt time.Time `json:"refresh_at"`
	// ExpiresAt is when this code stops being accepted: the end of the step
	// after its own.
	ExpiresAt time.Time `json:"expires_at"`
}

// IssueCode returns the member's code for now, creating their secret on
// first use.
func (s *Service) IssueCode(ctx context.Context, memberID string) (IssuedCode, error) {
	c, err := s.memberCode(ctx, memberID)
	if err != nil {
		return IssuedCode{}, err
	}
	step := stepOf(s.cfg.Now())
	otp, err := oneTime(c.Secret, step)
	if err != nil {
		return IssuedCode{}, err
	}
	return IssuedCode{Code: formatCode(c.Ref, step, otp), RefreshAt: stepStart(step + 1), ExpiresAt: stepStart(step + 2)}, nil
}

// memberCode returns the member's code secret, making one (20 random bytes,
// the RFC 4226 recommended length for HMAC-SHA1, and a random reference)
// if they have none.
func (s *Service) memberCode(ctx context.Context, memberID string) (MemberCode, error) {
	var err error
	for range 8 { // a random reference collides rarely; a few tries settle it
		secret := make([]byte, 20)
		if _, err := rand.Read(secret); err != nil {
			return MemberCode{}, err
		}
		n, rerr := rand.Int(rand.Reader, big.NewInt(refSpan))
		if rerr != nil {
			return MemberCode{}, rerr
		}
		var c MemberCode
		c, err = s.store.EnsureMemberCode(ctx, MemberCode{MemberID: memberID, Ref: minRef + n.Int64(), Secret: secret,
			CreatedAt: ledger.MicroTime(s.cfg.Now())})
		if !errors.Is(err, ErrCodeRefTaken) {
			return c, err
		}
	}
	return MemberCode{}, err
}

// CodeCheck is a code presented at a till.
type CodeCheck struct {
	Code  string
	KeyID string // the API key that presents it: guesses count against it
	// Spend is set for a redemption or a hold: the code's step is then
	// claimed for MerchantID, and refused when another merchant holds it.
	Spend      bool
	MerchantID string
}

// CodeResult is what a code resolved to. It carries the member even when
// the code is refused as expired or used, so that the caller can tell a
// retry of a request already done (which replays) from a new one.
type CodeResult struct {
	MemberID string
	Step     int64
}

// Subjects of the attempt counts.
func keySubject(id string) string    { return "key:" + id }
func memberSubject(id string) string { return "member:" + id }

// CheckCode resolves a code to its member: one lookup by reference, one
// HMAC. Every well-formed code counts as an attempt against the key and
// the member before it is compared (a flood of concurrent guesses gets the
// limit's comparisons, not one per request); a right code, even an expired
// one, gives its attempts back. Past the limit every code is refused with
// rate_limited, the right one too.
func (s *Service) CheckCode(ctx context.Context, c CodeCheck) (CodeResult, error) {
	invalid := &ledger.Error{Code: CodeMemberCodeInvalid, Field: "member_code",
		Message: "this is not a valid member code; scan the code the member's app shows now"}
	p, ok := parseCode(c.Code)
	if !ok {
		invalid.Message = "a member code is the 20 digits the member's app shows, with a check digit; this one does not check (misread?)"
		return CodeResult{}, invalid
	}
	now := s.cfg.Now()
	mc, err := s.store.MemberCodeByRef(ctx, p.ref)
	if err != nil && !errors.Is(err, ErrNoMemberCode) {
		return CodeResult{}, err
	}
	subjects := []string{keySubject(c.KeyID)}
	if err == nil {
		subjects = append(subjects, memberSubject(mc.MemberID))
	}
	took, retryAt, terr := s.store.TakeCodeAttempts(ctx, subjects, now, s.cfg.CodeWindow, s.cfg.CodeAttempts)
	if terr != nil {
		return CodeResult{}, terr
	}
	if !took {
		return CodeResult{}, rateLimited(retryAt.Sub(now), "wrong member codes from this key or for this member")
	}
	if err != nil { // no such reference
		return CodeResult{}, invalid
	}
	// The step the code claims: the latest one not after now with its
	// residue.
	cur := stepOf(now)
	step := cur - ((cur-p.stepMod)%stepModulus+stepModulus)%stepModulus
	want, err := oneTime(mc.Secret, step)
	if err != nil {
		return CodeResult{}, err
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(p.otp)) != 1 {
		return CodeResult{}, invalid
	}
	if err := s.store.ReturnCodeAttempts(ctx, subjects); err != nil {
		return CodeResult{}, err
	}
	res := CodeResult{MemberID: mc.MemberID, Step: step}
	if step < cur-1 {
		return res, &ledger.Error{Code: CodeMemberCodeExpired, Field: "member_code",
			Message: "this member code has expired (a code is accepted for 30 to 60 s); scan the code the member's app shows now"}
	}
	if c.Spend && c.MerchantID != "" {
		holder, err := s.store.ClaimCodeStep(ctx, mc.MemberID, step, c.MerchantID, ledger.MicroTime(now))
		if err != nil {
			return CodeResult{}, err
		}
		if holder != c.MerchantID {
			return res, &ledger.Error{Code: CodeMemberCodeUsed, Field: "member_code",
				Message: "this member code was already used to spend points at another merchant; scan the code the member's app shows next"}
		}
	}
	return res, nil
}
