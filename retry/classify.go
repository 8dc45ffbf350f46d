package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Classify returns the [Class] of err: whether the work that failed with it
// may be run again, and what must be run again. It never blocks and is safe
// for concurrent use.
//
// Classify looks at what the error is, not at what it says: the SQLSTATE of
// a *pgconn.PgError (or of any error with a SQLState() string method, as
// lib/pq's and other drivers' errors have), pgconn.SafeToRetry, a
// *pgconn.ConnectError, io.ErrUnexpectedEOF, pgconn.ErrConnClosed,
// *net.OpError and system call errors, context errors, certificate errors.
// It follows wrapping by fmt.Errorf("%w"), by errors.Join and by any type
// with an Unwrap method. Message text decides only where no code exists: the
// libpq wordings that other drivers pass on as plain text, and the Neon
// proxy, which answers every one of its own failures with the generic
// SQLSTATE XX000 and tells them apart only by message.
//
// The rules, applied to the errors of a chain of wrapping from the outermost
// inwards; the first error a rule applies to decides:
//
//   - A *pgconn.ConnectError makes the failure a connection attempt's: the
//     statement was never sent, so the result is [NotSent], unless the cause
//     inside it would fail again the same way (wrong password, unknown
//     database, missing privilege, a certificate that does not verify, a
//     disabled endpoint), which is [Permanent]. A connect timeout is NotSent:
//     pgconn's connect_timeout bounds one attempt, and a cold Neon compute may
//     answer the next one.
//   - A SQLSTATE decides by the table in this file; provider messages that
//     come with the generic XX000 (Neon) are matched first.
//   - context.Canceled and context.DeadlineExceeded are [Permanent], even
//     inside an error for which pgconn.SafeToRetry is true: the caller has
//     given up, and retrying under a done context fails the same way at once.
//     So is a certificate that does not verify, which Go's TLS client
//     reports from the first write, wrapped in an error that is SafeToRetry.
//   - pgconn.SafeToRetry: the outermost error that has a SafeToRetry method
//     decides, as in pgconn. True means [NotSent]. False means the request
//     may have been written: the cause inside decides, but can no longer
//     make the error NotSent (such a cause counts as [ConnLost]).
//   - io.ErrUnexpectedEOF, io.EOF, pgconn.ErrConnClosed, and a reset, broken
//     pipe, abort or timeout on an open socket are [ConnLost]; a refused
//     connection, a failed dial and a failed DNS lookup are [NotSent].
//   - Otherwise the message text is matched against the table of libpq and
//     provider wordings; an error that matches nothing is [Permanent].
//
// For an errors.Join of several errors, each is classified on its own and
// the most cautious known result wins, in the order Permanent, ConnLost,
// Conflict, NotSent; parts that carry no recognisable signal are ignored
// unless nothing else is known.
//
// Classify(nil) is [Permanent]: there is nothing to retry.
//
// Classify cannot see the caller's context: an error raised because the
// caller's own context ended may come out [NotSent] (for example a
// *pgconn.ConnectError whose dial was cancelled). [Do] checks the context
// before every attempt, so such an error is never retried there; code that
// loops on Classify by hand must check its context too.
func Classify(err error) Class {
	if err == nil {
		return Permanent
	}
	return classify(err).class
}

// verdict is the result of classifying one error tree.
type verdict struct {
	class Class
	known bool // a signal decided the class; false: nothing was recognised
	ctx   bool // the class is Permanent because of a context error
}

var unknown = verdict{class: Permanent}

// strictness orders classes from the one that permits the most retries to
// the one that permits none, for combining the parts of a joined error.
var strictness = [numClasses]int{NotSent: 0, Conflict: 1, ConnLost: 2, Permanent: 3}

// classify walks one chain of wrapped errors from the outside in and returns
// at the first node that decides; see Classify for the precedence.
func classify(err error) verdict {
	sendMayHaveStarted := false // an outer SafeToRetry() said false
	for e := err; e != nil; e = errors.Unwrap(e) {
		if v, ok := classifyNode(e, &sendMayHaveStarted); ok {
			if sendMayHaveStarted && v.class == NotSent {
				// pgconn said the request may have been written; nothing
				// found further in may overrule that.
				v.class = ConnLost
			}
			return v
		}
	}
	if c, ok := classifyText(err.Error()); ok {
		if sendMayHaveStarted && c == NotSent {
			c = ConnLost
		}
		return verdict{class: c, known: true}
	}
	return unknown
}

// classifyNode looks at one error of a chain, without following its Unwrap
// method unless it is a join or a *pgconn.ConnectError, and reports whether
// it decides the class. It records in *sendMayHaveStarted that a
// SafeToRetry method answered false.
func classifyNode(e error, sendMayHaveStarted *bool) (verdict, bool) {
	switch x := e.(type) {
	case *pgconn.ConnectError:
		return connectVerdict(classify(x.Unwrap())), true
	case interface{ Unwrap() []error }:
		return joinVerdict(x.Unwrap()), true
	case *pgconn.PgError:
		return verdict{class: classifyCode(x.Code, x.Message), known: true}, true
	case interface{ SQLState() string }:
		// Other drivers' server errors, e.g. lib/pq's *pq.Error.
		return verdict{class: classifyCode(x.SQLState(), e.Error()), known: true}, true
	case *tls.CertificateVerificationError, x509.UnknownAuthorityError,
		x509.CertificateInvalidError, x509.HostnameError:
		// The server's certificate will not verify any better next time.
		return verdict{class: Permanent, known: true}, true
	case *net.DNSError:
		// Host names are resolved before anything is dialled.
		return verdict{class: NotSent, known: true}, true
	case *net.OpError:
		if x.Op == "dial" || errors.Is(x, syscall.ECONNREFUSED) {
			return verdict{class: NotSent, known: true}, true
		}
		// A read or write on an established connection failed. Had nothing
		// been written, pgconn would have said so with SafeToRetry on an
		// outer error, which has been looked at already.
		return verdict{class: ConnLost, known: true}, true
	case syscall.Errno:
		if c, ok := errnoClass(x); ok {
			return verdict{class: c, known: true}, true
		}
	}
	if isContextErr(e) {
		return verdict{class: Permanent, known: true, ctx: true}, true
	}
	if e == io.ErrUnexpectedEOF || e == io.EOF || e == pgconn.ErrConnClosed {
		// The server, or something on the way, closed the connection while
		// the request was being written or its answer read.
		return verdict{class: ConnLost, known: true}, true
	}
	if s, ok := e.(interface{ SafeToRetry() bool }); ok && !*sendMayHaveStarted {
		if !s.SafeToRetry() {
			*sendMayHaveStarted = true
			return verdict{}, false
		}
		// Nothing was written, but some causes fail the same way again.
		if errors.Is(e, context.Canceled) || errors.Is(e, context.DeadlineExceeded) {
			return verdict{class: Permanent, known: true, ctx: true}, true
		}
		if isCertificateErr(e) {
			return verdict{class: Permanent, known: true}, true
		}
		return verdict{class: NotSent, known: true}, true
	}
	return verdict{}, false
}

// isCertificateErr reports whether e wraps a failed verification of the
// server's certificate. Go's TLS client verifies during the handshake, which
// runs on the first write, so pgproto3 wraps the failure in a write error
// that says nothing was sent.
func isCertificateErr(e error) bool {
	var (
		verr *tls.CertificateVerificationError
		uerr x509.UnknownAuthorityError
		ierr x509.CertificateInvalidError
		herr x509.HostnameError
	)
	return errors.As(e, &verr) || errors.As(e, &uerr) || errors.As(e, &ierr) || errors.As(e, &herr)
}

// isContextErr reports whether e itself, not what it wraps, is
// context.Canceled or context.DeadlineExceeded, or says it is through an Is
// method (as the net package's cancellation error does).
func isContextErr(e error) bool {
	if e == context.Canceled || e == context.DeadlineExceeded {
		return true
	}
	if is, ok := e.(interface{ Is(error) bool }); ok {
		return is.Is(context.Canceled) || is.Is(context.DeadlineExceeded)
	}
	return false
}

// connectVerdict turns the verdict on the cause of a failed connection
// attempt into the verdict on the attempt: no statement had been sent, so
// anything but a cause that would fail the same way again is NotSent.
func connectVerdict(v verdict) verdict {
	if v.known && v.class == Permanent && !v.ctx {
		return v
	}
	return verdict{class: NotSent, known: true}
}

// joinVerdict combines the verdicts on the parts of a joined error: the most
// cautious known verdict wins; unknown parts count only if all are unknown.
func joinVerdict(errs []error) verdict {
	best := unknown
	for _, e := range errs {
		if e == nil {
			continue
		}
		v := classify(e)
		if !v.known {
			continue
		}
		switch {
		case !best.known,
			strictness[v.class] > strictness[best.class],
			v.class == best.class && best.ctx && !v.ctx:
			best = v
		}
	}
	return best
}

// classifyCode maps a SQLSTATE, and for the generic codes a provider uses
// the message, to a class. This is the one table of codes in the package.
func classifyCode(code, message string) Class {
	// Provider proxies send their own failures with SQLSTATE XX000 (Neon) or
	// a connection-exception code; only the message tells them apart, so the
	// message is checked first. Other codes are PostgreSQL's own, and a
	// message there may be anything, even user data (RAISE EXCEPTION).
	if code == "XX000" || code == "" || strings.HasPrefix(code, "08") {
		if c, ok := matchText(providerMessages, message); ok {
			return c
		}
	}
	switch code {
	case "57P03", // cannot_connect_now: starting up, shutting down, in recovery
		"53300": // too_many_connections: refused at startup
		return NotSent
	case "57P01", // admin_shutdown: pg_terminate_backend, fast shutdown, Neon suspend
		"57P02", // crash_shutdown: another backend crashed
		"57P05", // idle_session_timeout
		"25P03": // idle_in_transaction_session_timeout
		return ConnLost
	case "40001", // serialization_failure
		"40P01": // deadlock_detected
		return Conflict
	}
	if strings.HasPrefix(code, "08") { // connection_exception and its subclasses
		return ConnLost
	}
	return Permanent
}

// textRule maps a fragment of an error message, compared without regard to
// case, to a class.
type textRule struct {
	fragment string
	class    Class
}

// providerMessages are answers of provider proxies that carry no specific
// SQLSTATE. Permanent entries come first so that they win.
var providerMessages = []textRule{
	// Neon: the control plane refuses connections to a disabled endpoint
	// ("Control plane request failed: endpoint is disabled"); retrying only
	// hammers the control plane.
	{"endpoint is disabled", Permanent},
	{"endpoint has been disabled", Permanent},
	// Neon: the proxy could not reach the compute, typically while it wakes
	// from suspend; the statement never reached PostgreSQL.
	{"couldn't connect to compute node", NotSent},
	// Neon: the proxy is rate-limiting connection attempts for the endpoint.
	{"too many database connection attempts", NotSent},
}

// libpqMessages are the wordings of libpq (and so of psycopg, Ruby pg, PHP
// and others) for failures that Go drivers report with typed errors. They
// decide only for an error that carries nothing but text, for example one
// passed on from another process or language.
var libpqMessages = []textRule{
	{"server refused tls connection", Permanent}, // pgconn's own untyped error: sslmode needs TLS the server lacks
	{"ssl connection has been closed unexpectedly", ConnLost},
	{"server closed the connection unexpectedly", ConnLost},
	{"terminating connection due to administrator command", ConnLost},
	{"connection refused", NotSent},
	{"the database system is starting up", NotSent},
	{"the database system is shutting down", NotSent},
	{"sorry, too many clients already", NotSent},
}

func classifyText(msg string) (Class, bool) {
	if c, ok := matchText(providerMessages, msg); ok {
		return c, true
	}
	return matchText(libpqMessages, msg)
}

func matchText(rules []textRule, msg string) (Class, bool) {
	if msg == "" {
		return 0, false
	}
	lower := strings.ToLower(msg)
	for _, r := range rules {
		if strings.Contains(lower, r.fragment) {
			return r.class, true
		}
	}
	return 0, false
}

// errnoClass classifies a bare system call error.
func errnoClass(e syscall.Errno) (Class, bool) {
	switch e {
	case syscall.ECONNREFUSED:
		// Only a connection attempt can be refused: nothing was sent.
		return NotSent, true
	case syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED, syscall.ETIMEDOUT,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH:
		// Without a failed dial around it, this is an established connection
		// that broke: a request may have been sent.
		return ConnLost, true
	}
	return 0, false
}
