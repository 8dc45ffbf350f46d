package retry_test

// Where an error comes from: only errors of the database connection are
// classified by their transport failures and their text.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsteady/pgsteady/internal/testhelp"
	"github.com/pgsteady/pgsteady/retry"
)

// appErr is a wrapper declared outside pgx and pgsteady, as an application's
// own error type would be (url.Error and fs.PathError are the standard
// library's).
type appErr = url.Error

// classOverride says its own class, as pgsteady's AmbiguousCommitError does.
type classOverride struct {
	class retry.Class
	err   error
}

func (e *classOverride) Error() string           { return "override: " + e.err.Error() }
func (e *classOverride) Unwrap() error           { return e.err }
func (e *classOverride) RetryClass() retry.Class { return e.class }

func TestClassifyOrigin(t *testing.T) {
	t.Parallel()
	refused := opErr("dial", sysErr("connect", syscall.ECONNREFUSED))
	reset := opErr("read", sysErr("read", syscall.ECONNRESET))
	tests := []struct {
		name string
		err  error
		want retry.Class
	}{
		// Not the database's.
		{"HTTP call refused", &url.Error{Op: "Post", URL: "http://127.0.0.1:8080/notify", Err: refused}, retry.Permanent},
		{"HTTP response cut short", &url.Error{Op: "Get", URL: "http://127.0.0.1:8080/", Err: io.ErrUnexpectedEOF}, retry.Permanent},
		{"HTTP call refused, wrapped by the caller", fmt.Errorf("notify: %w", &url.Error{Op: "Post", URL: "http://x/", Err: refused}), retry.Permanent},
		{"file read failed", &fs.PathError{Op: "read", Path: "/tmp/licence.png", Err: syscall.ECONNRESET}, retry.Permanent},
		{"a system call error of the caller's", sysErr("write", syscall.EPIPE), retry.Permanent},
		{"HTTP error joined with a database error", errors.Join(&url.Error{Op: "Get", URL: "http://x/", Err: refused}, fatal("57P03", "starting up")), retry.Permanent},
		{"business error joined with a not-sent error", errors.Join(errors.New("licence expired"), fatal("57P03", "starting up")), retry.Permanent},
		{"business error and a database error by fmt.Errorf with two %w", fmt.Errorf("%w: %w", errors.New("upload failed"), io.ErrUnexpectedEOF), retry.Permanent},

		// The database's, whatever wraps them.
		{"pgx error in the caller's wrapper", &appErr{Op: "store", URL: "-", Err: pgErr("40001", "could not serialize")}, retry.Conflict},
		{"SafeToRetry error in the caller's wrapper", &appErr{Op: "store", URL: "-", Err: &safeToRetryErr{true, reset}}, retry.NotSent},
		{"pgconn's read failure in the caller's wrapper", &appErr{Op: "store", URL: "-", Err: &safeToRetryErr{false, reset}}, retry.ConnLost},
		{"bare transport error, as pgconn returns a failed read", reset, retry.ConnLost},
		{"bare transport error under fmt.Errorf", fmt.Errorf("list licences: %w", io.ErrUnexpectedEOF), retry.ConnLost},
		{"transport error in a wrapper declared in pgsteady that states no class hides, as any type's", &pgsteadyErr{io.ErrUnexpectedEOF}, retry.Permanent},
		{"retry's own mark is transparent", fmt.Errorf("tx: %w", retry.Stop(io.ErrUnexpectedEOF)), retry.ConnLost},
		{"pgconn.ErrConnClosed in the caller's wrapper", &appErr{Op: "store", URL: "-", Err: pgconn.ErrConnClosed}, retry.ConnLost},
		{"context error in the caller's wrapper", &appErr{Op: "store", URL: "-", Err: context.Canceled}, retry.Permanent},

		// A wrapper that knows better.
		{"RetryClass overrules what it wraps", &classOverride{retry.Permanent, io.ErrUnexpectedEOF}, retry.Permanent},
		{"RetryClass may also allow", &classOverride{retry.NotSent, errors.New("x")}, retry.NotSent},
		{"RetryClass out of range is permanent", &classOverride{retry.Class(42), pgconn.ErrConnClosed}, retry.Permanent},
		{"RetryClass under fmt.Errorf", fmt.Errorf("tx: %w", &classOverride{retry.Permanent, io.EOF}), retry.Permanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := retry.Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// A connect error from pgconn that wraps a dial error stays NotSent: the
// whole chain is pgconn's. (A real one: see TestClassifyPgconnConnectErrors.)
func TestClassifyConnectErrorIsTheDatabases(t *testing.T) {
	t.Parallel()
	_, err := pgconn.Connect(t.Context(), "postgres://app@"+testhelp.RefusedAddr(t)+"/docs?sslmode=disable&connect_timeout=1")
	if err == nil {
		t.Fatal("connect succeeded")
	}
	wrapped := &appErr{Op: "open store", URL: "-", Err: err}
	if got := retry.Classify(wrapped); got != retry.NotSent {
		t.Errorf("Classify(%v) = %v, want not-sent", wrapped, got)
	}
	if got := retry.Classify(&fs.PathError{Op: "x", Path: "y", Err: os.ErrDeadlineExceeded}); got != retry.Permanent {
		t.Errorf("a file deadline: %v, want permanent", got)
	}
}

// A real HTTP call to a closed port, inside a retried function: not the
// database's, so Do does not retry it.
func TestClassifyHTTPRefused(t *testing.T) {
	t.Parallel()
	calls := 0
	err := retry.Do(t.Context(), retry.DefaultPolicy().WithRetryOn(retry.Transaction), func(ctx context.Context) error {
		calls++
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+testhelp.RefusedAddr(t)+"/notify", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	if err == nil {
		t.Fatal("the call succeeded")
	}
	if got := retry.Classify(err); got != retry.Permanent {
		t.Errorf("Classify(%v) = %v, want permanent", err, got)
	}
	if calls != 1 {
		t.Errorf("%d calls, want 1", calls)
	}
}
