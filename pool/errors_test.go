package pool_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

func TestTimeoutErrorTellsExhaustedFromDown(t *testing.T) {
	exhausted := &pool.TimeoutError{Waited: 30 * time.Second, Total: 30, InUse: 30, Waiting: 12, Max: 30}
	down := &pool.TimeoutError{Waited: 30 * time.Second, Bound: "AcquireTimeout 30s", Max: 30, Waiting: 1, LastErr: errors.New("connection refused")}
	tests := []struct {
		name string
		err  *pool.TimeoutError
		want string
	}{
		{"exhausted", exhausted, "pool: timed out after 30s waiting for a connection (total=30, idle=0, in use=30, waiting=12, max=30)"},
		{"down", down, "pool: timed out after 30s waiting for a connection, AcquireTimeout 30s ran out (total=0, idle=0, in use=0, waiting=1, max=30); last connection error: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			var err error = tt.err
			if !errors.Is(err, pool.ErrPoolTimeout) {
				t.Error("not ErrPoolTimeout")
			}
			if retry.Classify(err) != retry.Permanent {
				t.Error("a pool timeout must not be retried: it has already waited")
			}
		})
	}
}

func TestAmbiguousCommitErrorWrapsItsCause(t *testing.T) {
	err := error(&pool.AmbiguousCommitError{Err: io.ErrUnexpectedEOF})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Error("cause not reachable with errors.Is")
	}
	var amb *pool.AmbiguousCommitError
	if !errors.As(err, &amb) {
		t.Error("not an *AmbiguousCommitError for errors.As")
	}
}

func TestNewRejectsNilConfig(t *testing.T) {
	if _, err := pool.New(context.Background(), nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
}

func TestWhatACallerMayRetryLater(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantClass retry.Class
		wantLater bool
	}{
		{"an ambiguous commit is never retried by an outer loop, but the caller may check and retry", &pool.AmbiguousCommitError{Err: io.ErrUnexpectedEOF}, retry.Permanent, true},
		{"a closed pool: the service is shutting down", pool.ErrClosed, retry.Permanent, true},
		{"a pool timeout: it already waited", &pool.TimeoutError{}, retry.Permanent, true},
		{"retries that gave up on a permanent error", &retry.Error{Attempts: 2, Class: retry.Permanent, Err: errors.New("syntax error")}, retry.Permanent, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retry.Classify(tt.err); got != tt.wantClass {
				t.Errorf("Classify = %v, want %v", got, tt.wantClass)
			}
			if got := retry.MayRetryLater(tt.err); got != tt.wantLater {
				t.Errorf("MayRetryLater = %v, want %v", got, tt.wantLater)
			}
		})
	}
}
