package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pointd/pointd/internal/ledger"
)

var _ ledger.ErrorClassifier = (*DB)(nil)

// ClassifyError tells a database outage (ledger.DatabaseUnavailable) from
// every other error, which it returns as it is. The read paths call it where
// the error reaches the caller; Write classifies its own.
func (db *DB) ClassifyError(err error) error { return classify(err, false) }

// classify wraps an outage in ledger.DatabaseUnavailable. committing says err
// came from sending COMMIT: unless the driver knows nothing was sent, the
// commit may have happened, and the caller is told the outcome is unknown.
func classify(err error, committing bool) error {
	if err == nil || !unreachable(err) {
		return err
	}
	var e *ledger.Error
	if errors.As(err, &e) {
		return err // already classified (or the writer's own answer)
	}
	return ledger.DatabaseUnavailable(err, committing && !pgconn.SafeToRetry(err))
}

// unreachable reports an error that means the database could not be reached
// or did not answer in time, as opposed to one that it answered.
func unreachable(err error) bool {
	var e *ledger.Error
	if errors.As(err, &e) {
		return e.Code == ledger.CodeDatabaseUnavailable
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// The server answered, but only to say it cannot serve: a
		// connection exception (class 08), a shutdown or a restart (57P0x),
		// or no connection slot left.
		switch {
		case strings.HasPrefix(pgErr.Code, "08"),
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03",
			pgErr.Code == "53300":
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr), // refused, unreachable, the startup timed out
		pgconn.Timeout(err),                      // a deadline passed during a call
		errors.Is(err, context.DeadlineExceeded), // ... or while waiting for a connection
		errors.Is(err, pgconn.ErrConnClosed),     // the connection was closed under the call
		errors.As(err, &netErr),                  // reset, broken pipe
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	// What pgx reports without a type for a connection it lost.
	return strings.Contains(err.Error(), "conn closed")
}
