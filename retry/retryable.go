package retry

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// MayRetryLater reports whether the work that failed with err may succeed if
// it is tried again later: the failure came from the database being
// unreachable, restarting, overloaded, failing over or in conflict, not from
// the request itself. It answers the question a server asks when it picks a
// status for a failed request (503 and Retry-After, or 500), and it is safe
// for concurrent use.
//
// It says nothing about whether trying again is safe: a write whose
// connection was lost ([ConnLost]) may succeed later, and may also have been
// done already. [Classify] tells that.
//
// The rules, first match wins:
//
//   - nil: false.
//   - An error on the chain of wrapping (outermost first) with a method
//     MayRetryLater() bool decides with its answer. pgsteady's pool uses it
//     for its own errors: an exhausted pool, a commit whose outcome is
//     unknown.
//   - context.DeadlineExceeded (including the pool's timeout waiting for a
//     connection, and pgconn's timeouts): true, time ran out, and a later
//     attempt gets a new budget. context.Canceled: false, the caller
//     stopped the work, and whether to start it again is the caller's
//     decision.
//   - Otherwise, true when Classify(err) is not [Permanent]. A [*Error]
//     whose last attempt failed with an error that is Permanent (a
//     constraint violated on the second attempt) is therefore false, and one
//     that gave up on retryable failures is true. A business error joined
//     with a database error is Permanent, and so false.
func MayRetryLater(err error) bool {
	if err == nil {
		return false
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if m, ok := e.(interface{ MayRetryLater() bool }); ok {
			return m.MayRetryLater()
		}
		if _, ok := e.(interface{ Unwrap() []error }); ok {
			break // a join: Classify weighs its parts
		}
		if isContextErr(e) {
			return errors.Is(e, context.DeadlineExceeded)
		}
	}
	return Classify(err) != Permanent
}

// Discard reports whether the connection on which err happened must not be
// used again, even if it still looks open. It is for code that keeps
// connections itself (a database/sql driver's pool, a pool of one's own): call
// it on the error of the last statement run on a connection before taking the
// connection back, and close the connection when it returns true. It is safe
// for concurrent use.
//
//	| err                                               | Discard | why                                                       |
//	|---------------------------------------------------|---------|-----------------------------------------------------------|
//	| a FATAL or PANIC *pgconn.PgError                  | true    | the server ended the session                               |
//	| a [ConnLost] error                                | true    | the connection broke mid-statement; its state is unknown   |
//	| anything else, nil                                | false   | the connection is as good as before                        |
//
// pgsteady's pool does not call it: pgconn closes the connection itself on a
// FATAL answer and on a read or write that fails, and the pool hands a closed
// connection to pgxpool, which destroys it. A 25006 (read-only transaction) is not among them: it condemns the
// connection only when its server is a demoted or fenced primary, which the
// error alone cannot tell from an application's read-only transaction, role
// or replica (package pool asks the server).
func Discard(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		sev := pgErr.SeverityUnlocalized // not translated; empty before PostgreSQL 9.6
		if sev == "" {
			sev = pgErr.Severity
		}
		if sev == "FATAL" || sev == "PANIC" {
			return true
		}
	}
	return Classify(err) == ConnLost
}
