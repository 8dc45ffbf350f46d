package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/retry"
)

// ErrPoolTimeout is matched (errors.Is) by the error returned when no connection could be had
// within the config's AcquireTimeout or the caller's deadline, whichever came first. The error
// is a *[PoolTimeoutError]; it also matches context.DeadlineExceeded.
var ErrPoolTimeout = errors.New("pool: timed out waiting for a connection")

// PoolTimeoutError says why a caller got no connection: its text gives the pool's state, so a
// reader tells an exhausted pool (all in use, callers waiting) from a database that is down (a
// recent connection error), as HikariCP's message does.
type PoolTimeoutError struct {
	Waited  time.Duration // how long the caller waited
	Total   int           // open connections, in use or idle
	Idle    int
	InUse   int
	Waiting int   // callers waiting for a connection, this one included
	Max     int   // Size + Overflow
	LastErr error // the last error opening a connection, if one failed recently
}

// Error describes the wait and the pool's state.
func (e *PoolTimeoutError) Error() string {
	s := fmt.Sprintf("pool: timed out after %v waiting for a connection (total=%d, idle=%d, in use=%d, waiting=%d, max=%d)",
		e.Waited.Round(time.Millisecond), e.Total, e.Idle, e.InUse, e.Waiting, e.Max)
	if e.LastErr != nil {
		s += "; last connection error: " + e.LastErr.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrPoolTimeout) true.
func (e *PoolTimeoutError) Is(target error) bool { return target == ErrPoolTimeout }

// Unwrap returns context.DeadlineExceeded: the wait ended at a deadline. (LastErr is not in
// the chain: the caller did not get that error, and it must not make the timeout retryable.)
func (e *PoolTimeoutError) Unwrap() error { return context.DeadlineExceeded }

// lastConnErr remembers the most recent failure to open a connection, for PoolTimeoutError.
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

// recent returns the error if it happened within d.
func (l *lastConnErr) recent(d time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil && time.Since(l.at) <= d {
		return l.err
	}
	return nil
}

// Acquire returns a connection from the pool, waiting at most AcquireTimeout, and retrying
// (under the config's Retry policy) while opening a connection fails with a [retry.NotSent]
// error. The caller must Release it. Work done on it directly is not retried, and a connection
// released this way is not subject to the Size limit on idle connections (pgxpool closes it
// after IdleTimeout instead).
func (p *Pool) Acquire(ctx context.Context) (c *pgxpool.Conn, err error) {
	err = p.run(ctx, retry.Safe, func(ctx context.Context) error {
		c, err = p.acquire(ctx)
		return err
	})
	return c, err
}

// acquire is one attempt: wait for a connection at most AcquireTimeout.
func (p *Pool) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	p.stats.acquires.Add(1)
	p.stats.waiting.Add(1)
	defer p.stats.waiting.Add(-1)

	actx := ctx
	start := time.Now()
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > p.cfg.AcquireTimeout {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, p.cfg.AcquireTimeout)
		defer cancel()
	}
	c, err := p.pgx.Acquire(actx)
	if err == nil {
		return c, nil
	}
	if p.closed.Load() {
		return nil, ErrClosed
	}
	if actx.Err() == context.DeadlineExceeded && !errors.Is(ctx.Err(), context.Canceled) {
		p.stats.acquireTimeouts.Add(1)
		return nil, p.timeoutError(time.Since(start))
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		p.lastConnErr.set(err)
	}
	return nil, err
}

func (p *Pool) timeoutError(waited time.Duration) error {
	s := p.pgx.Stat()
	return &PoolTimeoutError{
		Waited:  waited,
		Total:   int(s.TotalConns()),
		Idle:    int(s.IdleConns()),
		InUse:   int(s.AcquiredConns()),
		Waiting: int(p.stats.waiting.Load()),
		Max:     p.cfg.MaxConns(),
		LastErr: p.lastConnErr.recent(p.cfg.AcquireTimeout + waited),
	}
}
