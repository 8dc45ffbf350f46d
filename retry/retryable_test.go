package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsteady/pgsteady/retry"
)

// laterErr says for itself whether a later attempt may succeed, as the
// pool's AmbiguousCommitError and TimeoutError do.
type laterErr struct {
	later bool
	err   error
}

func (e *laterErr) Error() string       { return "later: " + e.err.Error() }
func (e *laterErr) Unwrap() error       { return e.err }
func (e *laterErr) MayRetryLater() bool { return e.later }

// timeoutErr stands for pool.TimeoutError: it unwraps to
// context.DeadlineExceeded.
type timeoutErr struct{}

func (timeoutErr) Error() string { return "pool: timed out after 5s waiting for a connection" }
func (timeoutErr) Unwrap() error { return context.DeadlineExceeded }

func TestMayRetryLater(t *testing.T) {
	t.Parallel()
	unique := pgErr("23505", "duplicate key value violates unique constraint")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"server starting", fatal("57P03", "the database system is starting up"), true},
		{"connection lost", io.ErrUnexpectedEOF, true},
		{"serialization failure", pgErr("40001", "could not serialize"), true},
		{"read-only transaction (unconfirmed)", pgErr("25006", "cannot execute UPDATE in a read-only transaction"), false},
		{"Neon compute waking", fatal("XX000", "Couldn't connect to compute node"), true},
		{"unique violation", unique, false},
		{"wrong password", fatal("28P01", "password authentication failed"), false},
		{"Neon endpoint disabled", fatal("XX000", "endpoint is disabled"), false},
		{"retry.Error that gave up on a retryable error", &retry.Error{Attempts: 7, Class: retry.NotSent, Err: fatal("57P03", "starting up")}, true},
		{"retry.Error whose last attempt failed permanently", &retry.Error{Attempts: 2, Class: retry.Permanent, Err: unique}, false},
		{"retry.Error wrapped by the caller", fmt.Errorf("create licence: %w", &retry.Error{Attempts: 2, Class: retry.Permanent, Err: unique}), false},
		{"deadline exceeded", context.DeadlineExceeded, true},
		{"pool timeout (unwraps to DeadlineExceeded)", fmt.Errorf("get licence: %w", timeoutErr{}), true},
		{"pgconn timeout", &safeToRetryErr{true, context.DeadlineExceeded}, true},
		{"canceled", context.Canceled, false},
		{"canceled inside pgconn's error", &safeToRetryErr{true, context.Canceled}, false},
		{"the error's own answer: yes", &laterErr{true, unique}, true},
		{"the error's own answer: no", &laterErr{false, io.ErrUnexpectedEOF}, false},
		{"the error's own answer, wrapped", fmt.Errorf("upload: %w", &laterErr{true, errors.New("commit outcome unknown")}), true},
		{"HTTP call refused", &url.Error{Op: "Post", URL: "http://x/", Err: opErr("dial", errors.New("connection refused"))}, false},
		{"business error joined with a database error", errors.Join(errors.New("licence expired"), io.ErrUnexpectedEOF), false},
		{"unknown", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := retry.MayRetryLater(tt.err); got != tt.want {
				t.Errorf("MayRetryLater(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestDiscard(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"25006 (unconfirmed)", pgErr("25006", "cannot execute INSERT in a read-only transaction"), false},
		{"FATAL admin shutdown", fatal("57P01", "terminating connection due to administrator command"), true},
		{"FATAL idle-session timeout", fatal("57P05", "terminating connection due to idle-session timeout"), true},
		{"FATAL, translated severity", &pgconn.PgError{Severity: "SCHWERWIEGEND", SeverityUnlocalized: "FATAL", Code: "57P01"}, true},
		{"connection lost mid-statement", io.ErrUnexpectedEOF, true},
		{"read timeout", opErr("read", errors.New("i/o timeout")), true},
		{"serialization failure", pgErr("40001", "could not serialize"), false},
		{"stale cached plan", pgErr("0A000", "cached plan must not change result type"), false},
		{"unique violation", pgErr("23505", "duplicate key"), false},
		{"nothing sent", &safeToRetryErr{true, errors.New("conn busy")}, false},
		{"context deadline", context.DeadlineExceeded, false},
		{"not the database's", &url.Error{Op: "Get", URL: "http://x/", Err: io.ErrUnexpectedEOF}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := retry.Discard(tt.err); got != tt.want {
				t.Errorf("Discard(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func ExampleMayRetryLater() {
	errs := []error{
		&pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"},
		&retry.Error{Attempts: 2, Class: retry.Permanent, Err: &pgconn.PgError{Code: "23505", Message: "duplicate key value"}},
		fmt.Errorf("waiting for a connection: %w", context.DeadlineExceeded),
		errors.New("licence number already taken"),
	}
	for _, err := range errs {
		status := 500
		if retry.MayRetryLater(err) {
			status = 503
		}
		fmt.Println(status)
	}
	// Output:
	// 503
	// 500
	// 503
	// 500
}
