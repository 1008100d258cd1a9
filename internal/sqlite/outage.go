package sqlite

import (
	"context"
	"errors"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/pointd/pointd/internal/ledger"
)

var _ ledger.ErrorClassifier = (*DB)(nil)

// ClassifyError tells an outage of the database file (ledger.DatabaseUnavailable)
// from every other error, which it returns as it is: another process held
// the lock past the busy timeout, the disk failed or is full, the file
// cannot be opened, or a deadline passed during the call. The read paths
// call it where the error reaches the caller; Write classifies its own.
func (db *DB) ClassifyError(err error) error { return classify(err, false) }

// classify wraps an outage in ledger.DatabaseUnavailable; committing says err
// came from COMMIT, where an I/O error leaves the outcome unknown until the
// journal is recovered.
func classify(err error, committing bool) error {
	if err == nil {
		return nil
	}
	var e *ledger.Error
	if errors.As(err, &e) {
		return err // already has its code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ledger.DatabaseUnavailable(err, false)
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff { // the primary code of an extended one
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return ledger.DatabaseUnavailable(err, false)
	case sqlite3.SQLITE_IOERR:
		return ledger.DatabaseUnavailable(err, committing)
	case sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL:
		return ledger.DatabaseUnavailable(err, false)
	}
	return err
}
