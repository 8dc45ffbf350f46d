package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/retry"
)

// ErrPoolTimeout is matched (errors.Is) by the error returned when no connection could be had
// within the call's acquire budget (the config's AcquireTimeout, counted from the start of the
// call) or the caller's deadline, whichever came first. The error is a *[TimeoutError]; it
// also matches context.DeadlineExceeded.
var ErrPoolTimeout = errors.New("pool: timed out waiting for a connection")

// TimeoutError says why a caller got no connection: which bound ran out, the pool's state, and
// the last thing that went wrong while connecting or pinging, so a reader tells an exhausted
// pool (all in use, callers waiting) from a database that is down or a dead network path, as
// HikariCP's message does.
type TimeoutError struct {
	Waited  time.Duration // how long the call waited for a connection, retries included
	Bound   string        // the bound that ran out: "AcquireTimeout 30s" or "the caller's deadline"
	Total   int           // open connections, in use or idle
	Idle    int
	InUse   int
	Waiting int   // callers waiting for a connection, this one included
	Max     int   // Size + Overflow
	LastErr error // the last failure to open or ping a connection, if one happened recently
}

// Error describes the wait, the bound and the pool's state.
func (e *TimeoutError) Error() string {
	s := fmt.Sprintf("pool: timed out after %v waiting for a connection", e.Waited.Round(time.Millisecond))
	if e.Bound != "" {
		s += ", " + e.Bound + " ran out"
	}
	s += fmt.Sprintf(" (total=%d, idle=%d, in use=%d, waiting=%d, max=%d)",
		e.Total, e.Idle, e.InUse, e.Waiting, e.Max)
	if e.LastErr != nil {
		s += "; last connection error: " + e.LastErr.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrPoolTimeout) true.
func (e *TimeoutError) Is(target error) bool { return target == ErrPoolTimeout }

// Unwrap returns context.DeadlineExceeded: the wait ended at a deadline. (LastErr is not in
// the chain: the caller did not get that error, and it must not make the timeout retryable.)
func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// lastConnErr remembers the most recent failure to open or ping a connection, for TimeoutError.
type lastConnErr struct {
	mu  sync.Mutex
	err error
	at  time.Time
}

func (l *lastConnErr) set(err error) {
	l.mu.Lock()
	l.err, l.at = err, time.Now()
	l.mu.Unlock()
}

// since returns the error if it happened at or after t.
func (l *lastConnErr) since(t time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil && !l.at.Before(t) {
		return l.err
	}
	return nil
}

// Acquire returns a connection from the pool, waiting at most AcquireTimeout in all, and
// retrying (under the config's Retry policy) while opening a connection fails with a
// [retry.NotSent] error. The caller must Release it. Work done on it directly is not retried,
// and a connection released this way is not counted idle by the pool, so OverflowIdleTimeout
// does not close it (pgxpool closes it after IdleTimeout instead). A connection still held when the pool closes
// has its socket closed once [Pool.Close]'s grace has passed.
func (p *Pool) Acquire(ctx context.Context) (*pgxpool.Conn, error) {
	cl, err := p.call(ctx, retry.Safe, "")
	if err != nil {
		return nil, err
	}
	return cl.acquireRetrying()
}

// pgxpoolGaveUp starts the error pgxpool returns when every connection it tried in one acquire
// failed its pre-ping (pgxpool's pool.go; a plain error, so only its text tells it).
const pgxpoolGaveUp = "pgxpool: too many failed attempts acquiring connection"

// prePingsFailedError is an acquire whose every connection failed its pre-ping (a server that
// ends each new session at once: a PgBouncer whose server logins are failing, a server
// restarting): nothing was sent, so the call's retries go on within its budget.
type prePingsFailedError struct{ last error }

func (e *prePingsFailedError) Error() string {
	s := "pool: every connection tried failed its pre-ping"
	if e.last != nil {
		s += ": " + e.last.Error()
	}
	return s
}

func (e *prePingsFailedError) Unwrap() error { return e.last }

// SafeToRetry makes the retry package class it NotSent.
func (e *prePingsFailedError) SafeToRetry() bool { return true }
