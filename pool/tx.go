package pool

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/internal/xact"
	"github.com/pgsteady/pgsteady/retry"
)

// AmbiguousCommitError is returned by [Pool.Tx] when COMMIT was sent and no answer from the
// server settled it: the connection was lost, the caller's context ended, or the server ended
// the session, before the outcome arrived. The transaction may or may not have committed, and
// it is not retried. The caller must find out (for example by looking up a unique key it
// wrote) before doing the work again. Err is the error COMMIT got.
type AmbiguousCommitError struct {
	Err error
	// Xid is the transaction's id (pg_current_xact_id()), when the pool learned it: the caller
	// can ask pg_xact_status(Xid) later, on the same server. 0 when unknown.
	Xid uint64
}

// Error says that the outcome is unknown, and why.
func (e *AmbiguousCommitError) Error() string {
	s := "pool: commit outcome unknown, COMMIT was sent but its answer was lost"
	if e.Xid != 0 {
		s += " (transaction " + strconv.FormatUint(e.Xid, 10) + ")"
	}
	return s + ": " + e.Err.Error()
}

// commitAbortedError is a COMMIT whose answer was lost and which the server then said had
// aborted: nothing of the transaction applied, so Tx runs fn again.
type commitAbortedError struct{ err error }

func (e *commitAbortedError) Error() string {
	return "pool: COMMIT's answer was lost, and the server says the transaction rolled back: " + e.err.Error()
}

func (e *commitAbortedError) Unwrap() error { return e.err }

// SafeToRetry makes the retry package class it NotSent: the work provably did not apply.
func (e *commitAbortedError) SafeToRetry() bool { return true }

// Unwrap returns the error COMMIT got.
func (e *AmbiguousCommitError) Unwrap() error { return e.Err }

// RetryClass makes [retry.Classify] say Permanent, whatever COMMIT's error was: work that may
// have committed must not be run again by an outer retry (a Tx inside Querier.Do).
func (e *AmbiguousCommitError) RetryClass() retry.Class { return retry.Permanent }

// MayRetryLater makes [retry.MayRetryLater] say true: the database was unreachable, and the
// caller may try again once it has checked whether the work was done.
func (e *AmbiguousCommitError) MayRetryLater() bool { return true }

// Tx runs fn in a transaction and commits it. When fn or the commit fails with an error that
// proves the transaction did not commit, the whole of fn runs again in a new transaction on
// another connection, under the config's Retry policy: [retry.Conflict] (serialization
// failure, deadlock), [retry.NotSent] and [retry.ConnLost] before COMMIT was sent. fn must
// therefore be safe to run more than once: no side effects outside the transaction, or
// idempotent ones.
//
// When fn returns an error, the transaction is rolled back and that error is returned (wrapped
// in a *[retry.Error] if earlier attempts were retried).
//
// When COMMIT's answer is lost (the connection dropped, the server ended the session), Tx finds
// out what happened instead of guessing: it learned the transaction's id with BEGIN, in the
// same round trip (pg_current_xact_id(), PostgreSQL 13+), and asks pg_xact_status on another
// connection, within the caller's deadline and the acquire budget: committed, Tx returns nil;
// aborted, fn provably did not apply and runs again under the Retry policy; still in progress
// when the budget ends, or unknowable (the id too old, the server crashed or failed over since,
// the lookup impossible), Tx returns an *[AmbiguousCommitError] carrying the id, and never
// retries. A COMMIT cut off because the caller's context ended is reported ambiguous at once:
// the caller has no time left to wait for the answer. Read-only transactions
// (TxOptions.AccessMode pgx.ReadOnly) and pools built with [WithoutCommitResolution] skip the
// id and report a lost COMMIT as ambiguous. A COMMIT the server answered with an error (a
// serialization failure at commit: retried; a deferred constraint: returned) or that provably
// never left the client is never ambiguous.
//
// fn may call Commit or Rollback on its transaction itself: the commit then follows the same
// rules (Commit returns the same errors Tx would), Tx returns the commit's result, and it
// never runs fn again once a commit was attempted. A transaction fn rolled back itself and
// whose fn returned nil makes Tx return nil.
func (p *Pool) Tx(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	cl, err := p.call(ctx, retry.Transaction, "")
	if err != nil {
		return err
	}
	return cl.run(func() error { return cl.txAttempt(opts, fn) })
}

// txAttempt is one attempt of Tx. It returns retry.Stop(err) for outcomes that must not be retried.
func (cl *call) txAttempt(opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	p, ctx := cl.p, cl.ctx
	c, err := cl.acquire()
	if err != nil {
		return err
	}
	ft := &fnTx{cl: cl, held: heldConn{p: p, conn: c}}
	defer ft.held.release() // a connection left in a transaction is destroyed
	callerReadOnly := opts.AccessMode == pgx.ReadOnly
	ft.Tx, ft.ref, err = p.begin(ctx, c, opts)
	if err != nil {
		return p.judge(ctx, c, err, callerReadOnly)
	}
	err = fn(ft)
	switch {
	case ft.state == txOpen && err != nil:
		rollback(ft.Tx)
		return p.judge(ctx, c, err, callerReadOnly)
	case ft.state == txOpen:
		return ft.commit(ctx)
	case ft.state == txCommitted && err != nil:
		return retry.Stop(err) // the commit may have applied: running fn again could apply it twice
	case ft.state == txCommitted:
		return ft.commitErr
	default: // fn rolled back
		return p.judge(ctx, c, err, callerReadOnly)
	}
}

// begin begins a transaction on c, learning its id for commit resolution where that is
// possible and useful: not for a read-only transaction (nothing to lose), not without
// resolution, and not on a hot standby, which cannot assign transaction ids (it says so with
// in_hot_standby from PostgreSQL 14; before, its refusal, a 25006, sends Tx to a plain BEGIN on
// the same connection unless the refusal is a failover).
func (p *Pool) begin(ctx context.Context, c *pgxpool.Conn, opts pgx.TxOptions) (pgx.Tx, xact.Ref, error) {
	if !p.resolve || opts.AccessMode == pgx.ReadOnly || onStandby(c.Conn().PgConn()) {
		t, err := c.BeginTx(ctx, opts)
		return t, xact.Ref{}, err
	}
	t, ref, err := xact.Begin(ctx, c, opts)
	if !isReadOnly(err) || c.Conn().IsClosed() {
		return t, ref, err
	}
	var ro *readOnlyError
	if err := p.judge(ctx, c, err, false); !errors.As(err, &ro) || ro.v != verdictCaller {
		return nil, xact.Ref{}, err
	}
	t, err = c.BeginTx(ctx, opts)
	return t, xact.Ref{}, err
}

// commit commits the transaction of one attempt of Tx, with ctx (Tx's, or the one fn gave
// Commit). A COMMIT whose answer was lost is resolved (see Tx): it returns nil when the
// transaction committed, a NotSent error when it aborted, and retry.Stop(*AmbiguousCommitError)
// when the outcome stays unknown.
func (t *fnTx) commit(ctx context.Context) error {
	p := t.cl.p
	err := t.Tx.Commit(ctx)
	outcome := CommitOK
	switch {
	case err == nil:
	case !xact.Uncertain(err):
		outcome = CommitRolledBack
	default:
		t.held.release() // its connection is lost: its slot serves the lookup
		outcome, err = t.cl.resolveCommit(ctx, t.ref, err)
	}
	if p.obs != nil {
		p.obs.Committed(ctx, CommitEvent{Outcome: outcome})
	}
	return err
}

// resolveCommit finds out what became of a transaction whose COMMIT, sent with ctx, failed
// with cerr: it asks within ctx and the call's acquire budget.
func (cl *call) resolveCommit(ctx context.Context, ref xact.Ref, cerr error) (CommitOutcome, error) {
	p := cl.p
	ambiguous := func(why error) (CommitOutcome, error) {
		p.stats.ambiguous.Add(1)
		if why != nil {
			cerr = errors.Join(cerr, why)
		}
		return CommitAmbiguous, retry.Stop(&AmbiguousCommitError{Err: cerr, Xid: ref.Xid()})
	}
	if ref.Xid() == 0 || ctx.Err() != nil {
		return ambiguous(nil)
	}
	rctx, cancel := context.WithDeadline(ctx, cl.budget())
	st, lerr := xact.Resolve(rctx, p.pgx, ref)
	cancel()
	switch st {
	case xact.Committed:
		p.stats.resolvedCommitted.Add(1)
		p.logs.info(ctx, p.log, "pgsteady: lost COMMIT resolved: committed", "xid", ref.Xid())
		return CommitResolvedCommitted, nil
	case xact.Aborted:
		p.stats.resolvedAborted.Add(1)
		p.logs.info(ctx, p.log, "pgsteady: lost COMMIT resolved: rolled back, running the transaction again", "xid", ref.Xid())
		return CommitResolvedAborted, &commitAbortedError{cerr}
	}
	if lerr == nil {
		lerr = errors.New("pool: the transaction's status is no longer kept (pg_xact_status is NULL)")
	}
	return ambiguous(fmt.Errorf("pool: resolving transaction %d: %s: %w", ref.Xid(), st, lerr))
}

// rollback rolls tx back, bounded in time even when the caller's ctx is done.
func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), xact.CleanupTimeout)
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
	cl        *call
	ref       xact.Ref
	held      heldConn
	state     int
	commitErr error // as commit returned it, retry.Stop included
}

func (t *fnTx) Commit(ctx context.Context) error {
	if t.state != txOpen {
		return pgx.ErrTxClosed
	}
	t.state = txCommitted
	t.commitErr = t.commit(ctx)
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
	cl, err := p.call(ctx, retry.Safe, "")
	if err != nil {
		return nil, err
	}
	var out pgx.Tx
	err = cl.run(func() error {
		c, err := cl.acquire()
		if err != nil {
			return err
		}
		t, err := c.BeginTx(ctx, opts)
		if err != nil {
			p.release(c)
			return err
		}
		out = &tx{Tx: t, heldConn: heldConn{p: p, conn: c}}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// tx releases its connection when it ends.
type tx struct {
	pgx.Tx
	heldConn
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
