package ledger

import (
	"errors"
	"fmt"
)

// Error codes are stable and machine-readable: clients branch on them, so a
// code, once published, keeps its meaning. The HTTP layer maps each to a status.
const (
	CodeValidation          = "validation_failed"
	CodeNotFound            = "not_found"
	CodeMemberNotFound      = "member_not_found"
	CodeStoreNotFound       = "store_not_found"
	CodeMerchantNotFound    = "merchant_not_found"
	CodeTransactionNotFound = "transaction_not_found"
	CodeHoldNotFound        = "hold_not_found"
	CodeInsufficientPoints  = "insufficient_points"
	CodeReceiptEarned       = "receipt_already_earned"
	CodeIdempotencyReused   = "idempotency_key_reused"
	CodeIdempotencyInFlight = "idempotency_key_in_flight"
	CodeHoldNotActive       = "hold_not_active"
	CodeHoldExpired         = "hold_expired"
	CodeNotCancellable      = "not_cancellable"
	CodeCancelExceeds       = "cancel_exceeds_original"
	CodeMerchantSuspended   = "merchant_suspended"
	CodeMemberSuspended     = "member_suspended"
	CodeStoreSuspended      = "store_suspended"
	CodeMemberMerged        = "member_merged"
	CodeMergeRefused        = "merge_refused"
	CodeExplicitPoints      = "explicit_points_not_allowed"
	CodeForbidden           = "forbidden"
	CodeConflict            = "conflict"
	CodeOverloaded          = "overloaded"
	CodeUnavailable         = "unavailable"
	CodeInternal            = "internal"
)

// Error is a failure the caller can act on: a stable Code, a human Message and,
// for invalid input, the Field at fault.
type Error struct {
	Code    string
	Message string
	Field   string
	// RetryAfter, in seconds, tells an overloaded caller when to come back.
	RetryAfter int
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, e.Field)
	}
	return e.Code + ": " + e.Message
}

// Errorf returns an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid reports bad input in one field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeValidation, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, or CodeInternal when err carries none.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}
