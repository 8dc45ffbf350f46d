package retry_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsteady/pgsteady/internal/testhelp"
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

// pgsteadyErr is a wrapper declared in a package of the pgsteady module (this
// test package) that states no class: where it is declared does not make it
// transparent (the pool's own wrappers state their class instead).
type pgsteadyErr struct{ err error }

func (e *pgsteadyErr) Error() string { return "pool: " + e.err.Error() }
func (e *pgsteadyErr) Unwrap() error { return e.err }

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
	{"57P05 idle_session_timeout: raised only between statements", fatal("57P05", "terminating connection due to idle-session timeout"), retry.NotSent},
	{"25P03 idle_in_transaction_session_timeout: raised only between statements", fatal("25P03", "terminating connection due to idle-in-transaction timeout"), retry.NotSent},
	{"08006 connection_failure", fatal("08006", "connection failure"), retry.ConnLost},
	{"08003 connection_does_not_exist", pgErr("08003", "connection does not exist"), retry.ConnLost},
	{"08P01 protocol_violation, unknown message", fatal("08P01", "invalid frontend message type 0"), retry.ConnLost},
	{"40001 serialization_failure, in autocommit too", pgErr("40001", "could not serialize access due to read/write dependencies among transactions"), retry.Conflict},
	{"25006 read_only_sql_transaction (the server alone can tell a failover from the application's own)", pgErr("25006", "cannot execute INSERT in a read-only transaction"), retry.Permanent},
	{"25006 during recovery", pgErr("25006", "cannot execute nextval() during recovery"), retry.Permanent},
	{"0A000 cached plan must not change result type", pgErr("0A000", "cached plan must not change result type"), retry.Conflict},
	{"0A000 cached plan, translated message, told by routine", &pgconn.PgError{Severity: "ERROR", Code: "0A000", Message: "le plan en cache ne doit pas modifier le type en résultat", Routine: "RevalidateCachedQuery"}, retry.Conflict},
	{"0A000 other feature_not_supported", pgErr("0A000", "DISCARD ALL cannot run inside a transaction block"), retry.Permanent},
	{"25P02 in_failed_sql_transaction", pgErr("25P02", "current transaction is aborted, commands ignored until end of transaction block"), retry.Permanent},
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

	// PgBouncer: SQLSTATE 08P01 for all of its own errors, told apart by message.
	{"PgBouncer query_wait_timeout: never forwarded", fatal("08P01", "query_wait_timeout"), retry.NotSent},
	{"PgBouncer client_idle_timeout", fatal("08P01", "client_idle_timeout"), retry.NotSent},
	{"PgBouncer idle transaction timeout", fatal("08P01", "idle transaction timeout"), retry.NotSent},
	{"PgBouncer full", fatal("08P01", "no more connections allowed (max_client_conn)"), retry.NotSent},
	{"PgBouncer server login retry", fatal("08P01", "server login has been failing, try again later (server_login_retry)"), retry.NotSent},
	{"PgBouncer server conn crashed", fatal("08P01", "server conn crashed?"), retry.ConnLost},
	{"PgBouncer query_timeout", fatal("08P01", "query timeout"), retry.ConnLost},
	{"PgBouncer text in user data does not count", pgErr("P0001", "query_wait_timeout"), retry.Permanent},

	// Go errors from the connection.
	{"io.ErrUnexpectedEOF", io.ErrUnexpectedEOF, retry.ConnLost},
	{"io.EOF", io.EOF, retry.ConnLost},
	{"pgconn.ErrConnClosed", pgconn.ErrConnClosed, retry.ConnLost},
	{"dial refused", opErr("dial", sysErr("connect", syscall.ECONNREFUSED)), retry.NotSent},
	{"dial timeout", opErr("dial", os.ErrDeadlineExceeded), retry.NotSent},
	{"DNS failure that may pass", &net.DNSError{Err: "server misbehaving", Name: "db.example", IsTemporary: true}, retry.NotSent},
	{"DNS lookup timed out", &net.DNSError{Err: "i/o timeout", Name: "db.example", IsTimeout: true}, retry.NotSent},
	{"host that does not exist (NXDOMAIN)", &net.DNSError{Err: "no such host", Name: "db.example", IsNotFound: true}, retry.Permanent},
	{"read reset", opErr("read", sysErr("read", syscall.ECONNRESET)), retry.ConnLost},
	{"write broken pipe", opErr("write", sysErr("write", syscall.EPIPE)), retry.ConnLost},
	{"read deadline (TCP user timeout, keepalive)", opErr("read", os.ErrDeadlineExceeded), retry.ConnLost},
	{"bare ECONNREFUSED", syscall.ECONNREFUSED, retry.NotSent},
	{"bare ECONNRESET", syscall.ECONNRESET, retry.ConnLost},
	{"bare ETIMEDOUT", syscall.ETIMEDOUT, retry.ConnLost},
	{"driver.ErrBadConn", driver.ErrBadConn, retry.NotSent},

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

	// libpq's wordings, from a driver that passes them on without a SQLSTATE.
	{"libpq SSL closed (the seed's error)", &driverErr{"", "SSL connection has been closed unexpectedly"}, retry.ConnLost},
	{"libpq server closed", &driverErr{"", "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request."}, retry.ConnLost},
	{"libpq could not receive", &driverErr{"", "could not receive data from server: Connection timed out"}, retry.ConnLost},
	{"libpq SSL SYSCALL EOF", &driverErr{"", "SSL SYSCALL error: EOF detected"}, retry.ConnLost},
	{"libpq SSL SYSCALL Success", &driverErr{"", "SSL SYSCALL error: Success"}, retry.ConnLost},
	{"libpq connection not open", &driverErr{"", "connection not open"}, retry.ConnLost},
	{"libpq admin shutdown text", &driverErr{"", "FATAL:  terminating connection due to administrator command"}, retry.ConnLost},
	{"libpq idle-session timeout, with the close appended", &driverErr{"", "FATAL:  terminating connection due to idle-session timeout\nserver closed the connection unexpectedly"}, retry.NotSent},
	{"libpq idle-in-transaction timeout", &driverErr{"", "FATAL:  terminating connection due to idle-in-transaction timeout"}, retry.NotSent},
	{"libpq refused", &driverErr{"08001", `connection to server at "127.0.0.1", port 5432 failed: Connection refused`}, retry.NotSent},
	{"libpq starting up", &driverErr{"", "FATAL:  the database system is starting up"}, retry.NotSent},
	{"libpq too many clients", &driverErr{"", "FATAL:  sorry, too many clients already"}, retry.NotSent},
	{"Neon waking, from another driver", &driverErr{"XX000", "ERROR: Couldn't connect to compute node"}, retry.NotSent},
	{"Neon disabled, from another driver", &driverErr{"XX000", "ERROR: Control plane request failed: endpoint is disabled"}, retry.Permanent},
	{"pgconn TLS refusal, inside a pgconn error", &safeToRetryErr{false, errors.New("server refused TLS connection")}, retry.Permanent},

	// Text alone says nothing about where an error came from.
	{"bare libpq text", errors.New("SSL connection has been closed unexpectedly"), retry.Permanent},
	{"bare psycopg2 text", errors.New("(psycopg2.OperationalError) SSL connection has been closed unexpectedly\n\n[SQL: SELECT 1]"), retry.Permanent},
	{"bare refused text", errors.New("dial tcp 127.0.0.1:8080: connect: connection refused"), retry.Permanent},

	// Everything else.
	{"unknown", errors.New("boom"), retry.Permanent},
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tt := range classifyTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testhelp.CheckClass(t, tt.err, tt.want)
		})
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
		{"nil parts are ignored", []error{notSent, nil}, retry.NotSent},
		{"an unknown part makes it permanent", []error{unknown, notSent, nil}, retry.Permanent},
		{"a business error joined with a conflict", []error{errors.New("insufficient funds"), conflict}, retry.Permanent},
		{"only unknown parts", []error{unknown, errors.New("other")}, retry.Permanent},
		{"nested joins", []error{errors.Join(notSent, conflict), errors.Join(connLost)}, retry.ConnLost},
		{"nested join with an unknown part", []error{errors.Join(notSent, unknown), errors.Join(connLost)}, retry.Permanent},
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
