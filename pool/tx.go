package pool

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/retry"
)

// AmbiguousCommitError is returned by [Pool.Tx] when the connection was lost after COMMIT was
// sent and before its answer arrived: the transaction may or may not have committed, and it
// is not retried. The caller must find out (for example by looking up a unique key it wrote)
// before doing the work again. Err is the connection error.
type AmbiguousCommitError struct {
	Err error
}

// Error says that the outcome is unknown, and why.
func (e *AmbiguousCommitError) Error() string {
	return "pool: commit outcome unknown, the connection was lost after COMMIT was sent: " + e.Err.Error()
}

// Unwrap returns the connection error.
func (e *AmbiguousCommitError) Unwrap() error { return e.Err }

// Tx runs fn in a transaction and commits it. When fn or the commit fails with an error that
// proves the transaction did not commit, the whole of fn runs again in a new transaction on
// another connection, under the config's Retry policy: [retry.Conflict] (serialization
// failure, deadlock), [retry.NotSent] and [retry.ConnLost] before COMMIT was sent. fn must
// therefore be safe to run more than once: no side effects outside the transaction, or
// idempotent ones.
//
// When fn returns an error, the transaction is rolled back and that error is returned (wrapped
// in a *[retry.Error] if earlier attempts were retried). When the connection is lost while
// COMMIT is in flight, Tx returns an *[AmbiguousCommitError] and never retries.
//
// fn must not call Commit or Rollback itself; Tx does.
func (p *Pool) Tx(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	var ambiguous *AmbiguousCommitError
	err := p.run(ctx, retry.Transaction, func(ctx context.Context) error {
		c, err := p.acquire(ctx)
		if err != nil {
			return err
		}
		defer p.release(c)
		tx, err := c.BeginTx(ctx, opts)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			rollback(tx)
			return err
		}
		err = tx.Commit(ctx)
		if err != nil && retry.Classify(err) == retry.ConnLost {
			ambiguous = &AmbiguousCommitError{Err: err}
			return errStop
		}
		return err
	})
	if ambiguous != nil {
		return ambiguous
	}
	return err
}

// errStop ends Tx's retry loop; it is Permanent for retry.Classify.
var errStop = errors.New("pool: stop")

// rollback rolls tx back, bounded in time even when the caller's ctx is done.
func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tx.Rollback(ctx)
}

// Begin starts a transaction on a pooled connection (retrying [retry.NotSent] errors, BEGIN
// included). The connection returns to the pool at Commit or Rollback. Nothing inside the
// transaction is retried: prefer [Pool.Tx].
func (p *Pool) Begin(ctx context.Context) (pgx.Tx, error) {
	return p.BeginTx(ctx, pgx.TxOptions{})
}

// BeginTx is [Pool.Begin] with options.
func (p *Pool) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	var out pgx.Tx
	err := p.run(ctx, retry.Safe, func(ctx context.Context) error {
		c, err := p.acquire(ctx)
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
	})
	return out, err
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
