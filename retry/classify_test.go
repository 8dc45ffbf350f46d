package retry_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsteady/pgsteady/retry"
)

// safeToRetryErr stands for pgconn's and pgproto3's unexported errors that
// say through a SafeToRetry method whether anything was written.
type safeToRetryErr struct {
	safe bool
	err  error
}

func (e *safeToRetryErr) Error() string     { return fmt.Sprintf("safe=%v: %v", e.safe, e.err) }
func (e *safeToRetryErr) Unwrap() error     { return e.err }
func (e *safeToRetryErr) SafeToRetry() bool { return e.safe }

// driverErr stands for another driver's server error, such as lib/pq's
// *pq.Error, which exposes its SQLSTATE through a SQLState method.
type driverErr struct{ code, msg string }

func (e *driverErr) Error() string    { return "pq: " + e.msg }
func (e *driverErr) SQLState() string { return e.code }

func pgErr(code, msg string) *pgconn.PgError {
	return &pgconn.PgError{Severity: "ERROR", Code: code, Message: msg}
}

func fatal(code, msg string) *pgconn.PgError {
	return &pgconn.PgError{Severity: "FATAL", Code: code, Message: msg}
}

func opErr(op string, err error) *net.OpError {
	return &net.OpError{Op: op, Net: "tcp", Err: err}
}

func sysErr(call string, errno syscall.Errno) *os.SyscallError {
	return &os.SyscallError{Syscall: call, Err: errno}
}

var classifyTests = []struct {
	name string
	err  error
	want retry.Class
}{
	// SQLSTATEs.
	{"57P03 cannot_connect_now", fatal("57P03", "the database system is starting up"), retry.NotSent},
	{"53300 too_many_connections", fatal("53300", "sorry, too many clients already"), retry.NotSent},
	{"57P01 admin_shutdown", fatal("57P01", "terminating connection due to administrator command"), retry.ConnLost},
	{"57P02 crash_shutdown", fatal("57P02", "terminating connection because of crash of another server process"), retry.ConnLost},
	{"57P05 idle_session_timeout", fatal("57P05", "terminating connection due to idle-session timeout"), retry.ConnLost},
	{"25P03 idle_in_transaction_session_timeout", fatal("25P03", "terminating connection due to idle-in-transaction timeout"), retry.ConnLost},
	{"08006 connection_failure", fatal("08006", "connection failure"), retry.ConnLost},
	{"08003 connection_does_not_exist", pgErr("08003", "connection does not exist"), retry.ConnLost},
	{"08P01 protocol_violation (PgBouncer query_wait_timeout)", fatal("08P01", "query_wait_timeout"), retry.ConnLost},
	{"40001 serialization_failure", pgErr("40001", "could not serialize access due to concurrent update"), retry.Conflict},
	{"40P01 deadlock_detected", pgErr("40P01", "deadlock detected"), retry.Conflict},
	{"42601 syntax_error", pgErr("42601", `syntax error at or near "SELEC"`), retry.Permanent},
	{"23505 unique_violation", pgErr("23505", "duplicate key value violates unique constraint"), retry.Permanent},
	{"28P01 invalid_password", fatal("28P01", `password authentication failed for user "app"`), retry.Permanent},
	{"3D000 invalid_catalog_name", fatal("3D000", `database "nope" does not exist`), retry.Permanent},
	{"57014 query_canceled", pgErr("57014", "canceling statement due to statement timeout"), retry.Permanent},
	{"40003 statement_completion_unknown is not a conflict", pgErr("40003", "statement completion unknown"), retry.Permanent},
	{"driver error 40001 through SQLState()", &driverErr{"40001", "could not serialize access"}, retry.Conflict},
	{"driver error 57P01 through SQLState()", &driverErr{"57P01", "terminating connection"}, retry.ConnLost},
	{"driver error 23505 through SQLState()", &driverErr{"23505", "duplicate key"}, retry.Permanent},

	// Neon's proxy: generic XX000, told apart by message.
	{"Neon compute waking", fatal("XX000", "Couldn't connect to compute node"), retry.NotSent},
	{"Neon compute waking, with detail", fatal("XX000", "Couldn't connect to compute node: connection refused"), retry.NotSent},
	{"Neon rate limit", fatal("XX000", "Failed to acquire permit to connect to the database. Too many database connection attempts are currently ongoing."), retry.NotSent},
	{"Neon endpoint disabled", fatal("XX000", "Control plane request failed: endpoint is disabled"), retry.Permanent},
	{"Neon endpoint disabled, user-facing wording", fatal("XX000", "The endpoint has been disabled. Enable it using Neon API and retry."), retry.Permanent},
	{"Neon endpoint disabled with a connection code", fatal("08006", "endpoint is disabled"), retry.Permanent},
	{"Neon other XX000", fatal("XX000", "The endpoint ID is not specified."), retry.Permanent},
	{"provider text in user data does not count", pgErr("P0001", "Couldn't connect to compute node"), retry.Permanent},

	// Go errors from the connection.
	{"io.ErrUnexpectedEOF", io.ErrUnexpectedEOF, retry.ConnLost},
	{"io.EOF", io.EOF, retry.ConnLost},
	{"pgconn.ErrConnClosed", pgconn.ErrConnClosed, retry.ConnLost},
	{"dial refused", opErr("dial", sysErr("connect", syscall.ECONNREFUSED)), retry.NotSent},
	{"dial timeout", opErr("dial", os.ErrDeadlineExceeded), retry.NotSent},
	{"DNS failure", &net.DNSError{Err: "no such host", Name: "db.example", IsNotFound: true}, retry.NotSent},
	{"read reset", opErr("read", sysErr("read", syscall.ECONNRESET)), retry.ConnLost},
	{"write broken pipe", opErr("write", sysErr("write", syscall.EPIPE)), retry.ConnLost},
	{"read deadline (TCP user timeout, keepalive)", opErr("read", os.ErrDeadlineExceeded), retry.ConnLost},
	{"bare ECONNREFUSED", syscall.ECONNREFUSED, retry.NotSent},
	{"bare ECONNRESET", syscall.ECONNRESET, retry.ConnLost},
	{"bare ETIMEDOUT", syscall.ETIMEDOUT, retry.ConnLost},

	// pgconn.SafeToRetry.
	{"SafeToRetry true, reset on write", &safeToRetryErr{true, opErr("write", sysErr("write", syscall.ECONNRESET))}, retry.NotSent},
	{"SafeToRetry true, unknown cause", &safeToRetryErr{true, errors.New("conn busy")}, retry.NotSent},
	{"SafeToRetry false, EOF", &safeToRetryErr{false, io.ErrUnexpectedEOF}, retry.ConnLost},
	{"SafeToRetry false, conn closed", &safeToRetryErr{false, pgconn.ErrConnClosed}, retry.ConnLost},
	{"outer SafeToRetry false overrules inner true", &safeToRetryErr{false, &safeToRetryErr{true, io.EOF}}, retry.ConnLost},
	{"SafeToRetry false, unknown cause", &safeToRetryErr{false, &safeToRetryErr{true, errors.New("x")}}, retry.Permanent},
	{"SafeToRetry false, cause names a refused connection", &safeToRetryErr{false, errors.New("connection refused")}, retry.ConnLost},
	{"SafeToRetry true, context canceled", &safeToRetryErr{true, context.Canceled}, retry.Permanent},

	// Context.
	{"context.Canceled", context.Canceled, retry.Permanent},
	{"context.DeadlineExceeded", context.DeadlineExceeded, retry.Permanent},

	// Certificates.
	{"unknown authority", x509.UnknownAuthorityError{}, retry.Permanent},
	{"hostname mismatch", &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "db"}}, retry.Permanent},

	// Text only: libpq via other drivers and processes.
	{"libpq SSL closed (the seed's error)", errors.New("SSL connection has been closed unexpectedly"), retry.ConnLost},
	{"psycopg2 SSL closed", errors.New("(psycopg2.OperationalError) SSL connection has been closed unexpectedly\n\n[SQL: SELECT 1]"), retry.ConnLost},
	{"libpq server closed", errors.New("server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request."), retry.ConnLost},
	{"libpq admin shutdown text", errors.New("FATAL:  terminating connection due to administrator command"), retry.ConnLost},
	{"libpq refused", errors.New(`connection to server at "127.0.0.1", port 5432 failed: Connection refused`), retry.NotSent},
	{"libpq starting up", errors.New("FATAL:  the database system is starting up"), retry.NotSent},
	{"libpq too many clients", errors.New("FATAL:  sorry, too many clients already"), retry.NotSent},
	{"Neon waking, text only", errors.New("ERROR: Couldn't connect to compute node"), retry.NotSent},
	{"Neon disabled, text only", errors.New("ERROR: Control plane request failed: endpoint is disabled"), retry.Permanent},
	{"pgconn TLS refusal, text only", errors.New("server refused TLS connection"), retry.Permanent},

	// Everything else.
	{"unknown", errors.New("boom"), retry.Permanent},
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tt := range classifyTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkClass(t, tt.err, tt.want)
		})
	}
}

// checkClass checks the class of err, and that it survives wrapping with
// fmt.Errorf, errors.Join with an unrelated error, and *retry.Error.
func checkClass(t *testing.T, err error, want retry.Class) {
	t.Helper()
	forms := []struct {
		name string
		err  error
	}{
		{"bare", err},
		{"fmt.Errorf %w", fmt.Errorf("query documents: %w", err)},
		{"twice wrapped", fmt.Errorf("handler: %w", fmt.Errorf("store: %w", err))},
		{"errors.Join with an unrelated error", errors.Join(errors.New("rollback skipped"), err)},
		{"*retry.Error", &retry.Error{Attempts: 3, Class: want, Err: err}},
	}
	for _, f := range forms {
		if got := retry.Classify(f.err); got != want {
			t.Errorf("%s: Classify(%v) = %v, want %v", f.name, f.err, got, want)
		}
	}
}

func TestClassifyNil(t *testing.T) {
	t.Parallel()
	if got := retry.Classify(nil); got != retry.Permanent {
		t.Errorf("Classify(nil) = %v, want permanent", got)
	}
}

func TestClassifyJoined(t *testing.T) {
	t.Parallel()
	var (
		notSent  = fatal("57P03", "starting up")
		connLost = io.ErrUnexpectedEOF
		conflict = pgErr("40001", "could not serialize")
		syntax   = pgErr("42601", "syntax error")
		cancel   = context.Canceled
		unknown  = errors.New("something")
	)
	tests := []struct {
		name string
		errs []error
		want retry.Class
	}{
		{"all not-sent", []error{notSent, notSent}, retry.NotSent},
		{"not-sent and conn-lost", []error{notSent, connLost}, retry.ConnLost},
		{"conflict then conn-lost (failed rollback)", []error{conflict, connLost}, retry.ConnLost},
		{"conflict and not-sent", []error{notSent, conflict}, retry.Conflict},
		{"permanent wins", []error{connLost, syntax, notSent}, retry.Permanent},
		{"context error wins", []error{notSent, cancel}, retry.Permanent},
		{"unknown parts are ignored", []error{unknown, notSent, nil}, retry.NotSent},
		{"only unknown parts", []error{unknown, errors.New("other")}, retry.Permanent},
		{"nested joins", []error{errors.Join(notSent, unknown), errors.Join(connLost)}, retry.ConnLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := retry.Classify(errors.Join(tt.errs...)); got != tt.want {
				t.Errorf("Classify(Join(%v)) = %v, want %v", tt.errs, got, tt.want)
			}
		})
	}
}
