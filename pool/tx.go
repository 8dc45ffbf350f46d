package pool

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/retry"
)

// AmbiguousCommitError is returned by [Pool.Tx] when COMMIT was sent and no answer from the
// server settled it: the connection was lost, the caller's context ended, or the server ended
// the session, before the outcome arrived. The transaction may or may not have committed, and
// it is not retried. The caller must find out (for example by looking up a unique key it
// wrote) before doing the work again. Err is the error COMMIT got.
type AmbiguousCommitError struct {
	Err error
}

// Error says that the outcome is unknown, and why.
func (e *AmbiguousCommitError) Error() string {
	return "pool: commit outcome unknown, COMMIT was sent but its answer was lost: " + e.Err.Error()
}

// Unwrap returns the error COMMIT got.
func (e *AmbiguousCommitError) Unwrap() error { return e.Err }

// Tx runs fn in a transaction and commits it. When fn or the commit fails with an error that
// proves the transaction did not commit, the whole of fn runs again in a new transaction on
// another connection, under the config's Retry policy: [retry.Conflict] (serialization
// failure, deadlock), [retry.NotSent] and [retry.ConnLost] before COMMIT was sent. fn must
// therefore be safe to run more than once: no side effects outside the transaction, or
// idempotent ones.
//
// When fn returns an error, the transaction is rolled back and that error is returned (wrapped
// in a *[retry.Error] if earlier attempts were retried). When COMMIT fails, Tx returns an
// *[AmbiguousCommitError] and never retries, unless the server itself answered that the
// transaction rolled back (an ERROR such as a serialization failure at commit, or pgx's
// [pgx.ErrTxCommitRollback]) or COMMIT provably never left the client.
//
// fn may call Commit or Rollback on its transaction itself: the commit then follows the same
// rules (Commit returns the same errors Tx would), Tx returns the commit's result, and it
// never runs fn again once a commit was attempted. A transaction fn rolled back itself and
// whose fn returned nil makes Tx return nil.
func (p *Pool) Tx(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	if p.closed.Load() {
		return ErrClosed
	}
	start := time.Now()
	attempt := func(ctx context.Context) error { return p.txOnce(ctx, start, opts, fn) }
	return p.retry(ctx, retry.Transaction, start, attempt(ctx), attempt)
}

// txOnce is one attempt of Tx. It returns retry.Stop(err) for outcomes that must not be retried.
func (p *Pool) txOnce(ctx context.Context, start time.Time, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	c, err := p.acquire(ctx, start)
	if err != nil {
		return err
	}
	defer p.release(c) // a connection left in a transaction is destroyed
	t, err := c.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	ft := &fnTx{Tx: t}
	err = fn(ft)
	switch {
	case ft.state == txOpen && err != nil:
		rollback(t)
		return err
	case ft.state == txOpen:
		return commit(ctx, t)
	case ft.state == txCommitted && err != nil:
		return retry.Stop(err) // the commit may have applied: running fn again could apply it twice
	case ft.state == txCommitted:
		return ft.commitErr
	default: // fn rolled back
		return err
	}
}

// commit commits t. An error that does not prove the transaction rolled back is returned as
// retry.Stop(*AmbiguousCommitError).
func commit(ctx context.Context, t pgx.Tx) error {
	err := t.Commit(ctx)
	if err == nil || rolledBack(err) {
		return err
	}
	return retry.Stop(&AmbiguousCommitError{Err: err})
}

// rolledBack reports whether a failed COMMIT provably did not commit: pgx saw the server
// answer ROLLBACK (the transaction had failed), the server answered with an ERROR (a
// serialization failure or deferred constraint at commit; an ERROR aborts the transaction,
// whereas a FATAL can follow a commit that completed), or nothing was written to the socket.
func rolledBack(err error) bool {
	if errors.Is(err, pgx.ErrTxCommitRollback) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Severity == "ERROR"
	}
	return pgconn.SafeToRetry(err)
}

// rollback rolls tx back, bounded in time even when the caller's ctx is done.
func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tx.Rollback(ctx)
}

// Transaction states of fnTx.
const (
	txOpen = iota
	txCommitted
	txRolledBack
)

// fnTx is the transaction Tx hands to fn: a Commit or Rollback that fn makes itself is
// recorded, and a commit follows Tx's rules.
type fnTx struct {
	pgx.Tx
	state     int
	commitErr error // as commit returned it, retry.Stop included
}

func (t *fnTx) Commit(ctx context.Context) error {
	if t.state != txOpen {
		return pgx.ErrTxClosed
	}
	t.state = txCommitted
	t.commitErr = commit(ctx, t.Tx)
	var amb *AmbiguousCommitError
	if errors.As(t.commitErr, &amb) {
		return amb
	}
	return t.commitErr
}

func (t *fnTx) Rollback(ctx context.Context) error {
	if t.state != txOpen {
		return pgx.ErrTxClosed
	}
	t.state = txRolledBack
	return t.Tx.Rollback(ctx)
}

// Begin starts a transaction on a pooled connection (retrying [retry.NotSent] errors, BEGIN
// included). The connection returns to the pool at Commit or Rollback. Nothing inside the
// transaction is retried, and a failed Commit is returned as pgx reports it: prefer [Pool.Tx].
func (p *Pool) Begin(ctx context.Context) (pgx.Tx, error) {
	return p.BeginTx(ctx, pgx.TxOptions{})
}

// BeginTx is [Pool.Begin] with options.
func (p *Pool) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	start := time.Now()
	var out pgx.Tx
	attempt := func(ctx context.Context) error {
		c, err := p.acquire(ctx, start)
		if err != nil {
			return err
		}
		t, err := c.BeginTx(ctx, opts)
		if err != nil {
			p.release(c)
			return err
		}
		out = &tx{Tx: t, p: p, conn: c}
		return nil
	}
	if err := p.retry(ctx, retry.Safe, start, attempt(ctx), attempt); err != nil {
		return nil, err
	}
	return out, nil
}

// tx releases its connection when it ends.
type tx struct {
	pgx.Tx
	p    *Pool
	conn *pgxpool.Conn
}

func (t *tx) Commit(ctx context.Context) error {
	err := t.Tx.Commit(ctx)
	t.release()
	return err
}

func (t *tx) Rollback(ctx context.Context) error {
	err := t.Tx.Rollback(ctx)
	t.release()
	return err
}

func (t *tx) release() {
	if t.conn != nil {
		t.p.release(t.conn)
		t.conn = nil
	}
}
