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
	CodeForbidden           = "forbidden"
	CodeConflict            = "conflict"
	CodeOverloaded          = "overloaded"
	CodeUnavailable         = "unavailable"
	// CodeDatabaseUnavailable: the database could not be reached, did not
	// answer within the request's deadline, or lost the connection while a
	// commit's outcome was unknown. Nothing about the request was wrong: the
	// same request, with the same Idempotency-Key, is retried after
	// Retry-After and learns the outcome.
	CodeDatabaseUnavailable = "database_unavailable"
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
	// Err is the cause, for logs and errors.Is; never shown to the caller.
	Err error
}

func (e *Error) Error() string {
	s := e.Code + ": " + e.Message
	if e.Field != "" {
		s = fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, e.Field)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// DatabaseRetryAfter is the Retry-After, in seconds, of a database outage:
// long enough that a till's retries do not hammer a database coming back,
// short enough that a failover or restart is barely noticed.
const DatabaseRetryAfter = 2

// DatabaseUnavailable is the answer to a request the database could not
// serve because it was out of reach or did not answer in time. A store
// makes it from cause (ErrorClassifier); unknownOutcome says a commit was
// sent and its answer lost, so the write may or may not have happened.
func DatabaseUnavailable(cause error, unknownOutcome bool) *Error {
	msg := "the database cannot be reached or did not answer in time; retry after Retry-After with the same Idempotency-Key"
	if unknownOutcome {
		msg = "the connection to the database was lost while committing, so the outcome is not known; retry after Retry-After with the same Idempotency-Key to learn it (it is applied at most once)"
	}
	return &Error{Code: CodeDatabaseUnavailable, Message: msg, RetryAfter: DatabaseRetryAfter, Err: cause}
}

// IsDatabaseUnavailable reports whether err is, or wraps, a database outage.
func IsDatabaseUnavailable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == CodeDatabaseUnavailable
}

// ErrorClassifier is implemented by a store that can tell, among the errors
// of its driver, those that mean the database is out of reach or did not
// answer in time (connection refused or lost, a deadline passed during a
// call, a commit whose answer was lost) from those that mean the request or
// the data was wrong.
type ErrorClassifier interface {
	// ClassifyError returns err as a DatabaseUnavailable *Error when it is
	// an outage, and err itself otherwise (nil stays nil).
	ClassifyError(err error) error
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
