package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
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
// with an Unwrap method. Message text decides only where no code exists, and
// only inside an error of the database connection: PgBouncer's and the Neon
// proxy's own answers, which come with a generic SQLSTATE (08P01, XX000) and
// differ only by message, and libpq's wordings passed on by drivers that
// have no code for them.
//
// # Only errors of the database connection are retried
//
// A function run by [Do] may do more than talk to PostgreSQL: call an HTTP
// service, read a file, check a business rule. Those errors say nothing about
// the database, and retrying them is not this package's call, so they are
// [Permanent] even when they look like a connection failure ("connection
// refused" from an HTTP call). The transport rules (io.EOF,
// io.ErrUnexpectedEOF, *net.OpError, *net.DNSError, system call errors) and
// the text rules apply only to an error that comes from the database
// connection, which Classify recognises this way:
//
//   - The error is, or is wrapped in, an error made by pgx: a type declared in
//     a package of module github.com/jackc/pgx/v5 (*pgconn.PgError,
//     *pgconn.ConnectError, *pgconn.PrepareError, pgx.ErrPreprocessingBatch,
//     and pgconn's and pgproto3's unexported wrappers, such as the ones that
//     carry pgconn.SafeToRetry and pgconn.Timeout), or any error with a
//     SafeToRetry() bool or SQLState() string method (the conventions of
//     pgconn and of other drivers). Everything inside such an error is the
//     connection's.
//   - Or the error reaches the top through nothing but fmt.Errorf("%w"),
//     errors.Join, [*Error] and [Stop]'s mark. (pgsteady's pool wraps in
//     types that state their class themselves, with RetryClass or
//     SafeToRetry, which decides first.) pgconn returns a
//     read that failed on a broken connection as it came from the socket (a
//     bare io.ErrUnexpectedEOF or *net.OpError), so such a bare transport
//     error is taken to be the connection's. Code that does other network I/O
//     inside a retried function and returns its errors bare, not wrapped in a
//     type of their own (net/http wraps them in *url.Error, which is enough),
//     makes Classify mistake them for the database's.
//   - pgconn.ErrConnClosed and database/sql/driver.ErrBadConn are the
//     connection's wherever they appear.
//
// Anything else that wraps a transport error, for example *url.Error or
// *os.PathError or a type of the caller's own, hides it: the error is
// Permanent unless a database error is found inside it. An error of the
// caller's own type that wraps a pgx error keeps the pgx error's class.
//
// # The rules
//
// The rules, applied to the errors of a chain of wrapping from the outermost
// inwards; the first error a rule applies to decides:
//
//   - An error with a method RetryClass() Class decides with its answer. It
//     lets a wrapper that knows better overrule what it wraps (pgsteady's
//     pool says Permanent for a commit whose outcome is unknown, so that no
//     loop retries it blindly).
//   - A *pgconn.ConnectError makes the failure a connection attempt's: the
//     statement was never sent, so the result is [NotSent], unless the cause
//     inside it would fail again the same way (wrong password, unknown
//     database, missing privilege, a certificate that does not verify, a
//     disabled endpoint), which is [Permanent]. A connect timeout is NotSent:
//     pgconn's connect_timeout bounds one attempt, and a cold Neon compute may
//     answer the next one.
//   - A SQLSTATE decides by the table in this file; the answers of PgBouncer
//     and of provider proxies that come with a generic code are told apart by
//     message first.
//   - context.Canceled and context.DeadlineExceeded are [Permanent], even
//     inside an error for which pgconn.SafeToRetry is true: the caller has
//     given up, and retrying under a done context fails the same way at once.
//     So is a certificate that does not verify, which Go's TLS client
//     reports from the first write, wrapped in an error that is SafeToRetry.
//   - driver.ErrBadConn is [NotSent]: database/sql's contract for it is that
//     the driver did not send the statement.
//   - pgconn.SafeToRetry: the outermost error that has a SafeToRetry method
//     decides, as in pgconn. True means [NotSent]. False means the request
//     may have been written: the cause inside decides, but can no longer
//     make the error NotSent (such a cause counts as [ConnLost]).
//   - io.ErrUnexpectedEOF, io.EOF, pgconn.ErrConnClosed, and a reset, broken
//     pipe, abort or timeout on an open socket are [ConnLost]; a refused
//     connection, a failed dial and a failed DNS lookup are [NotSent], except
//     a name that does not exist (NXDOMAIN, *net.DNSError.IsNotFound), which
//     is [Permanent] (transport errors count only as described above).
//   - Otherwise, inside an error of the database connection, the message is
//     matched against the table of libpq and provider wordings; an error
//     that matches nothing is [Permanent].
//
// For an errors.Join of several errors (or fmt.Errorf with several %w), each
// is classified on its own and the most cautious result wins, in the order
// Permanent, ConnLost, Conflict, NotSent. A part that carries no recognisable
// signal, such as a business error joined to a database error, makes the
// whole [Permanent]: nobody knows what retrying would do to it.
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
	return classify(err, plain).class
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

// origin says where the errors met so far on a chain of wrapping come from.
type origin uint8

const (
	// plain: nothing but transparent wrapping so far (fmt.Errorf("%w"),
	// *Error, Stop's mark). A bare transport error here is taken to
	// be the connection's, because pgconn returns failed reads unwrapped.
	plain origin = iota
	// fromDB: inside an error made by pgx or by a database driver.
	fromDB
	// foreign: inside a wrapper of unknown origin, such as net/http's
	// *url.Error; transport errors and text here are not the database's.
	foreign
)

// classify walks one chain of wrapped errors from the outside in and returns
// at the first node that decides; see Classify for the precedence. o is the
// origin of what wraps err.
func classify(err error, o origin) verdict {
	sendMayHaveStarted := false // an outer SafeToRetry() said false
	var dbErr error             // the outermost error of the connection, for the text rules
	if o == fromDB {
		dbErr = err
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if v, ok := classifyNode(e, o, &sendMayHaveStarted); ok {
			if sendMayHaveStarted && v.class == NotSent {
				// pgconn said the request may have been written; nothing
				// found further in may overrule that.
				v.class = ConnLost
			}
			return v
		}
		switch {
		case o != fromDB && fromConnection(e):
			o, dbErr = fromDB, e
		case o == plain && !transparent(e):
			o = foreign
		}
	}
	if dbErr == nil {
		return unknown
	}
	if c, ok := classifyText(dbErr.Error()); ok {
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
func classifyNode(e error, o origin, sendMayHaveStarted *bool) (verdict, bool) {
	if v, ok := typedVerdict(e, o); ok {
		return v, true
	}
	if v, ok := sentinelVerdict(e); ok {
		return v, true
	}
	if s, ok := e.(interface{ SafeToRetry() bool }); ok && !*sendMayHaveStarted {
		if !s.SafeToRetry() {
			*sendMayHaveStarted = true
			return verdict{}, false
		}
		return safeToRetryVerdict(e), true
	}
	if o == foreign {
		return verdict{}, false
	}
	if c, ok := transportClass(e); ok {
		return verdict{class: c, known: true}, true
	}
	return verdict{}, false
}

// typedVerdict decides by the node's type: a class the error states itself, a connect error,
// a join, a server error (pgconn's or another driver's), a certificate that does not verify.
func typedVerdict(e error, o origin) (verdict, bool) {
	switch x := e.(type) {
	case interface{ RetryClass() Class }:
		c := x.RetryClass()
		if c < 0 || c >= numClasses {
			c = Permanent
		}
		return verdict{class: c, known: true}, true
	case *pgconn.ConnectError:
		return connectVerdict(classify(x.Unwrap(), fromDB)), true
	case interface{ Unwrap() []error }:
		return joinVerdict(x.Unwrap(), o), true
	case *pgconn.PgError:
		return verdict{class: classifyCode(x.Code, x.Message, x.Routine), known: true}, true
	case interface{ SQLState() string }:
		// Other drivers' server errors, e.g. lib/pq's *pq.Error.
		return verdict{class: classifyCode(x.SQLState(), e.Error(), ""), known: true}, true
	case *tls.CertificateVerificationError, x509.UnknownAuthorityError,
		x509.CertificateInvalidError, x509.HostnameError:
		// The server's certificate will not verify any better next time.
		return verdict{class: Permanent, known: true}, true
	}
	return verdict{}, false
}

// sentinelVerdict decides for the context's errors and the sentinels of pgconn and
// database/sql.
func sentinelVerdict(e error) (verdict, bool) {
	switch {
	case isContextErr(e):
		return verdict{class: Permanent, known: true, ctx: true}, true
	case e == pgconn.ErrConnClosed:
		// pgconn closed the connection while the request was, or may have
		// been, in flight. (Before anything was sent it says so with
		// SafeToRetry, which an outer error carries.)
		return verdict{class: ConnLost, known: true}, true
	case e == driver.ErrBadConn:
		// database/sql's contract: a driver returns ErrBadConn only when the
		// server cannot have performed the operation.
		return verdict{class: NotSent, known: true}, true
	}
	return verdict{}, false
}

// safeToRetryVerdict classes an error whose SafeToRetry method says nothing was written:
// NotSent, unless its cause would fail the same way again.
func safeToRetryVerdict(e error) verdict {
	if errors.Is(e, context.Canceled) || errors.Is(e, context.DeadlineExceeded) {
		return verdict{class: Permanent, known: true, ctx: true}
	}
	if isCertificateErr(e) {
		return verdict{class: Permanent, known: true}
	}
	return verdict{class: NotSent, known: true}
}

// transportClass classifies the errors of the socket under the connection.
// It is only asked about errors that come from the database connection.
func transportClass(e error) (Class, bool) {
	switch x := e.(type) {
	case *net.DNSError:
		// Host names are resolved before anything is dialled, so nothing was sent. A name
		// that does not exist (NXDOMAIN: a mistyped host) will not exist a moment later:
		// waiting out the retry budget on it only delays the error.
		if x.IsNotFound {
			return Permanent, true
		}
		return NotSent, true
	case *net.OpError:
		if x.Op == "dial" || errors.Is(x, syscall.ECONNREFUSED) {
			return NotSent, true
		}
		// A read or write on an established connection failed. Had nothing
		// been written, pgconn would have said so with SafeToRetry on an
		// outer error, which has been looked at already.
		return ConnLost, true
	case syscall.Errno:
		return errnoClass(x)
	}
	if e == io.ErrUnexpectedEOF || e == io.EOF {
		// The server, or something on the way, closed the connection while
		// the request was being written or its answer read.
		return ConnLost, true
	}
	return 0, false
}

// pgxModule is the import path of pgx's module; every package of it
// (pgx, pgconn, pgproto3, pgxpool, pgtype) declares types under it.
const pgxModule = "github.com/jackc/pgx/v5"

// fromConnection reports whether e itself (not what it wraps) was made by
// the database connection: by pgx, or by a driver that follows pgconn's or
// database/sql's conventions.
func fromConnection(e error) bool {
	switch e.(type) {
	case interface{ SafeToRetry() bool }, interface{ SQLState() string }:
		return true
	}
	p := pkgPath(e)
	return p == pgxModule || strings.HasPrefix(p, pgxModule+"/")
}

// wrapErrorType is the type of fmt.Errorf("...%w...") with one %w.
var wrapErrorType = reflect.TypeOf(fmt.Errorf("%w", io.EOF))

// transparent reports whether e is a wrapper that says nothing about where
// what it wraps came from: fmt.Errorf's, this package's *Error and Stop's
// mark. It is decided by type, not by the package that declares it: a type
// of pgsteady's own that wraps states its class itself (RetryClass or
// SafeToRetry), and one of an application's hides what it wraps like any
// other. (Joins are handled by classifyNode.)
func transparent(e error) bool {
	switch e.(type) {
	case *Error, *stopError:
		return true
	}
	if reflect.TypeOf(e) == wrapErrorType {
		return true
	}
	_, wraps := e.(interface{ Unwrap() error })
	return !wraps // a leaf wraps nothing
}

// pkgPath returns the import path of the package that declares e's type (or
// the type it points to), or "" for an unnamed type.
func pkgPath(e error) string {
	t := reflect.TypeOf(e)
	if t.Kind() == reflect.Pointer && t.Name() == "" {
		t = t.Elem()
	}
	return t.PkgPath()
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
// cautious verdict wins, and a part that nothing was recognised in makes the
// whole unknown (Permanent), unless a part is Permanent for a known reason.
func joinVerdict(errs []error, o origin) verdict {
	best := unknown
	sawUnknown := false
	for _, e := range errs {
		if e == nil {
			continue
		}
		v := classify(e, o)
		if !v.known {
			sawUnknown = true
			continue
		}
		switch {
		case !best.known,
			strictness[v.class] > strictness[best.class],
			v.class == best.class && best.ctx && !v.ctx:
			best = v
		}
	}
	if sawUnknown && !(best.known && best.class == Permanent) {
		return unknown
	}
	return best
}

// classifyCode maps a SQLSTATE, and for the generic codes a pooler or
// provider uses the message, to a class. routine is the server's function
// that raised the error (PgError.Routine), which unlike the message is never
// translated. This is the one table of codes in the package.
func classifyCode(code, message, routine string) Class {
	// PgBouncer and provider proxies send their own failures with SQLSTATE
	// 08P01 (PgBouncer), XX000 (Neon) or none (libpq's own errors, passed on
	// by other drivers); only the message tells them apart, so it is checked
	// first. Other codes are PostgreSQL's own, and a message there may be
	// anything, even user data (RAISE EXCEPTION).
	if code == "XX000" || code == "" || strings.HasPrefix(code, "08") {
		if c, ok := classifyText(message); ok {
			return c
		}
	}
	switch code {
	case "57P03", // cannot_connect_now: starting up, shutting down, in recovery
		"53300": // too_many_connections: refused at startup
		return NotSent
	case "57P05", // idle_session_timeout
		"25P03": // idle_in_transaction_session_timeout
		// The server raises these only while it waits for the client's next
		// message, and checks for them once more after reading a message and
		// before running it (postgres.c, PostgresMain: the idle timeouts are
		// disabled "before step (5) so that any last-moment timeout is certain
		// to be detected in step (5)", which is before the command runs). So
		// the statement the client had just sent was never run. The session
		// is gone, and with 25P03 its open transaction was rolled back: the
		// statement alone must not be replayed, the transaction must (as for
		// any NotSent error inside a transaction).
		return NotSent
	case "57P01", // admin_shutdown: pg_terminate_backend, fast shutdown, Neon suspend
		"57P02": // crash_shutdown: another backend crashed
		// Raised at any point, also right after a COMMIT completed and before
		// its answer was sent: the statement may have run.
		return ConnLost
	case "40001", // serialization_failure
		"40P01": // deadlock_detected
		return Conflict
	case "25006": // read_only_sql_transaction
		// The server refused a write because the transaction is read-only.
		// Nothing of it committed, but running it again helps only after a
		// failover (a demoted or fenced primary), and the same error comes
		// from the application's own READ ONLY transaction, a role or
		// database made read-only, or a replica it writes to by mistake:
		// retried blindly, those become retry storms. Only the server can tell
		// which (pg_is_in_recovery, pg_settings.source), so the error alone is
		// Permanent; package pool asks, and returns the errors it confirmed as
		// a failover with class NotSent (see pool's failover.go, the owner of
		// this rule).
		return Permanent
	case "0A000": // feature_not_supported
		if routine == "RevalidateCachedQuery" ||
			strings.Contains(strings.ToLower(message), "cached plan must not change result type") {
			// A prepared statement whose result columns changed (ALTER
			// TABLE) since it was prepared. PostgreSQL raises this while
			// binding, before running anything, and aborts the transaction;
			// pgx drops the statement from its cache on any error, so the
			// next attempt prepares it afresh. (The routine name is checked
			// first because the message is translated by lc_messages.)
			return Conflict
		}
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

// textRules are the wordings of poolers, provider proxies and libpq that
// come without a specific SQLSTATE. They decide only inside an error of the
// database connection: for a *pgconn.PgError or another driver's error with
// a generic code (08xxx, XX000, none), or for the text inside an error made
// by pgx. The first matching rule wins, so Permanent rules come first and
// specific ones before general ones.
var textRules = []textRule{
	// Neon: the control plane refuses connections to a disabled endpoint
	// ("Control plane request failed: endpoint is disabled"); retrying only
	// hammers the control plane.
	{"endpoint is disabled", Permanent},
	{"endpoint has been disabled", Permanent},
	// pgconn's own untyped error: sslmode needs TLS, which the server lacks.
	{"server refused tls connection", Permanent},

	// Neon: the proxy could not reach the compute, typically while it wakes
	// from suspend; the statement never reached PostgreSQL.
	{"couldn't connect to compute node", NotSent},
	// Neon: the proxy is rate-limiting connection attempts for the endpoint.
	{"too many database connection attempts", NotSent},

	// PgBouncer (SQLSTATE 08P01, then it closes the client connection).
	// query_wait_timeout: the query waited in PgBouncer's queue for a server
	// connection and was never forwarded. client_idle_timeout, idle
	// transaction timeout: PgBouncer dropped an idle client, so the next
	// statement never went further (and an open transaction was rolled back
	// when its server connection was closed). No more connections allowed,
	// server login retry: refused at login, before any statement.
	{"query_wait_timeout", NotSent},
	{"client_idle_timeout", NotSent},
	{"idle transaction timeout", NotSent},
	{"no more connections allowed", NotSent},
	{"server_login_retry", NotSent},
	{"pgbouncer cannot connect to server", NotSent},
	// "server conn crashed?": the server connection of a client in the middle
	// of a query or transaction died; query_timeout: PgBouncer killed a
	// query that ran too long. Either may have run.
	{"server conn crashed?", ConnLost},
	{"query timeout", ConnLost},

	// libpq's text of the server's idle timeouts (57P05, 25P03): the statement
	// just sent was never run (see classifyCode). It comes before "server
	// closed the connection unexpectedly", which libpq appends to it.
	{"terminating connection due to idle-session timeout", NotSent},
	{"terminating connection due to idle-in-transaction timeout", NotSent},

	// libpq (and so psycopg, SQLAlchemy, Ruby pg, PHP) for a connection that
	// broke with a request in flight. "connection not open" is libpq's answer
	// when the socket is already gone, on a read as well as on a write, so it
	// cannot prove that nothing was sent.
	{"ssl connection has been closed unexpectedly", ConnLost},
	{"server closed the connection unexpectedly", ConnLost},
	{"could not receive data from server", ConnLost},
	{"ssl syscall error: eof detected", ConnLost},
	{"ssl syscall error: success", ConnLost},
	{"connection not open", ConnLost},
	{"terminating connection due to administrator command", ConnLost},

	// libpq for a connection that could not be opened.
	{"connection refused", NotSent},
	{"the database system is starting up", NotSent},
	{"the database system is shutting down", NotSent},
	{"sorry, too many clients already", NotSent},
}

func classifyText(msg string) (Class, bool) {
	if msg == "" {
		return 0, false
	}
	lower := strings.ToLower(msg)
	for _, r := range textRules {
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
