package retry

import (
	"strconv"
	"strings"
)

// Class says what the server provably did with the work that failed, and so
// what may safely be run again. [Classify] assigns one to every error; a
// [Policy] lists in [Policy.RetryOn] the classes a call may retry.
//
// In short: after a [NotSent] error the server did not run the statement;
// after a [Conflict] it rolled back the transaction the statement ran in; after
// a [ConnLost] error nobody knows what happened; and a [Permanent] error would
// happen again (or is one this package does not recognise).
//
// "The transaction" is the one the statement ran in: an explicit one (BEGIN
// ... COMMIT), whose earlier statements are lost with it, or, for a statement
// sent on its own (autocommit), the implicit transaction of that statement
// alone. After NotSent and Conflict nothing of it was committed, so running
// it again from its start is safe for any work; that is the statement itself
// in autocommit, and the whole transaction otherwise. A class cannot tell
// the two cases apart; the caller can, and says so by the set it retries
// ([Safe] for one statement, [Transaction] for a function that runs a whole
// transaction).
type Class int

const (
	// Permanent is an error that running the same work again would not fix,
	// or that must not be retried at all: a syntax error, a violated
	// constraint, a wrong password (28P01), an unknown database (3D000), a
	// host name that does not exist (NXDOMAIN), missing privileges, a
	// certificate that does not verify, a disabled Neon endpoint, a canceled
	// or expired context, an error that does not
	// come from the database connection (see [Classify]), and every error
	// this package does not recognise. It is the zero value, and
	// Classify(nil) returns it: a nil error has nothing to retry.
	//
	// Retrying is never useful: the server answered, and it would answer the
	// same again. An unknown error is Permanent because retrying something
	// whose effect is unknown is the one mistake this package exists to
	// avoid.
	Permanent Class = iota

	// NotSent is an error after which the server provably did not run the
	// statement. Either it never reached the server: pgconn.SafeToRetry
	// reports true (nothing was written to the socket), a connection could
	// not be opened (*pgconn.ConnectError: dial, DNS or TLS failures, a
	// connect timeout), driver.ErrBadConn, the server refused a new session
	// because it is starting or shutting down (57P03 cannot_connect_now) or
	// full (53300 too_many_connections), a provider's proxy could not reach a
	// compute that is still waking up (Neon: "Couldn't connect to compute
	// node"), or PgBouncer never forwarded it (query_wait_timeout, a full
	// pooler). Or the server ended the idle session before running it: the
	// idle-session (57P05) and idle-in-transaction (25P03) timeouts, which
	// PostgreSQL raises only between statements.
	//
	// Retrying is safe for any statement, reads and writes alike, because
	// the server never ran it. One caution: inside an explicit transaction
	// the failed connection took the transaction with it, so the statement
	// alone must not be replayed on another connection; retry the whole
	// transaction instead.
	NotSent

	// ConnLost is an error raised when the connection died while a statement
	// was, or may have been, in flight: io.ErrUnexpectedEOF, io.EOF,
	// pgconn.ErrConnClosed after the request was sent, a reset, broken pipe
	// or timeout on an established connection, a session killed by an
	// administrator or a crash (57P01, 57P02), any other connection
	// exception (SQLSTATE class 08), PgBouncer's "server conn crashed?", and,
	// for errors that carry only text (libpq via other drivers), "SSL
	// connection has been closed unexpectedly", "server closed the
	// connection unexpectedly", "could not receive data from server" and
	// the like.
	//
	// The statement may have run, and even committed: the server can finish
	// a COMMIT and die before the answer reaches the client. Retrying is safe
	// only for work that gives the same result when it runs twice (a read, an
	// UPSERT to fixed values, a DELETE by key) or for a whole transaction
	// whose commit was not the statement in flight.
	//
	// A FATAL 57P01 delivered instead of a result is ConnLost too: it proves
	// that the session ended, not that the last COMMIT did not complete (a
	// backend terminated right after committing answers with the same
	// FATAL). Pools catch most of these before use with a ping, so being
	// strict here costs little.
	ConnLost

	// Conflict is an error by which the server rolled back the transaction
	// the statement ran in, so that nothing of it was committed:
	//
	//   - 40001 serialization_failure and 40P01 deadlock_detected, so that a
	//     concurrent transaction could proceed;
	//   - 0A000 "cached plan must not change result type": a prepared
	//     statement whose result columns changed (ALTER TABLE) was refused
	//     before it ran; pgx drops it from its cache, and the next attempt
	//     prepares it afresh.
	//
	// Running the transaction again is safe and is what PostgreSQL asks for.
	// It must be the whole transaction, from BEGIN, because its earlier
	// statements were rolled back too (and its reads are what conflicted);
	// for a statement sent on its own, that transaction is the statement, so
	// retrying the statement is safe whatever it does.
	Conflict

	numClasses // number of classes; not a class
)

// String returns "permanent", "not-sent", "conn-lost" or "conflict", or
// "retry.Class(N)" for a value that is none of these.
func (c Class) String() string {
	switch c {
	case Permanent:
		return "permanent"
	case NotSent:
		return "not-sent"
	case ConnLost:
		return "conn-lost"
	case Conflict:
		return "conflict"
	default:
		return "retry.Class(" + strconv.Itoa(int(c)) + ")"
	}
}

// Classes is a set of [Class] values, built with [Set]. The zero value is the
// empty set. A Classes is a small value: copy it freely.
type Classes uint8

// The sets a call usually wants in [Policy.RetryOn]. Each says what the
// retried work is; together with the class of an error, that decides whether
// running it again can make anything happen twice.
const (
	// Safe retries errors after which the work provably did not take effect:
	// [NotSent] and [Conflict]. Use it for one statement sent on its own,
	// including non-idempotent writes, or for a function that runs a whole
	// transaction. It is what a zero [Policy.RetryOn] means.
	//
	// It is not safe for a function that runs several statements outside a
	// transaction, whose earlier statements committed on their own, nor for a
	// statement inside a transaction begun outside the function.
	Safe = Classes(1<<NotSent | 1<<Conflict)

	// Idempotent also retries after an ambiguous connection loss
	// ([ConnLost]). Use it for reads and for writes that give the same result
	// when they run twice.
	Idempotent = Classes(1<<NotSent | 1<<ConnLost | 1<<Conflict)

	// Transaction is for a function that runs a whole transaction, from
	// BEGIN to COMMIT, and that is itself safe to run again: it retries
	// every class but [Permanent], like [Idempotent], because a transaction
	// whose COMMIT was not in flight when the connection was lost did not
	// commit. (A COMMIT whose outcome is unknown is the caller's to resolve
	// before retrying; pgsteady's pool does.) It is the same set as
	// [Idempotent] for a different reason, and named apart so that a call
	// site says which reason it relies on: were either rule to change (a
	// class that is safe for one and not the other), the call sites would
	// not need reading again.
	Transaction = Classes(1<<NotSent | 1<<ConnLost | 1<<Conflict)
)

// Set returns the set of the given classes. Values that are not a defined
// [Class] are ignored.
func Set(cs ...Class) Classes {
	var s Classes
	for _, c := range cs {
		if c >= 0 && c < numClasses {
			s |= 1 << c
		}
	}
	return s
}

// Has reports whether c is in s.
func (s Classes) Has(c Class) bool {
	return c >= 0 && c < numClasses && s&(1<<c) != 0
}

// String lists the classes in s separated by "|", in the order of the Class
// constants, for example "not-sent|conn-lost"; it returns "none" for the
// empty set. Bits that name no class are shown in hexadecimal, as "0x30".
func (s Classes) String() string {
	if s == 0 {
		return "none"
	}
	var parts []string
	for c := Class(0); c < numClasses; c++ {
		if s.Has(c) {
			parts = append(parts, c.String())
		}
	}
	if rest := s &^ (1<<numClasses - 1); rest != 0 {
		parts = append(parts, "0x"+strconv.FormatUint(uint64(rest), 16))
	}
	return strings.Join(parts, "|")
}

// valid reports whether s holds only defined classes.
func (s Classes) valid() bool {
	return s&^(1<<numClasses-1) == 0
}
