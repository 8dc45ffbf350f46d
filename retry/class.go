package retry

import (
	"strconv"
	"strings"
)

// Class says what may safely be run again after an error. [Classify] assigns
// one to every error; a [Policy] lists in [Policy.RetryOn] the classes a call
// may retry.
//
// In short: after a [NotSent] error nothing happened on the server; after a
// [Conflict] the server rolled the transaction back; after a [ConnLost]
// error nobody knows what happened; and a [Permanent] error would happen
// again (or is one this package does not recognise).
type Class int

const (
	// Permanent is an error that running the same work again would not fix,
	// or that must not be retried at all: a syntax error, a violated
	// constraint, a wrong password (28P01), an unknown database (3D000),
	// missing privileges, a certificate that does not verify, a disabled
	// Neon endpoint, a canceled or expired context, and every error this
	// package does not recognise. It is the zero value, and Classify(nil)
	// returns it: a nil error has nothing to retry.
	//
	// Retrying is never useful: the server answered, and it would answer the
	// same again. An unknown error is Permanent because retrying something
	// whose effect is unknown is the one mistake this package exists to
	// avoid.
	Permanent Class = iota

	// NotSent is an error raised before the statement reached the server:
	// pgconn.SafeToRetry reports true (nothing was written to the socket), a
	// connection could not be opened (*pgconn.ConnectError: dial, DNS or TLS
	// failures, a connect timeout), the server refused a new session because
	// it is starting or shutting down (57P03 cannot_connect_now) or full
	// (53300 too_many_connections), or a provider's proxy could not reach a
	// compute that is still waking up (Neon: "Couldn't connect to compute
	// node").
	//
	// Retrying is safe for any statement, reads and writes alike, because
	// the server never saw it. One caution: inside an explicit transaction
	// the failed connection took the transaction with it, so the statement
	// alone must not be replayed on another connection; retry the whole
	// transaction instead.
	NotSent

	// ConnLost is an error raised when the connection died while a statement
	// was, or may have been, in flight: io.ErrUnexpectedEOF, io.EOF,
	// pgconn.ErrConnClosed after the request was sent, a reset, broken pipe
	// or timeout on an established connection, a session killed by an
	// administrator or a crash (57P01, 57P02), any connection exception
	// (SQLSTATE class 08), the server's idle-session (57P05) and
	// idle-in-transaction (25P03) timeouts, and, for errors that carry only
	// text (libpq via other drivers), "SSL connection has been closed
	// unexpectedly" and "server closed the connection unexpectedly".
	//
	// The statement may have run, and even committed: the server can finish
	// a COMMIT and die before the answer reaches the client. Retrying is safe
	// only for work that gives the same result when it runs twice (a read, an
	// UPSERT to fixed values, a DELETE by key) or for a whole transaction
	// whose commit was not the statement in flight.
	//
	// Where the server provably aborted the statement, for example a FATAL
	// 57P01 delivered instead of a result, or 57P05 which the server only
	// raises while the session is idle, this package still says ConnLost:
	// a FATAL proves that the session ended, not that the last COMMIT did
	// not complete (a backend terminated right after committing answers with
	// the same FATAL), and the session state the statement relied on (SET,
	// temporary tables, prepared statements, an open transaction) is gone
	// either way. Pools catch most of these before use with a ping, so being
	// strict here costs little.
	ConnLost

	// Conflict is an error by which the server rolled back a transaction so
	// that a concurrent one could proceed: 40001 serialization_failure and
	// 40P01 deadlock_detected.
	//
	// Nothing of the transaction was committed, so running it again is safe
	// and is exactly what PostgreSQL asks for. It must be the whole
	// transaction, from BEGIN, because its earlier reads are what conflicted;
	// replaying only the failed statement is wrong.
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

// The sets a call usually wants in [Policy.RetryOn].
const (
	// Safe retries only errors raised before the statement reached the
	// server. Use it for any statement, including non-idempotent writes.
	// It is what a zero [Policy.RetryOn] means.
	Safe = Classes(1 << NotSent)

	// Idempotent also retries after an ambiguous connection loss. Use it for
	// reads and for writes that give the same result when they run twice.
	Idempotent = Classes(1<<NotSent | 1<<ConnLost)

	// Transaction also retries serialization failures and deadlocks. Use it
	// only for a function that runs a whole transaction, from BEGIN to
	// COMMIT, and that is itself safe to run again.
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
