package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/pointd/pointd/internal/ledger"
)

// Codes of the HTTP layer itself, beside the ledger's.
const (
	codeUnauthorized      = "unauthorized"
	codeKeyModeMismatch   = "key_mode_mismatch"
	codeIdemKeyMissing    = "idempotency_key_missing"
	codeRouteNotFound     = "route_not_found"
	codeMethodNotAllowed  = "method_not_allowed"
	codeBodyTooLarge      = "body_too_large"
	codeUnsupportedMedia  = "unsupported_media_type"
	codeMalformedJSON     = "malformed_json"
	problemContentType    = "application/problem+json"
	problemTypeBase       = "https://pointd.dev/problems/"
	headerIdempotencyKey  = "Idempotency-Key"
	headerReplayed        = "Idempotent-Replayed"
	headerRequestID       = "X-Request-Id"
	defaultRetryAfterSecs = 1
)

// statusOf is the one table from error code to HTTP status.
var statusOf = map[string]int{
	ledger.CodeValidation:          http.StatusBadRequest,
	codeMalformedJSON:              http.StatusBadRequest,
	codeIdemKeyMissing:             http.StatusBadRequest,
	codeUnauthorized:               http.StatusUnauthorized,
	codeKeyModeMismatch:            http.StatusUnauthorized,
	ledger.CodeForbidden:           http.StatusForbidden,
	ledger.CodeNotFound:            http.StatusNotFound,
	codeRouteNotFound:              http.StatusNotFound,
	ledger.CodeMemberNotFound:      http.StatusNotFound,
	ledger.CodeStoreNotFound:       http.StatusNotFound,
	ledger.CodeMerchantNotFound:    http.StatusNotFound,
	ledger.CodeTransactionNotFound: http.StatusNotFound,
	ledger.CodeHoldNotFound:        http.StatusNotFound,
	codeMethodNotAllowed:           http.StatusMethodNotAllowed,
	ledger.CodeConflict:            http.StatusConflict,
	ledger.CodeReceiptEarned:       http.StatusConflict,
	ledger.CodeIdempotencyInFlight: http.StatusConflict,
	ledger.CodeHoldNotActive:       http.StatusConflict,
	ledger.CodeHoldExpired:         http.StatusConflict,
	ledger.CodeNotCancellable:      http.StatusConflict,
	codeBodyTooLarge:               http.StatusRequestEntityTooLarge,
	codeUnsupportedMedia:           http.StatusUnsupportedMediaType,
	ledger.CodeIdempotencyReused:   http.StatusUnprocessableEntity,
	ledger.CodeInsufficientPoints:  http.StatusUnprocessableEntity,
	ledger.CodeCancelExceeds:       http.StatusUnprocessableEntity,
	ledger.CodeMerchantSuspended:   http.StatusUnprocessableEntity,
	ledger.CodeMemberSuspended:     http.StatusUnprocessableEntity,
	ledger.CodeStoreSuspended:      http.StatusUnprocessableEntity,
	ledger.CodeMemberMerged:        http.StatusUnprocessableEntity,
	ledger.CodeMergeRefused:        http.StatusUnprocessableEntity,
	codeRateLimited:                http.StatusTooManyRequests,
	ledger.CodeInternal:            http.StatusInternalServerError,
	ledger.CodeOverloaded:          http.StatusServiceUnavailable,
	ledger.CodeUnavailable:         http.StatusServiceUnavailable,
	ledger.CodeDatabaseUnavailable: http.StatusServiceUnavailable,
}

// Problem is an RFC 9457 problem document with pointd's extensions: a stable
// code, the field at fault and the request id to quote to support.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// writeError answers err as a problem. A database outage is answered 503
// database_unavailable (classifyError); other errors without a code are
// internal: logged in full, answered without detail.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	err = classifyError(r, err)
	var e *ledger.Error
	if !errors.As(err, &e) {
		logger(r).Error("internal error", "err", err)
		e = &ledger.Error{Code: ledger.CodeInternal, Message: "an internal error occurred; it has been logged"}
	}
	writeProblem(w, r, e)
}

// classifyError turns a store error that means the database is out of reach
// into ledger.DatabaseUnavailable, with the store's classifier; a deadline
// that passed while the request waited for a load (a cache's, say) is one
// too: the request's deadline only runs out waiting for the database.
func classifyError(r *http.Request, err error) error {
	var e *ledger.Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	info, _ := r.Context().Value(keyReqInfo).(reqInfo)
	if info.classify != nil {
		if c := info.classify(err); ledger.IsDatabaseUnavailable(c) {
			logger(r).Warn("database unavailable", "err", err)
			return c
		}
	}
	if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() != nil {
		logger(r).Warn("database unavailable", "err", err)
		return ledger.DatabaseUnavailable(err, false)
	}
	return err
}

func writeProblem(w http.ResponseWriter, r *http.Request, e *ledger.Error) {
	status, ok := statusOf[e.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	// Every problem passes here: tell the request's metrics (withBasics)
	// which code it answered, so that refusals are counted by reason.
	if sw, ok := w.(*statusWriter); ok {
		sw.code = e.Code
	}
	if status == http.StatusServiceUnavailable || e.RetryAfter > 0 {
		ra := e.RetryAfter
		if ra <= 0 {
			ra = defaultRetryAfterSecs
		}
		w.Header().Set("Retry-After", strconv.Itoa(ra))
	}
	p := Problem{Type: problemTypeBase + e.Code, Title: http.StatusText(status), Status: status,
		Detail: e.Message, Code: e.Code, Field: e.Field, RequestID: requestID(r)}
	if status >= 500 && status != http.StatusServiceUnavailable {
		logger(r).Warn("request failed", "code", e.Code, "status", status)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pointd"`)
	}
	w.Header().Set("Content-Type", problemContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		slog.Error("encode response", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	_, _ = w.Write([]byte("\n"))
}
